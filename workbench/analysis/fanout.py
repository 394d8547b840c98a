"""Fan-out: does the name -> definition lookup survive when one name recurs many times?

Every operand occurrence of a variable must find that variable's *defining* position (where its
value lives) by name. Each earlier *use* of the same name is an EMPTY look-alike that matches the
name as well; with dozens of them, a lookup head's softmax mass on the one defining position can
drown. This analysis measures exactly that, on teacher-forced input (the solved state, so every
defining position already holds its value and only the lookup is under test):

    recurrence   how many earlier operand occurrences of the same name precede this occurrence
    mass         [occurrence, layer, head] attention from the occurrence onto its defining position
    readout      the value the model's own value head reads at the occurrence after the first block
                 (the operand-lookup readout): right or not

``lookup_heads`` are the first-layer heads whose mean mass over occurrences with few look-alikes is at
least ``LOOKUP_THRESHOLD``. ``binned`` groups by recurrence; ``free_run`` adds, for a free-running
solve, the fraction of nodes left EMPTY or wrong against their operands' recurrence.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import torch
from jaxtyping import Float, Int
from torch import Tensor

from workbench.hooks.names import hook_name
from workbench.hooks.tl_wrapper import hooked
from workbench.model.looped import LoopedModel
from workbench.solving import run_chunked
from workbench.task.encoding import Problems, encode
from workbench.task.tokens import TokenBatch
from workbench.task.vocab import F_VALUE

LOOKUP_THRESHOLD = 0.3
"""A first-layer head whose mean mass on the defining position (few look-alikes) reaches this is a lookup head."""
FEW = 4
"""Occurrences with at most this many earlier same-name uses define a head's 'unstressed' lookup mass."""
BIN_EDGES = (0, 1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128)
"""Recurrence bins [lo, hi) for the tables and plots; 12 is the training cap of the fan-out phase."""


def recurrence_counts(tb: TokenBatch) -> Int[np.ndarray, "batch pos"]:
    """[batch, pos] at each operand occurrence: earlier operand occurrences of the same name; -1 elsewhere."""
    operand = (tb.node >= 0) & ~tb.is_rhs  # [batch, pos]
    n_nodes = tb.graphs.max_nodes
    one_hot = np.zeros((tb.batch, tb.max_len, n_nodes + 1), dtype=np.int32)
    b, p = np.nonzero(operand)
    one_hot[b, p, tb.node[b, p]] = 1
    before = np.cumsum(one_hot, axis=1) - one_hot  # [batch, pos, node] uses strictly before each position
    counts = np.take_along_axis(before, np.maximum(tb.node, 0)[..., None], axis=2)[..., 0]
    return np.where(operand, counts, -1)


def operand_recurrence(tb: TokenBatch, counts: Int[np.ndarray, "batch pos"]) -> Int[np.ndarray, "batch node"]:
    """[batch, node] the largest recurrence among each node's operand occurrences (-1 for leaves)."""
    rows = np.arange(tb.batch)[:, None, None]
    return np.where(tb.operand_pos >= 0, counts[rows, np.maximum(tb.operand_pos, 0)], -1).max(-1)


def _bins(values: np.ndarray, edges: tuple[int, ...]):
    """(label, lo, mask) for each recurrence bin [lo, hi) that holds any of ``values``."""
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (values >= lo) & (values < hi)
        if sel.any():
            yield (f"{lo}" if hi == lo + 1 else f"{lo}-{hi - 1}"), lo, sel


@dataclass
class FanOutLookup:
    """Per operand occurrence (flattened over the batch): recurrence, lookup mass per head, readout."""

    recurrence: np.ndarray  # [occ] earlier same-name uses
    mass: np.ndarray  # [occ, layer, head] attention onto the defining position
    readout_right: np.ndarray  # [occ] bool: value head after block 0 reads the defining value
    lookup_heads: list[tuple[int, int]]  # (layer, head) pairs

    def lookup_mass(self) -> np.ndarray:
        """[occ] the lookup heads' mass on the defining position, averaged over those heads (NaN without any)."""
        if not self.lookup_heads:
            return np.full(len(self.recurrence), np.nan)
        return np.mean([self.mass[:, layer, head] for layer, head in self.lookup_heads], axis=0)

    def binned(self, edges: tuple[int, ...] = BIN_EDGES) -> list[dict]:
        """Rows per recurrence bin: {bin, count, lookup_mass, readout_acc} (empty bins left out)."""
        mass = self.lookup_mass()
        rows = []
        for label, lo, sel in _bins(self.recurrence, edges):
            lookup = float(np.nanmean(mass[sel])) if np.isfinite(mass[sel]).any() else float("nan")
            rows.append({"bin": label, "lo": lo, "count": int(sel.sum()),
                         "lookup_mass": lookup, "readout_acc": float(self.readout_right[sel].mean())})
        return rows


def measure_lookup(model: LoopedModel, problems: Problems, *, seed: int = 0) -> FanOutLookup:
    """One teacher-forced step on the solved state of ``problems``: lookup mass and readout per occurrence."""
    hm = hooked(model)
    tb, _ = encode(problems, model.task, seed=seed)
    solved = torch.from_numpy(tb.solved()).long()
    sites = [hook_name(0, "attn.hook_pattern", layer) for layer in range(model.cfg.n_layers)]
    resid_site = hook_name(0, "hook_resid_post", 0)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        _, cache = hm.run_with_cache(solved, lengths=torch.from_numpy(tb.length), n_steps=1, names_filter=sites + [resid_site])
        readout = model.unembed.W_U[F_VALUE](model.ln_final(cache[resid_site])).argmax(-1).numpy()  # [batch, pos]
    model.train(was_training)
    patterns: list[Float[Tensor, "batch head query key"]] = [cache[s] for s in sites]
    counts = recurrence_counts(tb)
    b, q = np.nonzero(counts >= 0)
    def_pos = tb.rhs_pos[b, tb.node[b, q]]
    mass = np.stack([pat[b, :, q, def_pos].numpy() for pat in patterns], axis=1)  # [occ, layer, head]
    right = readout[b, q] == tb.target_value[b, def_pos]
    few = counts[b, q] <= FEW
    first = mass[few, 0] if few.any() else mass[:, 0]
    heads = [(0, h) for h in range(mass.shape[2]) if first[:, h].mean() >= LOOKUP_THRESHOLD]
    return FanOutLookup(counts[b, q], mass, right, heads)


@contextmanager
def sharpened(model: LoopedModel, factor: float) -> Iterator[LoopedModel]:
    """Within the block, the first layer's content scores (q.k) are multiplied by ``factor`` (a causal test).

    If a failure is the lookup's softmax mass drowning among look-alikes, sharpening the first layer at
    inference alone must repair it. Implemented by scaling ``W_Q`` and ``b_Q`` (the scores are linear in
    q); the weights are restored on exit, even after an error.
    """
    attn = model.blocks[0].attn
    saved = attn.W_Q.detach().clone(), attn.b_Q.detach().clone()
    with torch.no_grad():
        attn.W_Q.mul_(factor)
        attn.b_Q.mul_(factor)
    try:
        yield model
    finally:
        with torch.no_grad():
            attn.W_Q.copy_(saved[0])
            attn.b_Q.copy_(saved[1])


def free_run(model: LoopedModel, problems: Problems, *, seed: int = 0, edges: tuple[int, ...] = BIN_EDGES) -> list[dict]:
    """Free-running solve: per bin of a node's most-recurring operand, the share of nodes right and left EMPTY."""
    tb, _ = encode(problems, model.task, seed=seed)
    final, _, _ = run_chunked(model, tb)
    op_counts = operand_recurrence(tb, recurrence_counts(tb))  # [batch, node]
    g = tb.graphs
    inner = g.valid & (g.parents[..., 0] >= 0)
    value = final[np.arange(tb.batch)[:, None], np.maximum(tb.rhs_pos, 0), F_VALUE]  # [batch, node]
    right = value == np.where(g.valid, g.value, -2)
    empty = value == tb.vocab.empty
    return [{"bin": label, "lo": lo, "count": int(sel.sum()), "right": float(right[sel].mean()),
             "empty": float(empty[sel].mean())} for label, lo, sel in _bins(np.where(inner, op_counts, -1), edges)]


def first_errors(model: LoopedModel, problems: Problems, *, seed: int = 0) -> list[dict]:
    """Where each graph's decoded state first goes wrong: the first step whose state differs from the exact
    one-step map of the state before it, the node that erred, and its operands' recurrence.

    One dict per graph that erred: {graph, step, node, recurrence, left_empty} (``left_empty``: the node
    should have been written and stayed EMPTY). Graphs the model runs without a single wrong step are left out.
    """
    from workbench.training.batches import one_step_values

    tb, _ = encode(problems, model.task, seed=seed)
    out = hooked(model)(torch.from_numpy(tb.tokens).long(), lengths=torch.from_numpy(tb.length), return_type="output")
    states = out.states.numpy()  # [step + 1, batch, pos, factor]
    op_counts = operand_recurrence(tb, recurrence_counts(tb))  # [batch, node]
    errors, found = [], np.zeros(tb.batch, dtype=bool)
    for t in range(1, states.shape[0]):
        expected = one_step_values(tb, states[t - 1], model.task.modulus)  # [batch, pos]
        wrong = (states[t][..., F_VALUE] != expected) & tb.is_rhs  # [batch, pos]
        for b in np.flatnonzero(wrong.any(1) & ~found):
            pos = int(np.flatnonzero(wrong[b])[0])
            node = int(tb.node[b, pos])
            errors.append({"graph": int(b), "step": t - 1, "node": node, "recurrence": int(op_counts[b, node]),
                           "left_empty": bool(states[t][b, pos, F_VALUE] == tb.vocab.empty)})
            found[b] = True
    return errors


def figure(curves: dict[str, FanOutLookup], runs: dict[str, list[dict]] | None = None, *, train_cap: int = 12) -> go.Figure:
    """Lookup mass and readout accuracy (and, given ``runs``, free-run node accuracy) against recurrence, one line per model."""
    from plotly.subplots import make_subplots

    panels = 3 if runs else 2
    titles = ["lookup heads' mass on the defining position", "value read at the operand after block 0 (right)",
              "nodes right in a free run, by their operand's recurrence"][:panels]
    fig = make_subplots(rows=1, cols=panels, subplot_titles=titles, horizontal_spacing=0.08)
    for i, (name, res) in enumerate(curves.items()):
        rows = res.binned()
        x = [r["lo"] for r in rows]
        color = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"][i % 4]
        fig.add_scatter(x=x, y=[r["lookup_mass"] for r in rows], name=name, legendgroup=name, line_color=color,
                        text=[f"{r['count']} occurrences" for r in rows], row=1, col=1)
        fig.add_scatter(x=x, y=[r["readout_acc"] for r in rows], name=name, legendgroup=name, showlegend=False,
                        line_color=color, row=1, col=2)
        if runs and name in runs:
            fig.add_scatter(x=[r["lo"] for r in runs[name]], y=[r["right"] for r in runs[name]], name=name, legendgroup=name,
                            showlegend=False, line_color=color, row=1, col=3)
    for col in range(1, panels + 1):
        fig.add_vline(x=train_cap, line_dash="dot", line_color="grey", row=1, col=col)
        fig.update_xaxes(title_text="earlier uses of the same name", row=1, col=col)
        fig.update_yaxes(range=[0, 1.02], row=1, col=col)
    fig.update_layout(height=380, margin=dict(t=60, l=50, r=20, b=50), legend=dict(orientation="h", y=-0.25),
                      title_text=f"Fan-out: the name lookup against look-alikes (dotted: the training cap, {train_cap})")
    return fig


__all__ = ["FanOutLookup", "LOOKUP_THRESHOLD", "recurrence_counts", "operand_recurrence", "measure_lookup", "sharpened", "free_run", "first_errors", "figure"]
