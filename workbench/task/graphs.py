"""Random computational graphs (the paper's law), vectorized over a batch of graphs.

Nodes are generated in order; each batch row is one graph. The only Python loop runs over the node
index (N iterations), each a handful of numpy operations on the whole batch.
After sampling, nodes are put in *model order*: by depth (Kahn generations), ties by generation order.
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


def evaluate(parents: np.ndarray, ops: np.ndarray, leaf_value: np.ndarray, modulus: int) -> np.ndarray:
    """Values of every node, given nodes whose parents come earlier on the node axis.

    Left fold: ((p1 op2 p2) op3 p3) mod p; a single parent is a copy. Invalid nodes get -1.
    """
    batch, n_nodes, _ = parents.shape
    value = np.full((batch, n_nodes), -1, dtype=np.int64)
    rows = np.arange(batch)
    for i in range(n_nodes):
        par = parents[:, i]  # [batch, 3]
        acc = np.where(leaf_value[:, i] >= 0, leaf_value[:, i], value[rows, np.maximum(par[:, 0], 0)])
        for slot in (1, 2):
            has = par[:, slot] >= 0
            operand = value[rows, np.maximum(par[:, slot], 0)]
            acc = np.where(has, apply_op(acc, operand, ops[:, i, slot - 1], modulus), acc)
        value[:, i] = acc
    value[(leaf_value < 0) & (parents[..., 0] < 0)] = -1  # padding nodes
    return value


def sample_graphs(
    n_nodes: int | np.ndarray,
    batch: int,
    *,
    rng: np.random.Generator,
    task: TaskConfig = TaskConfig(),
    n_leaves: int = 6,
    fan_in: tuple[int, ...] = (1, 2, 3),
    depth_cap: int | None = None,
    leaf_values: int | None = None,
    recent: int | None = None,
) -> Graphs:
    """Sample ``batch`` graphs with the paper's law, in model order.

    n_nodes: one size for all graphs, or an array [batch] of sizes (rows are padded to the largest).
    fan_in: the choices of parent count, drawn uniformly per node (clipped to the candidates).
    depth_cap: parents are drawn only among nodes of depth < cap, so every depth is <= cap.
    leaf_values: leaf constants are uniform on 0..leaf_values-1 (default: the modulus).
    recent: parents are drawn among the ``recent`` latest nodes only (long chains for depth tests).
    """
    sizes = np.broadcast_to(np.asarray(n_nodes, dtype=np.int64), (batch,)).copy()
    n_max = int(sizes.max())
    if int(sizes.min()) <= n_leaves:
        raise ValueError(f"graphs need more than {n_leaves} nodes, got {int(sizes.min())}")
    if max(fan_in) > task.max_fan_in:
        raise ValueError(f"fan-in {max(fan_in)} exceeds the task's max_fan_in {task.max_fan_in}")
    p = task.modulus
    leaf_hi = p if leaf_values is None else leaf_values
    op_codes = np.asarray(task.op_indices)
    fan_choices = np.asarray(fan_in)

    parents = np.full((batch, n_max, MAX_FAN_IN), -1, dtype=np.int64)
    depth = np.zeros((batch, n_max), dtype=np.int64)
    leaf_value = np.full((batch, n_max), -1, dtype=np.int64)
    leaf_value[:, :n_leaves] = rng.integers(0, leaf_hi, size=(batch, n_leaves))
    ops = np.full((batch, n_max, MAX_FAN_IN - 1), -1, dtype=np.int64)
    # all random draws up front: uniforms for the three distinct parent ranks, fan-ins and operations
    u = rng.random((n_max, MAX_FAN_IN, batch))
    k_all = fan_choices[rng.integers(0, len(fan_choices), size=(n_max, batch))]
    op_all = op_codes[rng.integers(0, len(op_codes), size=(batch, n_max, MAX_FAN_IN - 1))]
    # candidates: nodes a parent may be drawn from, kept as a list per graph (rank -> node index)
    cand = np.zeros((batch, n_max), dtype=np.int64)
    cand[:, :n_leaves] = np.arange(n_leaves)
    n_cand = np.full(batch, n_leaves, dtype=np.int64)
    rows = np.arange(batch)
    for i in range(n_leaves, n_max):
        lo = np.maximum(n_cand - recent, 0) if recent is not None else 0
        count = n_cand - lo
        k = np.minimum(k_all[i], count)
        ranks = _distinct_ranks(u[i], count)  # [3, batch], uniformly random ordered distinct
        chosen = cand[rows, lo + ranks.clip(max=count - 1)].T  # [batch, 3]
        take = np.arange(MAX_FAN_IN)[None, :] < k[:, None]
        parents[:, i] = np.where(take, chosen, -1)
        depth[:, i] = 1 + np.where(take, depth[rows[:, None], chosen], -1).max(1)
        ops[:, i] = np.where(np.arange(1, MAX_FAN_IN)[None, :] < k[:, None], op_all[:, i], -1)
        joins = depth[:, i] < depth_cap if depth_cap is not None else np.ones(batch, dtype=bool)
        cand[rows, n_cand] = np.where(joins, i, cand[rows, n_cand])
        n_cand += joins

    value = evaluate(parents, ops, leaf_value, p)
    valid = np.arange(n_max)[None, :] < sizes[:, None]
    depth = np.where(valid, depth, -1)
    name_keys = rng.random((batch, task.n_names))
    names = np.argsort(name_keys, axis=1)[:, :n_max]
    if task.n_names < n_max:
        raise ValueError(f"{n_max} nodes need at least as many names, the pool has {task.n_names}")
    names = np.where(valid, names, -1)
    return to_model_order(Graphs(parents, ops, leaf_value, value, depth, names, sizes, p))


def _distinct_ranks(u: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Three distinct ranks in [0, count) per column, uniformly random and ordered, from uniforms u [3, batch].

    Draw r1 in [0, c), r2 in [0, c-1) skipping r1, r3 in [0, c-2) skipping both: O(batch), no sort.
    Ranks beyond the candidate count (c < 3) are garbage and must be masked by the caller.
    """
    r1 = np.floor(u[0] * count).astype(np.int64)
    r2 = np.floor(u[1] * np.maximum(count - 1, 1)).astype(np.int64)
    r2 += r2 >= r1
    r3 = np.floor(u[2] * np.maximum(count - 2, 1)).astype(np.int64)
    low, high = np.minimum(r1, r2), np.maximum(r1, r2)
    r3 += r3 >= low
    r3 += r3 >= high
    return np.stack([r1, r2, r3])


def to_model_order(g: Graphs) -> Graphs:
    """Reorder nodes by depth (stable: ties keep their current order); invalid nodes go last."""
    n = g.max_nodes
    key = np.where(g.valid, g.depth, n + 1) * (n + 1) + np.arange(n)[None, :]
    perm = np.argsort(key, axis=1)  # new position -> old index
    inverse = np.argsort(perm, axis=1)  # old index -> new position
    take = lambda a: np.take_along_axis(a, perm.reshape(perm.shape + (1,) * (a.ndim - 2)), 1)  # noqa: E731
    old_parents = take(g.parents)
    parents = np.where(old_parents >= 0, np.take_along_axis(inverse, np.maximum(old_parents, 0).reshape(g.batch, -1), 1).reshape(old_parents.shape), -1)
    return Graphs(parents, take(g.ops), take(g.leaf_value), take(g.value), take(g.depth), take(g.names), g.n_nodes, g.modulus)


def compute_depth(parents: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Depth of each node (0 for leaves) when parents come earlier on the node axis; -1 if invalid."""
    batch, n_nodes, _ = parents.shape
    depth = np.zeros((batch, n_nodes), dtype=np.int64)
    rows = np.arange(batch)[:, None]
    for i in range(n_nodes):
        par = parents[:, i]
        d = np.where(par >= 0, depth[rows, np.maximum(par, 0)], -1).max(1)
        depth[:, i] = d + 1
    return np.where(valid, depth, -1)


__all__ = ["Graphs", "sample_graphs", "evaluate", "to_model_order", "compute_depth", "apply_op", "ALL_OPERATIONS"]
