"""Random computational graphs (the paper's law), vectorized over a batch of graphs.

Nodes are generated in order; each batch row is one graph. The only Python loop runs over the node
index (N iterations), each a handful of numpy operations on the whole batch.
After sampling, nodes are put in *model order*: by depth (Kahn generations), ties by generation order.

Inside the loops the state is kept node-major and flat (``node * batch + row``) with one extra
*sentinel* node at index ``n_nodes``: depth -1, value 0. An absent parent points at the sentinel and
an absent operation is ADD, so every node folds three operands with no masking (adding 0 is a no-op).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.task.config import ALL_OPERATIONS, TaskConfig

MAX_FAN_IN = 3
ADD, SUB, MUL = range(3)


@dataclass
class Graphs:
    """A batch of graphs in model order (depth, then generation order); invalid nodes sit at the end.

    Every array is indexed [batch, node, ...]; -1 marks "none" (no parent, no op, not a leaf, no node).
    """

    parents: np.ndarray  # [batch, node, 3] node indices (model order), -1 padded
    ops: np.ndarray  # [batch, node, 2] operation codes applied left to right, -1 padded
    leaf_value: np.ndarray  # [batch, node] constant of a leaf, -1 for other nodes
    value: np.ndarray  # [batch, node] ground-truth value mod p
    depth: np.ndarray  # [batch, node] 0 for leaves, -1 for invalid nodes
    names: np.ndarray  # [batch, node] index into the name pool, -1 for invalid nodes
    n_nodes: np.ndarray  # [batch]
    modulus: int

    @property
    def batch(self) -> int:
        return self.parents.shape[0]

    @property
    def max_nodes(self) -> int:
        return self.parents.shape[1]

    @property
    def valid(self) -> np.ndarray:  # [batch, node]
        return self.depth >= 0

    @property
    def fan_in(self) -> np.ndarray:  # [batch, node]
        return (self.parents >= 0).sum(-1)

    @property
    def max_depth(self) -> np.ndarray:  # [batch]
        return self.depth.max(axis=1)

    def select(self, rows: np.ndarray | slice) -> "Graphs":
        """The graphs at ``rows`` (a slice, index array or boolean mask)."""
        return Graphs(self.parents[rows], self.ops[rows], self.leaf_value[rows], self.value[rows],
                      self.depth[rows], self.names[rows], self.n_nodes[rows], self.modulus)


def apply_op(left: np.ndarray, right: np.ndarray, op: np.ndarray, modulus: int) -> np.ndarray:
    """``left op right mod p`` elementwise, with ``op`` an array of operation codes."""
    out = np.where(op == SUB, left - right, left + right)
    out = np.where(op == MUL, left * right, out)
    return np.mod(out, modulus)


def _value_dtype(largest: int) -> type:
    """The narrowest integer type for values below ``largest``: three of them summed, or two multiplied."""
    return np.int32 if 3 * largest * largest < 2**31 else np.int64


class _Values:
    """Node values in a flat node-major array (``node * batch + row``), folded one node at a time.

    ``largest`` bounds every value (the modulus, or leaf constants beyond it); a sum of three operands
    is reduced by a table lookup when the table is small.
    """

    def __init__(self, value: np.ndarray, modulus: int, largest: int):
        self.value, self.modulus = value, modulus
        self.residue = (np.arange(3 * largest) % modulus).astype(value.dtype) if 3 * largest <= 2**16 else None
        self._sum = None

    def fold(self, i: int, flat: np.ndarray, ops: np.ndarray | None = None, single: np.ndarray | None = None) -> None:
        """Write node ``i``'s value from its operands' flat indices ``flat`` [3, batch].

        ops [2, batch]: operations of operand slots 1 and 2 (ADD where absent), None when all are ADD.
        single [batch]: nodes without operands 1 and 2, which copy operand 0 unreduced (only needed when values may
        exceed the modulus, i.e. leaf constants beyond it); None otherwise.
        """
        b = flat.shape[1]
        row = self.value[i * b:(i + 1) * b]
        v = self.value.take(flat)  # [3, batch]
        if ops is None:
            if self.residue is not None:
                if self._sum is None or len(self._sum) != b:
                    self._sum = np.empty(b, dtype=np.intp)
                np.add.reduce(v, axis=0, out=self._sum)
                self.residue.take(self._sum, out=row)
            else:
                np.add.reduce(v, axis=0, out=row)
                np.remainder(row, self.modulus, out=row)
        else:
            acc = v[0]
            for s in (1, 2):
                op = ops[s - 1]
                acc = np.where(op == MUL, acc * v[s], np.where(op == SUB, acc - v[s], acc + v[s]))
                acc %= self.modulus
            row[:] = acc
        if single is not None:
            np.copyto(row, v[0], where=single)


def evaluate(parents: np.ndarray, ops: np.ndarray, leaf_value: np.ndarray, modulus: int) -> np.ndarray:
    """Values of every node, given nodes whose parents come earlier on the node axis.

    Left fold: ((p1 op2 p2) op3 p3) mod p; a single parent is a copy. Invalid nodes get -1.
    """
    parents, ops, leaf_value = np.asarray(parents), np.asarray(ops), np.asarray(leaf_value)
    batch, n_nodes, _ = parents.shape
    leaf = leaf_value >= 0
    absent = parents < 0
    # flat node-major layout: node values [0, nB), sentinel [nB, (n+1)B) = 0, leaf constants after;
    # a leaf's operand 0 is its own constant, an absent operand (slot 1, 2) the sentinel
    node = np.where(absent, n_nodes, parents)
    node[..., 0] = np.where(leaf, n_nodes + 1 + np.arange(n_nodes), np.maximum(parents[..., 0], 0))
    flat = np.ascontiguousarray(node.transpose(1, 2, 0)) * batch + np.arange(batch)  # [node, 3, batch]
    op = np.where(absent[..., 1:], ADD, ops)
    op = np.ascontiguousarray(op.transpose(1, 2, 0)) if (op != ADD).any() else None  # [node, 2, batch]
    largest = max(modulus, int(leaf_value.max(initial=0)) + 1)
    value = np.full((2 * n_nodes + 1) * batch, -1, dtype=_value_dtype(largest))
    value[n_nodes * batch:(n_nodes + 1) * batch] = 0
    value[(n_nodes + 1) * batch:] = leaf_value.T.ravel()
    values = _Values(value, modulus, largest)
    values.residue = None  # a node may read an unset (-1) or negative value
    single = np.ascontiguousarray((absent[..., 1] & absent[..., 2]).T) if largest > modulus else None
    for i in range(n_nodes):
        values.fold(i, flat[i], None if op is None else op[i], None if single is None else single[i])
    out = value[:n_nodes * batch].reshape(n_nodes, batch).T.astype(np.int64)
    out[~leaf & absent[..., 0]] = -1  # padding nodes
    return out


def sample_graphs(
    n_nodes: int | np.ndarray,
    batch: int,
    *,
    rng: np.random.Generator,
    task: TaskConfig = TaskConfig(),
    n_leaves: int = 6,
    fan_in: tuple[int, ...] | None = None,
    depth_cap: int | None = None,
    leaf_values: int | None = None,
    recent: int | None = None,
) -> Graphs:
    """Sample ``batch`` graphs with the paper's law, in model order.

    n_nodes: one size for all graphs, or an array [batch] of sizes (rows are padded to the largest).
    fan_in: the choices of parent count, drawn uniformly per node (clipped to the candidates);
        default every count the task allows, 1..task.max_fan_in (the paper's 1-3).
    depth_cap: parents are drawn only among nodes of depth < cap, so every depth is <= cap.
    leaf_values: leaf constants are uniform on 0..leaf_values-1 (default: the modulus).
    recent: parents are drawn among the ``recent`` latest nodes only (long chains for depth tests).
    """
    sizes = np.broadcast_to(np.asarray(n_nodes, dtype=np.int64), (batch,)).copy()
    n_max = int(sizes.max())
    if int(sizes.min()) <= n_leaves:
        raise ValueError(f"graphs need more than {n_leaves} nodes, got {int(sizes.min())}")
    if fan_in is None:
        fan_in = tuple(range(1, task.max_fan_in + 1))
    if max(fan_in) > task.max_fan_in:
        raise ValueError(f"fan-in {max(fan_in)} exceeds the task's max_fan_in {task.max_fan_in}")
    if task.n_names < n_max:
        raise ValueError(f"{n_max} nodes need at least as many names, the pool has {task.n_names}")
    p = task.modulus
    leaf_hi = p if leaf_values is None else leaf_values
    op_codes = np.asarray(task.op_indices)
    fan_choices = np.asarray(fan_in)
    B, n_inner = batch, n_max - n_leaves

    # all random draws up front, in the historical order (integers() over one choice draws nothing)
    leaf_draw = rng.integers(0, leaf_hi, size=(B, n_leaves))
    u = rng.random((n_max, MAX_FAN_IN, B))[n_leaves:]  # uniforms for the three distinct parent ranks
    k_all = fan_choices[rng.integers(0, len(fan_choices), size=(n_max, B))][n_leaves:]  # [inner, batch]
    op_draw = None  # [batch, node, 2]; None: every operation is op_codes[0]
    if len(op_codes) > 1:
        op_draw = op_codes[rng.integers(0, len(op_codes), size=(B, n_max, MAX_FAN_IN - 1))]
    if op_draw is not None:
        inner_ops = np.ascontiguousarray(op_draw[:, n_leaves:].transpose(1, 2, 0))  # [inner, 2, batch]
    else:
        inner_ops = None if op_codes[0] == ADD else np.full((n_inner, MAX_FAN_IN - 1, B), op_codes[0])

    state = _Generation(leaf_draw, n_max, p, max(p, leaf_hi), int(fan_choices.min()) < 1)
    copy_exact = leaf_hi > p  # leaf constants beyond the modulus are copied unreduced, as given
    # fewer candidates than a fan-in choice (tiny n_leaves or recent): clip ranks and fan-in per node
    clipped = (n_leaves if recent is None else min(n_leaves, recent)) < max(int(fan_choices.max()), MAX_FAN_IN)
    cap = None if depth_cap is None else min(depth_cap, n_max + 1)
    _grow(state, u, k_all, inner_ops, copy_exact, clipped, recent, cap, int(fan_choices.min()))
    state.finish()
    return _model_order_from_generation(state, leaf_draw, op_draw, int(op_codes[0]), sizes, rng, task)


class _Generation:
    """The sampler's graphs in generation order, node-major and flat (``node * batch + row``).

    Node ``n_max`` is the sentinel that an absent parent points at: depth -1, value 0.
    """

    def __init__(self, leaf_draw: np.ndarray, n_max: int, modulus: int, largest: int, zero_fan_in: bool):
        B, n_leaves = leaf_draw.shape
        self.B, self.n_max, self.n_leaves, self.col = B, n_max, n_leaves, np.arange(B)
        self.depth = np.zeros((n_max + 1) * B, dtype=np.int16 if n_max < 2**15 - 2 else np.int32)
        self.depth[n_max * B:] = -1
        self.value = np.empty((n_max + 1) * B, dtype=_value_dtype(largest))
        self.value[:n_leaves * B] = leaf_draw.T.ravel()
        self.value[n_max * B:] = 0
        self.values = _Values(self.value, modulus, largest)
        self.par = np.empty((n_max, MAX_FAN_IN, B), dtype=np.int32 if (n_max + 1) * B < 2**31 else np.intp)
        self.par[:n_leaves] = n_max
        # fan-in 0 (when allowed): no parent, depth 0; as in evaluate(), the node passes node 0's value
        # on to its children and is marked -1 itself at the end
        self.no_parent = np.zeros((n_max - n_leaves, B), dtype=bool) if zero_fan_in else None

    def add(self, i: int, chosen: np.ndarray, ops: np.ndarray | None, single: np.ndarray | None) -> np.ndarray:
        """Node ``i`` with parents ``chosen`` [3, batch] (n_max where absent); returns its depth [batch]."""
        B = self.B
        self.par[i] = chosen
        flat = chosen * B
        flat += self.col
        d = self.depth[i * B:(i + 1) * B]
        np.maximum.reduce(self.depth.take(flat), axis=0, out=d)
        d += 1
        self.values.fold(i, flat, ops, single)
        if self.no_parent is not None:
            np.copyto(self.value[i * B:(i + 1) * B], self.value[:B], where=self.no_parent[i - self.n_leaves])
        return d

    def finish(self) -> None:
        if self.no_parent is not None:
            self.value[self.n_leaves * self.B:self.n_max * self.B][self.no_parent.reshape(-1)] = -1


def _grow(state: _Generation, u, k_all, inner_ops, copy_exact: bool, clipped: bool, recent: int | None,
          cap: int | None, min_fan_in: int) -> None:
    """Draw every inner node's parents among its candidates: the earlier nodes of depth < cap (all of
    them when uncapped), or only the ``recent`` latest of those; one step per node, vectorized over graphs.
    """
    B, n_leaves, n_max, col = state.B, state.n_leaves, state.n_max, state.col
    slots = np.arange(MAX_FAN_IN)
    if cap is not None:
        # candidate lists, rank-major (rank * B + row -> node); rank n_max holds the sentinel. Uncapped,
        # the candidates are all earlier nodes: rank r is node r (past the `recent` window's start).
        cand = np.empty((n_max + 1) * B, dtype=np.intp)
        cand[:n_leaves * B] = np.repeat(np.arange(n_leaves), B)
        cand[n_max * B:] = n_max
        slot_at = n_leaves * B + col  # where the next candidate goes
    n_cand = np.full(B, n_leaves, dtype=np.int64)
    dynamic = recent is not None or clipped  # the candidate window and the fan-in clipping change per node
    ops = single = None
    if not dynamic:
        # an absent slot draws a rank far past every candidate list, then clipped to the sentinel's rank
        for s in range(min_fan_in, MAX_FAN_IN):
            u[:, s] += (k_all <= s) * _FAR
        if inner_ops is not None or copy_exact or state.no_parent is not None:
            absent = slots[None, :, None] >= k_all[:, None, :]  # [inner, 3, batch]
            ops, single = _fold_args(inner_ops, absent, copy_exact)
            if state.no_parent is not None:
                state.no_parent[:] = absent[:, 0]
    ranges = _rank_ranges(n_cand).astype(np.float64)  # [3, batch], exact small integers
    for m in range(n_max - n_leaves):
        if dynamic:
            count = n_cand if recent is None else np.minimum(n_cand, recent)
            ranks = _distinct_ranks(u[m], _rank_ranges(count).astype(np.float64))
            if clipped:
                np.minimum(ranks, count - 1, out=ranks)
            absent = slots[:, None] >= np.minimum(k_all[m], count)
            ops_m, single_m = _fold_args(None if inner_ops is None else inner_ops[m], absent, copy_exact, 0)
            if state.no_parent is not None:
                state.no_parent[m] = absent[0]
            ranks += n_cand - count
            ranks = np.where(absent, n_max, ranks)
        else:
            ops_m = None if ops is None else ops[m]
            single_m = None if single is None else single[m]
            ranks = _distinct_ranks(u[m], ranges)
            np.minimum(ranks, n_max, out=ranks)
        if cap is None:
            state.add(n_leaves + m, ranks, ops_m, single_m)
            joins = 1
        else:
            ranks *= B
            ranks += col
            d = state.add(n_leaves + m, cand.take(ranks), ops_m, single_m)
            joins = d < cap
            cand[slot_at] = n_leaves + m  # overwritten by the next node unless this one joins
            slot_at += joins * B
        if dynamic:
            n_cand += joins
        else:
            ranges += joins


_FAR = 2.0**40  # a uniform that puts a rank beyond every candidate list (times a count, still exact in int64)


def _fold_args(ops: np.ndarray | None, absent: np.ndarray, copy_exact: bool, axis: int = 1):
    """Fold arguments from drawn operations and absent operand slots [..., 3, batch] (slot axis ``axis``)."""
    present = np.take(~absent, [1, 2], axis=axis)
    fold_ops = None if ops is None else np.where(present, ops, ADD)
    single = np.take(absent, 1, axis=axis) & np.take(absent, 2, axis=axis) if copy_exact else None
    return fold_ops, single


def _rank_ranges(count: np.ndarray) -> np.ndarray:
    """The three rank ranges [3, ...]: count, count-1 and count-2 candidates (at least 1)."""
    return np.stack([count, np.maximum(count - 1, 1), np.maximum(count - 2, 1)])


def _distinct_ranks(u: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """Three distinct ranks [3, ...] in [0, count), uniformly random and ordered, from uniforms u [3, ...].

    Draw r1 in [0, c), r2 in [0, c-1) skipping r1, r3 in [0, c-2) skipping both: O(batch), no sort.
    ``ranges`` [3, ...] is _rank_ranges(count) (float). Ranks beyond the candidate count (c < 3) are
    garbage and must be masked by the caller.
    """
    r = (u * ranges).astype(np.intp)  # floor: both factors are non-negative
    r1, r2, r3 = r[0], r[1], r[2]
    r2 += r2 >= r1
    low, high = np.minimum(r1, r2), np.maximum(r1, r2)
    r3 += r3 >= low
    r3 += r3 >= high
    return r


def _model_order_from_generation(state: _Generation, leaf_draw, op_draw, op_const: int, sizes, rng, task) -> Graphs:
    """Graphs in model order from the sampler's state in generation order; deals the names."""
    n_max, B, n_leaves = state.n_max, state.B, state.n_leaves
    uniform = int(sizes.min()) == n_max
    key = state.depth[:n_max * B].reshape(n_max, B).T  # [batch, node]
    key = key.astype(np.int8 if n_max + 1 < 2**7 else np.int16 if n_max + 1 < 2**15 else np.int32)
    if not uniform:
        key[np.arange(n_max)[None, :] >= sizes[:, None]] = n_max + 1  # invalid nodes go last
    perm = np.argsort(key, axis=1, kind="stable")  # new position -> old index; ties keep generation order
    col = np.arange(B)[:, None]
    at = perm * B + col  # [batch, node] flat node-major index of each model-order node

    depth = state.depth.take(at).astype(np.int64)
    value = state.value.take(at).astype(np.int64)
    leaf_value = np.full((n_max, B), -1, dtype=np.int64)
    leaf_value[:n_leaves] = leaf_draw.T
    leaf_value = leaf_value.ravel().take(at)
    # parents: old index -> new position, through a per-graph table whose column n_max (sentinel) is -1
    inverse = np.empty((B, n_max + 1), dtype=np.int64)
    inverse[:, n_max] = -1
    inverse.ravel()[col * (n_max + 1) + perm] = np.arange(n_max)
    par = np.ascontiguousarray(state.par.transpose(0, 2, 1)).reshape(n_max * B, MAX_FAN_IN)  # [node * batch, 3]
    old_parents = par.take(at, axis=0)  # [batch, node, 3]
    old_parents += (col * (n_max + 1))[:, :, None]
    parents = inverse.ravel().take(old_parents)
    # parents fill slots left to right, so the operations written follow from the count of slots 1 and 2
    present = (parents >= 0).view(np.int8)
    n_ops = present[..., 1] + present[..., 2]  # [batch, node]
    if op_draw is None:
        ops = np.array([[-1, -1], [op_const, -1], [op_const, op_const]], dtype=np.int64).take(n_ops, axis=0)
    else:
        written = np.array([[False, False], [True, False], [True, True]]).take(n_ops, axis=0)
        ops = np.where(written, op_draw.reshape(B * n_max, -1).take((col * n_max + perm), axis=0), -1)

    name_keys = rng.random((B, task.n_names))
    names = np.argsort(name_keys, axis=1)[:, :n_max]
    names = names.ravel().take(col * n_max + perm)  # names were dealt in generation order
    if not uniform:
        invalid = np.arange(n_max)[None, :] >= sizes[:, None]
        depth[invalid] = -1
        names[invalid] = -1
    return Graphs(parents, ops, leaf_value, value, depth, names, sizes, task.modulus)


def to_model_order(g: Graphs) -> Graphs:
    """Reorder nodes by depth (stable: ties keep their current order); invalid nodes go last."""
    n, B = g.max_nodes, g.batch
    key = np.where(g.valid, g.depth, n + 1)
    perm = np.argsort(key, axis=1, kind="stable")  # new position -> old index
    col = np.arange(B)[:, None]
    inverse = np.empty((B, n + 1), dtype=np.int64)  # old index -> new position; column n: "none" -> -1
    inverse[:, n] = -1
    inverse.ravel()[col * (n + 1) + perm] = np.arange(n)
    rows = col * n + perm  # flat [batch, node] index of each new position's old node
    take = lambda a: a.reshape((B * n,) + a.shape[2:]).take(rows, axis=0)  # noqa: E731
    old_parents = take(g.parents)
    parents = inverse.ravel().take(np.where(old_parents >= 0, old_parents, n) + (col * (n + 1))[:, :, None])
    return Graphs(parents, take(g.ops), take(g.leaf_value), take(g.value), take(g.depth), take(g.names), g.n_nodes, g.modulus)


def compute_depth(parents: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Depth of each node (0 for leaves) when parents come earlier on the node axis; -1 if invalid."""
    parents = np.asarray(parents)
    batch, n_nodes, _ = parents.shape
    # node-major flat depths with a sentinel node (depth -1) standing for "no parent"
    flat = np.ascontiguousarray(np.where(parents >= 0, parents, n_nodes).transpose(1, 2, 0)) * batch + np.arange(batch)
    depth = np.zeros((n_nodes + 1) * batch, dtype=np.int64)
    depth[n_nodes * batch:] = -1
    for i in range(n_nodes):
        d = depth[i * batch:(i + 1) * batch]
        np.maximum.reduce(depth.take(flat[i]), axis=0, out=d)
        d += 1
    return np.where(valid, depth[:n_nodes * batch].reshape(n_nodes, batch).T, -1)


__all__ = ["Graphs", "sample_graphs", "evaluate", "to_model_order", "compute_depth", "apply_op", "ALL_OPERATIONS"]
