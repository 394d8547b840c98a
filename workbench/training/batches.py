"""Training batches: teacher-forced (input, target) pairs of sampled steps, and error-correction corruption."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from workbench.model.config import ModelConfig
from workbench.task.config import TaskConfig
from workbench.task.families import add_hubs
from workbench.task.graphs import Graphs, apply_op, evaluate, sample_graphs
from workbench.task.tokens import TokenBatch, tokenize
from workbench.task.vocab import F_VALUE, Vocab
from workbench.training.config import Phase


@dataclass
class StepBatch:
    """Teacher-forced pairs, one row per (graph, sampled step), trimmed to the longest row."""

    inputs: torch.Tensor  # [row, pos, factor]
    targets: torch.Tensor  # [row, pos, factor]
    valid: torch.Tensor  # [row, pos] bool: not padding
    frontier: torch.Tensor  # [row, pos] bool: RHS slots computed at this step (depth == t)
    fan_in: torch.Tensor  # [row, pos] parents of the node defined here (0 for leaves, -1 elsewhere)
    n_tokens: int
    operand_value: torch.Tensor | None = None  # [row, pos] at operand occurrences: the VALUE code at the operand's defining slot of the input; -1 elsewhere
    operand_def: torch.Tensor | None = None  # [row, pos] at operand occurrences: the position of the operand's defining slot; -1 elsewhere


def sample_phase(phase: Phase, task: TaskConfig, batch: int, rng: np.random.Generator) -> TokenBatch:
    """Tokenized graphs for one phase of the curriculum (sizes uniform in the phase's range)."""
    phase_task = replace(task, modulus=phase.modulus or task.modulus)
    n_nodes = rng.integers(phase.nodes[0], phase.nodes[1] + 1, size=batch)
    graphs = sample_graphs(n_nodes, batch, rng=rng, task=phase_task, fan_in=phase.fan_in,
                           depth_cap=phase.depth_cap, leaf_values=phase.leaf_values)
    if phase.zero_leaves > 0:
        zero = (graphs.leaf_value >= 0) & (rng.random(graphs.leaf_value.shape) < phase.zero_leaves)
        graphs.leaf_value = np.where(zero, 0, graphs.leaf_value)
        graphs.value = np.where(graphs.valid, evaluate(graphs.parents, graphs.ops, graphs.leaf_value, phase_task.modulus), -1)
    if phase.hubs > 0:
        hit = np.flatnonzero(rng.random(batch) < phase.hubs)
        if len(hit):
            graphs = graphs.select(np.concatenate([hit, np.setdiff1d(np.arange(batch), hit)]))
            hubbed = add_hubs(graphs.select(slice(0, len(hit))), rng, readers=(2, phase.max_fan_out), hub_pool=HUB_POOL)
            graphs = _concat(hubbed, graphs.select(slice(len(hit), batch)))
    return tokenize(graphs, Vocab.for_task(task))


HUB_POOL = 12
"""Training hubs are drawn among the first 12 nodes in model order: leaves and early inner nodes."""


def _concat(a: Graphs, b: Graphs) -> Graphs:
    """Two graph batches of the same node axis, one after the other."""
    cat = lambda x, y: np.concatenate([x, y])  # noqa: E731
    return Graphs(cat(a.parents, b.parents), cat(a.ops, b.ops), cat(a.leaf_value, b.leaf_value), cat(a.value, b.value),
                  cat(a.depth, b.depth), cat(a.names, b.names), cat(a.n_nodes, b.n_nodes), a.modulus)


ERASE_SHARE = 0.25
"""Strategy ``onestep``: the share of corrupted already-filled slots that are erased to EMPTY (a node
the model failed to fill) instead of given a random value (a node it computed wrong)."""


def corrupt(inputs: np.ndarray, tb: TokenBatch, step: np.ndarray, *, cfg: ModelConfig, prob: float,
            modulus: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Error-correction noise on the VALUE factor of teacher-forced inputs.

    Each row is hit with probability ``prob``; in a hit row each candidate slot with probability
    ``cfg.corruption_fraction`` gets a value uniform on 0..modulus-1. Candidates by strategy:
    ``frontier`` (depth == t, the reference's), ``previous`` (depth == t-1, the paper's intent),
    ``all_filled`` (depth < t: anything already written may be wrong), and ``onestep`` (depth <= t:
    written values may be wrong, a few are erased, the frontier may be filled early). The first three
    keep clean targets; ``onestep`` pairs the noise with the one-step map of the noisy input
    (``one_step_values``), so no target asks for something the input cannot determine.
    """
    if prob <= 0:
        return inputs, np.zeros(tb.depth.shape, dtype=bool)
    depth, t = tb.depth.astype(np.int64), step[:, None]
    candidates = {"frontier": depth == t, "previous": depth == t - 1,
                  "all_filled": (depth >= 0) & (depth < t), "onestep": (depth >= 0) & (depth <= t)}[cfg.corruption_strategy]
    hit = candidates & (rng.random(depth.shape) < cfg.corruption_fraction) & (rng.random((len(step), 1)) < prob)
    noise = rng.integers(0, modulus, size=depth.shape)
    if cfg.corruption_strategy == "onestep":
        noise = np.where((depth < t) & (rng.random(depth.shape) < ERASE_SHARE), tb.vocab.empty, noise)
    out = inputs.copy()
    out[..., F_VALUE] = np.where(hit, noise, inputs[..., F_VALUE])
    return out, hit


def one_step_values(tb: TokenBatch, inputs: np.ndarray, modulus: int) -> np.ndarray:
    """VALUE factor [row, pos] of the exact one-step map applied to any state ``inputs`` [row, pos, factor].

    A node is filled iff every operand is filled in ``inputs`` (leaves always are), with its equation
    evaluated on the operands' values as they stand, wrong ones included. On a clean teacher state
    t-1 this is the teacher state t; from ANY state, depth + 1 applications reach the solution, so a
    model trained to follow it repairs its own mistakes by re-running the equations each loop.
    """
    g, empty = tb.graphs, tb.vocab.empty
    rows = np.arange(tb.batch)[:, None]
    node_ok = tb.rhs_pos >= 0  # [row, node]
    node_value = np.where(node_ok, inputs[rows, np.maximum(tb.rhs_pos, 0), F_VALUE], empty)  # [row, node]
    present = g.parents >= 0  # [row, node, 3]
    operand = node_value[rows[..., None], np.maximum(g.parents, 0)]  # [row, node, 3]
    leaf = g.leaf_value >= 0
    ready = leaf | (present.any(-1) & (~present | (operand != empty)).all(-1))
    acc = operand[..., 0]
    for k in (1, 2):  # left fold over at most three operands
        acc = np.where(present[..., k], apply_op(acc, operand[..., k], g.ops[..., k - 1], modulus), acc)
    new_value = np.where(ready, np.where(leaf, g.leaf_value, acc), empty)  # [row, node]
    out = inputs[..., F_VALUE].copy()
    r, n = np.nonzero(node_ok)
    out[r, tb.rhs_pos[r, n]] = new_value[r, n]
    return out


def tainted_frontier(tb: TokenBatch, hit: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Frontier slots [row, pos] whose operands were corrupted: their true value cannot be computed
    from this input in one step, so they are left out of the loss (the reference trains them anyway,
    which is label noise)."""
    rows = np.arange(tb.batch)[:, None, None]
    parent_pos = np.where(tb.graphs.parents >= 0, tb.rhs_pos[rows, np.maximum(tb.graphs.parents, 0)], -1)  # [row, node, 3]
    bad_node = (hit[rows, np.maximum(parent_pos, 0)] & (parent_pos >= 0)).any(-1)  # [row, node]
    out = np.zeros(hit.shape, dtype=bool)
    r, n = np.nonzero(bad_node)
    out[r, tb.rhs_pos[r, n]] = True
    return out & (tb.depth == step[:, None])


def operand_values(tb: TokenBatch, state: np.ndarray) -> np.ndarray:
    """[row, pos] the VALUE code that ``state`` [row, pos, factor] holds at the defining slot of the
    variable named at each operand occurrence (EMPTY where not yet computed); -1 at every other position.

    The target of the operand-lookup auxiliary loss: after the first block, every occurrence of a name
    should carry its value, read by content from the name's defining equation.
    """
    def_pos = operand_definitions(tb)  # [row, pos] defining slot of the name here, -1 off operands
    return np.where(def_pos >= 0, state[np.arange(tb.batch)[:, None], np.maximum(def_pos, 0), F_VALUE], -1)


def operand_definitions(tb: TokenBatch) -> np.ndarray:
    """[row, pos] the position of the defining slot of the variable named at each operand occurrence; -1
    elsewhere (where the first layer's lookup should attend: ``analysis.routing``'s ``operand_lookup``)."""
    rows = np.arange(tb.batch)[:, None]
    is_operand = (tb.node >= 0) & ~tb.is_rhs
    return np.where(is_operand, tb.rhs_pos[rows, np.maximum(tb.node, 0)], -1)


def teacher_forced_batch(tb: TokenBatch, *, steps_per_graph: int, cfg: ModelConfig, corruption_prob: float,
                         modulus: int, rng: np.random.Generator, device: torch.device) -> StepBatch:
    """Pairs (state t-1 -> state t) for ``steps_per_graph`` random steps t in 0..depth+1 per graph.

    Sampling a few steps per graph instead of stacking all depth+1 is ~6x cheaper per update on CPU
    and sees more graphs; t = depth + 1 trains the fixed point (solved in, solved out).
    """
    reps = np.repeat(np.arange(tb.batch), steps_per_graph)
    sub = tb.select(reps)
    step = rng.integers(0, sub.max_depth.astype(np.int64) + 2)  # [row] in 0..depth+1
    inputs, hit = corrupt(sub.state(step - 1), sub, step, cfg=cfg, prob=corruption_prob, modulus=modulus, rng=rng)
    valid = np.arange(sub.max_len)[None, :] < sub.length[:, None]
    if cfg.corruption_strategy == "onestep":  # targets follow the noisy input: nothing to leave out
        targets = inputs.copy()
        targets[..., F_VALUE] = one_step_values(sub, inputs, modulus)
    else:
        targets = sub.state(step)
        valid &= ~tainted_frontier(sub, hit, step)
    frontier = sub.depth == step[:, None]
    fan_in = sub.fan_in
    operand_value = operand_values(sub, inputs)
    as_t = lambda a, dtype=torch.long: torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dtype)  # noqa: E731
    return StepBatch(as_t(inputs), as_t(targets), as_t(valid, torch.bool), as_t(frontier, torch.bool),
                     as_t(fan_in), int(valid.sum()), as_t(operand_value), as_t(operand_definitions(sub)))
