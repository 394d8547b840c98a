"""Graphs -> the model's factored token sequence, node depths and teacher states (vectorized).

Each equation is laid out on an 8-slot template per node, then the valid slots are scattered into
one sequence per graph:

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
        return self.tokens.shape[0]

    @property
    def max_len(self) -> int:
        return self.tokens.shape[1]

    @property
    def max_depth(self) -> np.ndarray:  # [batch]
        return self.depth.max(axis=1)

    @property
    def is_rhs(self) -> np.ndarray:  # [batch, pos]
        return self.depth >= 0

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
        steps = np.arange(int(self.max_depth.max()) + 1)[:, None, None]
        filled = self.is_rhs[None] & (self.depth[None] <= steps)  # [step, batch, pos]
        out = np.broadcast_to(self.tokens, (len(steps),) + self.tokens.shape).copy()
        out[..., V.F_VALUE] = np.where(filled, self.target_value[None], self.tokens[None, ..., V.F_VALUE])
        return out

    def teacher_values(self) -> np.ndarray:
        """VALUE factor of the teacher states for steps 0..max depth, [step, batch, pos].

        The other three factors of every teacher state equal the input's, so this is the whole
        information of ``states()`` at a quarter of the memory.
        """
        steps = np.arange(int(self.max_depth.max()) + 1, dtype=np.int16)[:, None, None]
        filled = self.is_rhs[None] & (self.depth[None] <= steps)
        return np.where(filled, self.target_value[None], self.tokens[None, ..., V.F_VALUE])

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


def tokenize(graphs: Graphs, vocab: V.Vocab, *, pad_to: int | None = None) -> TokenBatch:
    """Lay out every graph's equations as factored tokens (no Python loop over graphs or tokens)."""
    g = graphs
    B, N = g.batch, g.max_nodes
    leaf = g.leaf_value >= 0  # [B, N]
    k = g.fan_in  # [B, N]
    valid = g.valid
    last = np.arange(N)[None, :] == (g.n_nodes[:, None] - 1)

    slot = np.arange(N_SLOTS)[None, None, :]
    used = np.zeros((B, N, N_SLOTS), dtype=bool)
    used |= (slot == 0) | (slot == 5) | (slot == RHS_SLOT)
    used |= ~leaf[..., None] & (slot >= 1) & (slot <= 4) & (slot < 2 * k[..., None] - 1)
    used |= (slot == 7) & ~last[..., None]
    used &= valid[..., None]

    # the input tokens on the template [B, N, slot, factor]; depth, node and targets are scattered later
    ch = np.empty((B, N, N_SLOTS, 4), dtype=np.int16)
    ch[..., V.F_SYNTAX] = SLOT_SYNTAX
    ch[..., 0, V.F_SYNTAX] = np.where(leaf, V.VALUE, V.VARIABLE)
    rows = np.arange(B)[:, None, None]
    parent_names = np.where(g.parents >= 0, g.names[rows, np.maximum(g.parents, 0)], vocab.var_na)  # [B, N, 3]
    ch[..., V.F_VARIABLE] = vocab.var_na
    ch[..., OPERAND_SLOTS, V.F_VARIABLE] = parent_names
    ch[..., RHS_SLOT, V.F_VARIABLE] = np.maximum(g.names, 0)
    ch[..., V.F_OPERATION] = vocab.op_na
    ch[..., (1, 3), V.F_OPERATION] = np.where(g.ops >= 0, g.ops, vocab.op_na)
    ch[..., V.F_VALUE] = SLOT_VALUE_IS_EMPTY * (vocab.empty - vocab.value_na) + vocab.value_na
    ch[..., 0, V.F_VALUE] = np.where(leaf, g.leaf_value, vocab.empty)

    flat_used = used.reshape(B, -1)
    dest = np.cumsum(flat_used, axis=1, dtype=np.int32) - 1  # position of every used slot
    length = dest[:, -1] + 1
    L = int(length.max()) if pad_to is None else pad_to
    if int(length.max()) > L:
        raise ValueError(f"sequence of length {int(length.max())} does not fit pad_to={L}")
    sel = np.flatnonzero(flat_used)  # used slots, graph by graph, in sequence order
    tokens = np.empty((B * L, 4), dtype=np.int16)
    tokens[:] = vocab.pad_token()
    tokens[(sel // (N * N_SLOTS)) * L + dest.reshape(-1)[sel]] = ch.reshape(-1, 4)[sel]
    tokens = tokens.reshape(B, L, 4)

    dest3 = dest.reshape(B, N, N_SLOTS)
    rhs_pos = np.where(valid, dest3[..., RHS_SLOT], -1)
    operand_pos = np.where(used[..., OPERAND_SLOTS] & ~leaf[..., None], dest3[..., OPERAND_SLOTS], -1)
    b_node = np.broadcast_to(np.arange(B)[:, None], (B, N))[valid]
    rhs_valid = rhs_pos[valid]
    target_value = tokens[..., V.F_VALUE].copy()
    target_value[b_node, rhs_valid] = g.value[valid]
    depth_seq = np.full((B, L), -1, dtype=np.int16)
    depth_seq[b_node, rhs_valid] = g.depth[valid]
    node_seq = np.full((B, L), -1, dtype=np.int32)
    node_seq[b_node, rhs_valid] = np.broadcast_to(np.arange(N)[None, :], (B, N))[valid]
    has_op = operand_pos >= 0
    node_seq[np.broadcast_to(np.arange(B)[:, None, None], has_op.shape)[has_op], operand_pos[has_op]] = g.parents[has_op]
    return TokenBatch(tokens, target_value, depth_seq, node_seq, rhs_pos, operand_pos, length, g, vocab)


__all__ = ["TokenBatch", "tokenize", "N_SLOTS", "RHS_SLOT"]
