"""Codebook usage: what the discrete bottleneck writes, step by step.

The "codebook" is the task vocabulary: every step writes one code per factor at every position. Per
factor and step: the histogram of codes over real positions, its entropy, the codes never written;
the decoded values at the defining positions; invalid combinations (the syntax, name or operation
of a token changed, a spare value code >= p, a value written where none belongs, a defining position set to
N/A, a leaf constant altered); and the transitions of every node's value from the state a step read
to the state it wrote: EMPTY -> right or wrong, right -> wrong (new errors), wrong -> right
(corrections), erasures back to EMPTY.

Results (``run``): ``histograms[factor]`` [step][code] (fractions of real positions), ``entropy``
[factor][step] (bits), ``unused[factor]`` (codes never written, any step), ``value_histogram`` [step][code]
at defining positions, ``invalid`` {rule: [step]} (rates over the positions each rule concerns),
``transitions`` {kind: [step]} (fractions of nodes), all for ``n_nodes`` graphs run free for ``steps``.
"""

from __future__ import annotations


import numpy as np
from jaxtyping import Int

from workbench.analysis.activations import cached_runs, default_steps, sample_batch
from workbench.analysis.summary import CodebookSummary
from workbench.hooks.tl_wrapper import hooked
from workbench.task.tokens import TokenBatch
from workbench.task.vocab import F_OPERATION, F_SYNTAX, F_VALUE, F_VARIABLE, FACTORS, VALUE, VARIABLE

TRANSITIONS = ("empty->empty", "empty->right", "empty->wrong", "right->right", "right->wrong", "wrong->right",
               "wrong->same", "wrong->other", "value->empty")
#: the transitions the summary counts, and their labels there
TRANSITION_LABELS = {"wrong->right": "corrections (wrong->right)", "right->wrong": "new errors (right->wrong)",
                     "empty->right": "empty->right", "empty->wrong": "empty->wrong"}
INVALID = ("syntax changed", "name changed", "operation changed", "spare value code", "value at operand", "value off variables", "rhs set to N/A",
           "constant altered")


def transitions(before: Int[np.ndarray, "node"], after: Int[np.ndarray, "node"], truth: Int[np.ndarray, "node"],
                empty: int) -> dict[str, int]:
    """Counts of each kind of change of node values (arrays [node]) from ``before`` to ``after``.

    >>> transitions(np.array([9, 9, 1, 2, 2]), np.array([1, 2, 2, 1, 9]), np.array([1, 1, 1, 1, 1]), 9)["wrong->right"]
    1
    """
    b_empty, a_empty = before == empty, after == empty
    b_right, a_right = before == truth, after == truth
    kinds = {
        "empty->empty": b_empty & a_empty, "empty->right": b_empty & a_right, "empty->wrong": b_empty & ~a_empty & ~a_right,
        "right->right": b_right & a_right, "right->wrong": b_right & ~a_right & ~a_empty,
        "wrong->right": ~b_empty & ~b_right & a_right, "wrong->same": ~b_empty & ~b_right & (after == before),
        "wrong->other": ~b_empty & ~b_right & ~a_right & ~a_empty & (after != before),
        "value->empty": ~b_empty & a_empty,
    }
    return {k: int(v.sum()) for k, v in kinds.items()}


def invalid_counts(state: Int[np.ndarray, "batch pos factor"], tb: TokenBatch, modulus: int) -> dict[str, tuple[int, int]]:
    """``{rule: (violations, positions concerned)}`` of one written state [batch, pos, factor]."""
    v = tb.vocab
    real = np.arange(tb.max_len)[None, :] < tb.length[:, None]
    inp = tb.tokens
    value = state[..., F_VALUE]
    syntax = inp[..., F_SYNTAX]
    is_rhs = tb.is_rhs
    operand = np.zeros_like(real)
    b, n, s = np.nonzero(tb.operand_pos >= 0)
    operand[b, tb.operand_pos[b, n, s]] = True
    constant = real & (syntax == VALUE)
    other = real & (syntax != VARIABLE) & ~constant
    changed = (state[..., :F_VALUE] != inp[..., :F_VALUE]) & real[..., None]  # [batch, pos, factor]
    return {
        "syntax changed": (int(changed[..., F_SYNTAX].sum()), int(real.sum())),
        "name changed": (int(changed[..., F_VARIABLE].sum()), int(real.sum())),
        "operation changed": (int(changed[..., F_OPERATION].sum()), int(real.sum())),
        "spare value code": (int((real & (value >= modulus) & (value < v.n_values)).sum()), int(real.sum())),
        "value at operand": (int((operand & (value != v.empty)).sum()), int(operand.sum())),
        "value off variables": (int((other & (value != v.value_na)).sum()), int(other.sum())),
        "rhs set to N/A": (int((is_rhs & (value == v.value_na)).sum()), int(is_rhs.sum())),
        "constant altered": (int((constant & (value != inp[..., F_VALUE])).sum()), int(constant.sum())),
    }


def run(model, *, n_nodes: int = 32, count: int = 128, depth_cap: int | None = None, n_steps: int | None = None,
        seed: int = 0, batch_size: int = 32, progress: bool = False) -> tuple[dict, CodebookSummary]:
    """Code usage of free runs on ``count`` graphs of ``n_nodes`` nodes; ``(results, summary)``."""
    hm = hooked(model)
    tb = sample_batch(hm, n_nodes, count, seed=seed, depth_cap=depth_cap)
    T = n_steps or default_steps(tb, extra=2, cap=24)
    sizes = hm.vocab.sizes
    hist = [np.zeros((T, n)) for n in sizes]
    value_hist = np.zeros((T, sizes[F_VALUE]))
    inv = {k: np.zeros((T, 2)) for k in INVALID}
    trans = {k: np.zeros(T) for k in TRANSITIONS}
    n_real = n_nodes_total = 0
    empty = hm.vocab.empty
    for chunk in cached_runs(hm, tb, n_steps=T, names_filter=[], mode="free", batch_size=batch_size,
                             progress=progress, desc="codebook"):
        sub = chunk.tb
        states = chunk.out.states.cpu().numpy()  # [step + 1, chunk, pos, factor]: states[t + 1] = step t's output
        real = np.arange(sub.max_len)[None, :] < sub.length[:, None]
        b, n = np.nonzero(sub.graphs.valid)
        rhs = sub.rhs_pos[b, n]
        truth = sub.graphs.value[b, n]
        n_real += int(real.sum())
        n_nodes_total += len(b)
        for t in range(T):
            out = states[t + 1]
            for f, n_codes in enumerate(sizes):
                hist[f][t] += np.bincount(out[..., f][real], minlength=n_codes)[:n_codes]
            value_hist[t] += np.bincount(out[b, rhs, F_VALUE], minlength=sizes[F_VALUE])[:sizes[F_VALUE]]
            for k, (bad, total) in invalid_counts(out, sub, hm.task.modulus).items():
                inv[k][t] += (bad, total)
            for k, c in transitions(states[t][b, rhs, F_VALUE], out[b, rhs, F_VALUE], truth, empty).items():
                trans[k][t] += c
    hist = [h / max(n_real, 1) for h in hist]
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = [np.nansum(np.where(h > 0, -h * np.log2(h), 0.0), 1) for h in hist]
    unused = [np.flatnonzero(h.sum(0) == 0).tolist() for h in hist]
    invalid = {k: np.where(v[:, 1] > 0, v[:, 0] / np.maximum(v[:, 1], 1), np.nan) for k, v in inv.items()}
    trans = {k: v / max(n_nodes_total, 1) for k, v in trans.items()}
    p = hm.task.modulus
    results = {"steps": list(range(T)), "n_nodes": n_nodes, "factors": list(FACTORS), "sizes": list(sizes),
               "histograms": hist, "entropy": entropy, "unused": unused,
               "value_histogram": value_hist / max(n_nodes_total, 1), "invalid": invalid, "transitions": trans}
    summary = CodebookSummary(
        unused_value_codes=len(unused[F_VALUE]),
        spare_value_share=float(hist[F_VALUE][:, p:hm.vocab.n_values].sum(1).max()),
        value_entropy=float(entropy[F_VALUE][-1]),
        transitions={label: float(trans[kind].sum()) for kind, label in TRANSITION_LABELS.items()},
        max_invalid_rate=float(max(np.nanmax(v) if np.isfinite(v).any() else 0 for v in invalid.values())))
    return results, summary


def figures(result: dict) -> list:
    """Codebook figures: code histograms per factor and step, entropy, value histogram, invalid rates, transitions."""
    from workbench.plots.analysis import Figure, Heatmap, Lines

    r = result["results"]
    steps = r["steps"]
    hists = [Heatmap(f"{f} codes written", r["histograms"][i], list(range(r["sizes"][i])), steps, "code", "step",
                     0, None, annotate=False) for i, f in enumerate(r["factors"])]
    hists.append(Heatmap("values at defining positions", r["value_histogram"], list(range(r["sizes"][-1])), steps,
                         "value code (last two: N/A, EMPTY)", "step", 0, None, annotate=False))
    hists.append(Lines("entropy of each factor's codes", steps, dict(zip(r["factors"], r["entropy"])), "step", "bits"))
    trans = r["transitions"]
    figs = [Figure("histograms", f"Codes the bottleneck writes (N = {r['n_nodes']}, free runs)", hists, cols=3),
            Figure("transitions", "Node values from the state a step reads to the state it writes",
                   [Lines("value transitions (fraction of nodes)", steps, trans, "step", "fraction", 0, None),
                    Lines("invalid combinations (rate)", steps, r["invalid"], "step", "rate", 0, None)])]
    return figs


__all__ = ["TRANSITIONS", "INVALID", "transitions", "invalid_counts", "CodebookSummary", "run", "figures"]
