"""Graphs -> the model's factored token sequence, node depths and teacher states (vectorized).

Each equation is laid out on an 8-slot template per node, then the used slots are compacted into
one sequence per graph (a token travels as one packed int64: four int16 factors, little-endian):

    slot   0     1    2     3    4     5   6     7
    leaf   v               .         =   x     SEP
    inner  p1    op2  p2    op3  p3    =   x     SEP     (slots 1..4 only up to the fan-in)

A VALUE is written only at a variable's defining position (slot 6); operand occurrences stay EMPTY.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.task import vocab as V
from workbench.task.graphs import Graphs

N_SLOTS = 8
RHS_SLOT = 6
OPERAND_SLOTS = (0, 2, 4)
MAX_OPERANDS = len(OPERAND_SLOTS)
# syntax of each template slot for an inner node (slot 0 of a leaf is its VALUE constant)
SLOT_SYNTAX = np.array([V.VARIABLE, V.OPERATION, V.VARIABLE, V.OPERATION, V.VARIABLE, V.EQUALS, V.VARIABLE, V.SEP])
# variable slots start EMPTY; the rest hold N/A
SLOT_VALUE_IS_EMPTY = np.array([1, 0, 1, 0, 1, 0, 1, 0])


@dataclass
class TokenBatch:
    """Token sequences of a batch of graphs, right-padded to the longest; [batch, pos] unless noted."""

    tokens: np.ndarray  # [batch, pos, factor] the input state: EMPTY at every variable
    target_value: np.ndarray  # [batch, pos] VALUE factor of the solved state
    depth: np.ndarray  # [batch, pos] depth of the node defined here (RHS positions), else -1
    node: np.ndarray  # [batch, pos] node (model order) whose name stands here, else -1
    rhs_pos: np.ndarray  # [batch, node] position of each node's defining variable, -1 if none
    operand_pos: np.ndarray  # [batch, node, 3] positions of each node's operand occurrences, -1 padded
    length: np.ndarray  # [batch] unpadded lengths
    graphs: Graphs
    vocab: V.Vocab

    @property
    def batch(self) -> int:
        return self.graphs.batch

    @property
    def max_len(self) -> int:
        return self.tokens.shape[1]

    @property
    def max_depth(self) -> np.ndarray:  # [batch]
        return self.depth.max(axis=1)

    @property
    def is_rhs(self) -> np.ndarray:  # [batch, pos]
        return self.depth >= 0

    @property
    def fan_in(self) -> np.ndarray:  # [batch, pos]
        """Parents of the node defined at each RHS position (0 for leaves), -1 at every other position."""
        fan = self.graphs.fan_in[np.arange(self.batch)[:, None], np.maximum(self.node, 0)]
        return np.where(self.is_rhs, fan, -1)

    def state(self, step: int | np.ndarray) -> np.ndarray:
        """Teacher state after ``step`` (0-based): every node of depth <= step holds its value.

        ``step`` may be an array [batch] (one step per graph); step -1 is the input state.
        """
        step = np.asarray(step).reshape(-1, 1) if np.ndim(step) else step
        out = self.tokens.copy()
        filled = self.is_rhs & (self.depth <= step)
        out[..., V.F_VALUE] = np.where(filled, self.target_value, self.tokens[..., V.F_VALUE])
        return out

    def states(self) -> np.ndarray:
        """Teacher states for steps 0..max depth, [step, batch, pos, factor]."""
        values = self.teacher_values()
        out = np.empty(values.shape + (self.tokens.shape[-1],), dtype=self.tokens.dtype)
        out[...] = self.tokens[None]
        out[..., V.F_VALUE] = values
        return out

    def teacher_values(self) -> np.ndarray:
        """VALUE factor of the teacher states for steps 0..max depth, [step, batch, pos].

        The other three factors of every teacher state equal the input's, so this is the whole
        information of ``states()`` at a quarter of the memory.
        """
        # step t = step t-1 plus the RHS of depth t: one copy and a small scatter per step
        depth = self.depth.reshape(-1)
        rhs = np.flatnonzero(depth >= 0)
        n_steps = int(self.max_depth.max()) + 1
        key = depth[rhs].astype(np.int8) if n_steps <= 2**7 else depth[rhs]  # one radix pass when small
        rhs = rhs[np.argsort(key, kind="stable")]  # grouped by depth
        ends = np.searchsorted(depth[rhs], np.arange(n_steps), side="right")
        target = self.target_value.reshape(-1)[rhs]
        out = np.empty((n_steps,) + self.depth.shape, dtype=np.result_type(self.target_value, self.tokens))
        previous = self.tokens[..., V.F_VALUE]
        start = 0
        for t in range(n_steps):
            out[t] = previous
            out[t].reshape(-1)[rhs[start:ends[t]]] = target[start:ends[t]]
            previous, start = out[t], ends[t]
        return out

    def solved(self) -> np.ndarray:
        """The label: the fully solved state [batch, pos, factor]."""
        out = self.tokens.copy()
        out[..., V.F_VALUE] = self.target_value
        return out

    def select(self, rows: np.ndarray | slice) -> "TokenBatch":
        """The graphs at ``rows``, trimmed to their longest sequence."""
        length = self.length[rows]
        keep = int(length.max()) if len(length) else 0
        return TokenBatch(self.tokens[rows, :keep], self.target_value[rows, :keep], self.depth[rows, :keep],
                          self.node[rows, :keep], self.rhs_pos[rows], self.operand_pos[rows], length,
                          self.graphs.select(rows), self.vocab)


def _packed(syntax: int, variable: int, operation: int, value: int) -> int:
    """One factored token as a little-endian int64 (four int16 factors), so a token moves as one number."""
    return syntax + (variable << 16) + (operation << 32) + (value << 48)


_ABSENT = -(1 << 24)  # operand offset of an occurrence that is not written; clipped to -1 after adding


def _kind_tables() -> tuple[np.ndarray, ...]:
    """Per-equation layout by kind = fan-in (0..3) + 4 * leaf + 8 * (has SEP); kind 16: invalid node.

    Returns the used template slots (8 flags as one uint64), the equation's token count with its SEP,
    the offset of its defining variable, and the offsets of its operand occurrences [kind, 3]
    (``_ABSENT`` where none is written).
    """
    used = np.zeros((17, N_SLOTS), dtype=bool)
    count = np.zeros(17, dtype=np.int32)
    rhs = np.zeros(17, dtype=np.int32)
    operand = np.full((17, MAX_OPERANDS), _ABSENT, dtype=np.int32)
    for kind in range(16):
        fan_in, leaf, sep = kind % 4, kind // 4 % 2, kind // 8
        pairs = 0 if leaf else max(fan_in - 1, 0)  # (operation, operand) pairs after operand 0
        slots = [0, *range(1, 1 + 2 * pairs), 5, RHS_SLOT] + [7] * sep
        used[kind, slots] = True
        count[kind], rhs[kind] = len(slots), 2 + 2 * pairs
        if not leaf:
            operand[kind, :1 + pairs] = OPERAND_SLOTS[:1 + pairs]
    return used.view(np.uint64).ravel(), count, rhs, operand


_USED, _COUNT, _RHS_OFFSET, _OPERAND_OFFSET = _kind_tables()
_INVALID_KIND = 16


def tokenize(graphs: Graphs, vocab: V.Vocab, *, pad_to: int | None = None) -> TokenBatch:
    """Lay out every graph's equations as factored tokens (no Python loop over graphs or tokens)."""
    g = graphs
    B, N = g.batch, g.max_nodes
    parents = np.asarray(g.parents)
    leaf = g.leaf_value >= 0  # [B, N]
    valid = g.valid
    all_valid = bool(valid.all())
    present = (parents >= 0).view(np.int8)  # [B, N, 3]
    kind = present[..., 0] + present[..., 1] + present[..., 2]  # fan-in
    kind += leaf.view(np.int8) << 2
    kind += (np.arange(N)[None, :] != (g.n_nodes[:, None] - 1)).view(np.int8) << 3  # a SEP follows
    if not all_valid:
        kind[~valid] = _INVALID_KIND
    seg = _COUNT.take(kind)  # [B, N] tokens of each equation, its SEP included
    end = np.cumsum(seg, axis=1, dtype=np.int32)
    start = end - seg
    length = end[:, -1].copy() if N else np.zeros(B, dtype=np.int32)
    L = int(length.max()) if pad_to is None else pad_to
    if int(length.max()) > L:
        raise ValueError(f"sequence of length {int(length.max())} does not fit pad_to={L}")

    # the input tokens on the template [B, N, slot], packed one int64 each; the used slots are kept.
    # Viewed as [B, N, 4, 2], the operand slots 0, 2, 4 and the operation slots 1, 3 are one write each.
    empty, var_na, op_na, value_na = vocab.empty, vocab.var_na, vocab.op_na, vocab.value_na
    var_tok = np.empty((B, N + 1), dtype="<i8")  # column 0: "no parent"; column 1 + j: node j's name
    var_tok[:, 0] = _packed(V.VARIABLE, var_na, op_na, empty)
    np.left_shift(g.names.astype(np.int64, copy=False), 16, out=var_tok[:, 1:])
    var_tok[:, 1:] += _packed(V.VARIABLE, 0, op_na, empty)
    operand = var_tok.reshape(-1).take(parents + (1 + (N + 1) * np.arange(B))[:, None, None])  # [B, N, 3]
    # a leaf's slot 0 is its constant: the operand token with VALUE syntax and the constant as value
    constant = (g.leaf_value.astype(np.int64) - empty) << 48
    constant += V.VALUE - V.VARIABLE
    operand[..., 0] += np.where(leaf, constant, 0)
    ops = np.asarray(g.ops)
    if ops.size and -1 <= ops.min() and ops.max() < vocab.n_ops:
        op_tok = _op_tokens(vocab).take(ops + 1)  # [B, N, 2]
    else:  # codes outside the vocabulary are written as given
        op_tok = (np.where(ops >= 0, ops, op_na).astype(np.int64) << 32) + _packed(V.OPERATION, var_na, 0, value_na)
    ch = np.empty((B, N, N_SLOTS), dtype="<i8")
    pairs = ch.reshape(B, N, 4, 2)
    pairs[..., :3, 0] = operand
    pairs[..., :2, 1] = op_tok
    pairs[..., 2:, 1] = (_packed(V.EQUALS, var_na, op_na, value_na), _packed(V.SEP, var_na, op_na, value_na))
    pairs[..., 3, 0] = var_tok[:, 1:]
    packed = np.empty((B, L), dtype="<i8")
    packed.fill(_packed(*vocab.pad_token()))
    packed[np.arange(L, dtype=np.int32)[None, :] < length[:, None]] = ch.reshape(-1)[_USED.take(kind).view(bool).reshape(-1)]
    tokens = packed.view("<i2").reshape(B, L, 4)

    # annotations: depth, solved value and node index at the defining positions, node index at the
    # operand occurrences; all by scatter
    row = (L * np.arange(B, dtype=np.intp))[:, None]
    rhs_pos = start + _RHS_OFFSET.take(kind)
    operand_pos = _OPERAND_OFFSET.take(kind, axis=0)  # [B, N, 3]
    operand_pos += start[..., None]
    np.maximum(operand_pos, -1, out=operand_pos)
    at, node_index = rhs_pos + row, np.arange(N, dtype=np.int32)
    node_value, node_depth = g.value.astype(np.int16), g.depth.astype(np.int16)  # cast once, not per scatter
    if not all_valid:
        rhs_pos[~valid] = -1
        at, node_value, node_depth = at[valid], node_value[valid], node_depth[valid]
        node_index = np.broadcast_to(node_index, (B, N))[valid]
    target_value = tokens[..., V.F_VALUE].copy()
    target_value.reshape(-1)[at] = node_value
    depth_seq = np.full((B, L), -1, dtype=np.int16)
    depth_seq.reshape(-1)[at] = node_depth
    # operands: a spare column per row takes the absent ones (position -1 lands in the previous row's)
    node_seq = np.full((B, L + 1), -1, dtype=np.int32)
    node_seq.reshape(-1)[at + np.arange(B)[:, None] if all_valid else at + np.nonzero(valid)[0]] = node_index
    node_seq.reshape(-1)[operand_pos + (row + np.arange(B)[:, None])[..., None]] = parents.astype(np.int32)
    node_seq = np.ascontiguousarray(node_seq[:, :L])
    return TokenBatch(tokens, target_value, depth_seq, node_seq, rhs_pos, operand_pos, length, g, vocab)


def _op_tokens(vocab: V.Vocab) -> np.ndarray:
    """Packed OPERATION tokens indexed by code + 1 (code -1: N/A)."""
    codes = np.arange(-1, vocab.n_ops)
    return np.array([_packed(V.OPERATION, vocab.var_na, c if c >= 0 else vocab.op_na, vocab.value_na) for c in codes],
                    dtype="<i8")


__all__ = ["TokenBatch", "tokenize", "N_SLOTS", "RHS_SLOT"]
