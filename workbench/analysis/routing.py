"""Attention routing, measured from every kind of query, with head roles derived from the data.

The one place that defines what a head's attention means. For an equation ``a + b = c`` the queries
that matter, and the keys each should read, are

    operand_lookup  an operand token (``a``)  -> that variable's defining position (where its value lives)
    gather          a result position (``c``) -> its own operand tokens (by slot)
    induction       a result position (``c``) -> its parents' defining positions (the paper's layer-2 heads)
    self            any position              -> itself
    syntax          any position              -> operators, ``=`` and separators

``operand_lookup`` averages over the operand tokens whose definition is already filled in the step's
input; ``gather`` and ``induction`` over the result positions of nodes whose parents are all filled
(the nodes the step can compute); ``self`` and ``syntax`` over every position. A model shaped by the
operand-lookup auxiliary loss (``default``) looks values up at the operand tokens and gathers them by
slot; the paper's model reads them from the result position by induction. Both circuits show here.

A head's role at a step is the measure it serves most, if that mass reaches ``ROLE_THRESHOLD``:
``lookup``, ``gather`` (with the slot it serves) or ``induction``; else ``other``. A role claim is only
as good as its causal check (``ablation_effects``): a head whose ablation does not lower the step's
frontier accuracy by ``USED_DROP`` is reported as "attends, not used". The causal checks live in
``routing_checks`` (re-exported here).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from workbench.analysis.routing_checks import (USED_DROP, Capture, ablation_effects, causal_verdicts, composition,
                                               frontier_accuracy, group_effects, head_ablation, one_step, role_groups,
                                               single_drops, step_accuracy)
from workbench.analysis.summary import RoutingSummary
from workbench.model.looped import LoopedModel
from workbench.task.tokens import TokenBatch
from workbench.task.vocab import F_SYNTAX, F_VALUE, PAD, VALUE, VARIABLE

MEASURES = ("operand_lookup", "gather", "induction", "self", "syntax")
ROLES = ("lookup", "gather", "induction", "other")
ROLE_OF = {"operand_lookup": "lookup", "gather": "gather", "induction": "induction"}
ROLE_THRESHOLD = 0.3
"""Mean attention mass on a measure's keys that makes a head serve that role (uniform attention over a
typical N = 16 sequence puts < 0.05 on any one of them)."""
ABLATION_GRAPHS = 64
"""Graphs the causal checks of ``run`` use (the measures use all)."""
MAX_SLOTS = 3


# --------------------------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class Layout:
    """Where the queries and keys of every measure sit in one token batch (flat index arrays).

    Operand occurrences: (op_b, op_q) the token, op_def its definition. Inner nodes: (nd_b, nd_n), nd_q
    their result position, nd_ops / nd_defs [node, slot] their operand tokens and parents' definitions
    (-1 where the node has fewer operands).
    """

    op_b: np.ndarray
    op_q: np.ndarray
    op_def: np.ndarray
    nd_b: np.ndarray
    nd_n: np.ndarray
    nd_q: np.ndarray
    nd_ops: np.ndarray
    nd_defs: np.ndarray
    real: np.ndarray  # [batch, pos] not padding
    syntax_key: np.ndarray  # [batch, pos] an operator, '=' or separator

    @classmethod
    def of(cls, tb: TokenBatch) -> "Layout":
        g = tb.graphs
        op_b, op_q = np.nonzero((tb.node >= 0) & ~tb.is_rhs)
        op_def = tb.rhs_pos[op_b, tb.node[op_b, op_q]]
        nd_b, nd_n = np.nonzero(g.valid & (g.parents[..., 0] >= 0))
        parents = g.parents[nd_b, nd_n]  # [node, slot]
        nd_defs = np.where(parents >= 0, tb.rhs_pos[nd_b[:, None], np.maximum(parents, 0)], -1)
        syntax = tb.tokens[..., F_SYNTAX]
        return cls(op_b, op_q, op_def, nd_b, nd_n, tb.rhs_pos[nd_b, nd_n], tb.operand_pos[nd_b, nd_n], nd_defs,
                   syntax != PAD, (syntax != PAD) & (syntax != VARIABLE) & (syntax != VALUE))


def filled_positions(state: Int[np.ndarray, "batch pos factor"], vocab) -> Bool[np.ndarray, "batch pos"]:
    """[batch, pos] defining positions whose value is written in ``state`` [batch, pos, factor]."""
    return state[..., F_VALUE] < vocab.n_values


# -------------------------------------------------------------------------------------------- measure
def measure_step(patterns: Sequence[Float[Tensor, "batch head query key"]], layout: Layout,
                 filled: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One step's routing: {measure: (sum [layer, head], count)} plus ``gather_slot`` (sum [layer, head, slot], count [slot]).

    ``filled`` [batch, pos] says which definitions the step's input holds (``filled_positions``).
    Sums and counts (not means) so that chunks of a batch add up.
    """
    lo = layout
    op_keep = filled[lo.op_b, lo.op_def]
    nd_keep = np.all((lo.nd_defs < 0) | filled[lo.nd_b[:, None], np.maximum(lo.nd_defs, 0)], axis=1)
    ob, oq, od = lo.op_b[op_keep], lo.op_q[op_keep], lo.op_def[op_keep]
    nb, nq, nops, ndefs = lo.nd_b[nd_keep], lo.nd_q[nd_keep], lo.nd_ops[nd_keep], lo.nd_defs[nd_keep]
    real = torch.from_numpy(lo.real)
    syntax_key = torch.from_numpy(lo.syntax_key).float()
    sums: dict[str, list] = {m: [] for m in MEASURES}
    slot_sums = []
    for pat in patterns:
        pat = pat.float().cpu()
        sums["operand_lookup"].append(pat[ob, :, oq, od].sum(0).numpy())  # [head]
        slots = np.zeros((pat.shape[1], MAX_SLOTS))
        ind = np.zeros(pat.shape[1])
        for s in range(min(MAX_SLOTS, nops.shape[1])):
            has = nops[:, s] >= 0
            slots[:, s] = pat[nb[has], :, nq[has], nops[has, s]].sum(0).numpy()
            ind += pat[nb[has], :, nq[has], ndefs[has, s]].sum(0).numpy()
        slot_sums.append(slots)
        sums["gather"].append(slots.sum(1))
        sums["induction"].append(ind)
        diag = pat.diagonal(dim1=-2, dim2=-1)  # [batch, head, pos]
        sums["self"].append((diag * real[:, None]).sum((0, 2)).numpy())
        to_syntax = torch.einsum("bhqk,bk->bhq", pat, syntax_key)
        sums["syntax"].append((to_syntax * real[:, None]).sum((0, 2)).numpy())
    n_real = int(lo.real.sum())
    counts = {"operand_lookup": len(ob), "gather": len(nb), "induction": len(nb), "self": n_real, "syntax": n_real}
    out = {m: (np.stack(sums[m]), np.asarray(counts[m])) for m in MEASURES}
    out["gather_slot"] = (np.stack(slot_sums), (nops >= 0).sum(0)[:MAX_SLOTS])
    return out


def _mean(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


@dataclass
class Routing:
    """Routing measures of a run, each [step, layer, head] (NaN at a step without such queries)."""

    measures: dict[str, np.ndarray]  # measure -> [step, layer, head]
    gather_slot: np.ndarray  # [step, layer, head, slot] mass on the operand token of each slot

    @classmethod
    def from_sums(cls, per_step: list[dict]) -> "Routing":
        measures = {m: np.stack([_mean(*s[m]) for s in per_step]) for m in MEASURES}
        slot = np.stack([_mean(s["gather_slot"][0], s["gather_slot"][1][None, None, :]) for s in per_step])
        return cls(measures, slot)

    def roles(self, threshold: float = ROLE_THRESHOLD) -> list[dict]:
        """Every head's role per step and overall (the role of its step-averaged measures), with its stability."""
        return head_roles(self.measures, self.gather_slot, threshold)

    def to_json(self) -> dict:
        return {**{m: v.tolist() for m, v in self.measures.items()}, "gather_slot": self.gather_slot.tolist()}


def role_of(values: dict[str, float], threshold: float = ROLE_THRESHOLD) -> str:
    """The role a head's measures name: the largest of lookup, gather and induction if it reaches ``threshold``.

    >>> role_of({"operand_lookup": 0.8, "gather": 0.1, "induction": 0.0})
    'lookup'
    >>> role_of({"operand_lookup": 0.1, "gather": 0.2, "induction": 0.25})
    'other'
    """
    best = max(ROLE_OF, key=lambda m: -1.0 if not np.isfinite(values[m]) else values[m])
    return ROLE_OF[best] if np.isfinite(values[best]) and values[best] >= threshold else "other"


def head_roles(measures: dict[str, Float[np.ndarray, "step layer head"]], gather_slot: Float[np.ndarray, "step layer head slot"], threshold: float = ROLE_THRESHOLD) -> list[dict]:
    """Per head: {layer, head, role, slot, steps (role per step), stability, and each measure's step mean}.

    ``slot`` (gather heads): the operand slot the head reads most; ``stability``: the share of steps
    (with queries) whose own role equals the overall one.
    """
    T, L, H = measures["operand_lookup"].shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # steps without queries stay NaN
        mean = {m: np.nanmean(v, 0) for m, v in measures.items()}  # [layer, head]
        slot_mean = np.nanmean(gather_slot, 0)  # [layer, head, slot]
    out = []
    for layer in range(L):
        for head in range(H):
            role = role_of({m: mean[m][layer, head] for m in ROLE_OF}, threshold)
            steps = [role_of({m: measures[m][t, layer, head] for m in ROLE_OF}, threshold)
                     if any(np.isfinite(measures[m][t, layer, head]) for m in ROLE_OF) else None for t in range(T)]
            valid = [r for r in steps if r is not None]
            slot = (int(np.nanargmax(slot_mean[layer, head])) if role == "gather"
                    and np.isfinite(slot_mean[layer, head]).any() else None)
            out.append({"layer": layer, "head": head, "role": role, "slot": slot, "steps": steps,
                        "stability": float(np.mean([r == role for r in valid])) if valid else None,
                        **{m: float(mean[m][layer, head]) for m in MEASURES}})
    return out


# ------------------------------------------------------------------------------------------ the probe
def run(model, *, n_nodes: int = 16, count: int = 256, depth_cap: int | None = 6, n_steps: int | None = None,
        mode: str = "teacher", threshold: float = ROLE_THRESHOLD, seed: int = 0, batch_size: int = 32,
        ablation_graphs: int = ABLATION_GRAPHS, progress: bool = False) -> tuple[dict, RoutingSummary]:
    """Routing of every head at every step, roles, ablation effects and the lookup -> gather path test.

    ``mode`` ``teacher``: each step reads the teacher state (what the step's role is meant to be on);
    ``free``: each step reads the model's own previous state. The causal checks run on the first
    ``ablation_graphs`` graphs (each head x step x mode is one more forward pass).
    """
    from tqdm.auto import tqdm

    from workbench.analysis.activations import sample_batch
    from workbench.hooks.tl_wrapper import hooked

    model = hooked(model).model if not isinstance(model, LoopedModel) else model
    tb = sample_batch(model, n_nodes, count, seed=seed, depth_cap=depth_cap)
    T = n_steps or int(tb.max_depth.max()) + 1
    per_step: list = [None] * T
    effects: list[dict] = []
    for start in tqdm(range(0, tb.batch, batch_size), desc="routing", disable=not progress, leave=False):
        sub = tb.select(np.arange(start, min(start + batch_size, tb.batch)))
        layout = Layout.of(sub)
        state = sub.state(-1)
        for t in range(T):
            if mode == "teacher":
                state = sub.state(t - 1)
            capture = Capture()
            next_state = one_step(model, state, capture)
            sums = measure_step([capture.patterns[layer] for layer in sorted(capture.patterns)], layout,
                                filled_positions(state, sub.vocab))
            per_step[t] = sums if per_step[t] is None else {k: (per_step[t][k][0] + v[0], per_step[t][k][1] + v[1])
                                                            for k, v in sums.items()}
            state = next_state
        if start < ablation_graphs:
            effects.append(ablation_effects(model, sub, steps=list(range(min(T, int(sub.max_depth.max()) + 1)))))
    routing = Routing.from_sums(per_step)
    roles = routing.roles(threshold)
    eff = _merge_effects(effects, T, model.cfg.n_layers, model.cfg.n_heads)
    first = tb.select(np.arange(min(tb.batch, batch_size)))
    groups = role_groups(roles, single_drops(eff))
    roles = causal_verdicts(roles, eff, group_effects(model, first, groups) if groups else None)
    lookup_heads = [(r["layer"], r["head"]) for r in roles if r["role"] == "lookup"]
    path = composition(model, first, lookup_heads) if lookup_heads else None
    results = {"steps": list(range(T)), "layers": model.cfg.n_layers, "heads": model.cfg.n_heads, "mode": mode,
               "threshold": threshold, "used_drop": USED_DROP, **routing.to_json(), "roles": roles,
               "ablation": {"clean": eff["clean"], "zero": eff["zero"].tolist(), "mean": eff["mean"].tolist()},
               "composition": path}
    return results, summarize(results)


def _merge_effects(chunks: list[dict], T: int, L: int, H: int) -> dict:
    """Average per-chunk ablation results over chunks, step by step (chunks may end at different depths)."""
    out = {"clean": [], "zero": np.full((T, L, H), np.nan), "mean": np.full((T, L, H), np.nan)}
    for t in range(T):
        have = [c for c in chunks if t in c["steps"]]
        idx = [c["steps"].index(t) for c in have]
        out["clean"].append(float(np.nanmean([c["clean"][i] for c, i in zip(have, idx)])) if have else float("nan"))
        for m in ("zero", "mean"):
            if have:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    out[m][t] = np.nanmean(np.stack([c[m][i] for c, i in zip(have, idx)]), 0)
    return out


def _head_label(r: dict) -> str:
    """E.g. ``5 (v1) [used, drop 0.42]``."""
    slot = "" if r["slot"] is None else f" (v{r['slot']})"
    return f"{r['head']}{slot} [{r['verdict']}, alone {r['ablation_drop']:.2f}, group {r['group_drop'] or 0:.2f}]"


def summarize(results: dict) -> RoutingSummary:
    """The findings in a few lines: which heads do what, and whether it matters."""
    heads: dict[str, dict[int, str]] = {role: {} for role in ("lookup", "gather", "induction")}
    for role in heads:
        for layer in range(results["layers"]):
            found = [r for r in results["roles"] if r["role"] == role and r["layer"] == layer]
            if found:
                heads[role][layer] = ", ".join(_head_label(r) for r in found)
    top = {m: float(np.nanmax(np.asarray(results[m], dtype=float))) for m in ("operand_lookup", "gather", "induction")}
    path = results.get("composition")
    mean = {k: round(float(np.nanmean(v)), 3) for k, v in path.items() if k != "steps"} if path else {}
    return RoutingSummary(lookup_heads=heads["lookup"], gather_heads=heads["gather"], induction_heads=heads["induction"],
                          max_operand_lookup=top["operand_lookup"], max_gather=top["gather"],
                          max_induction=top["induction"], lookup_ablated_at_operands=mean.get("operands"),
                          lookup_ablated_elsewhere=mean.get("elsewhere"), clean_frontier_acc=mean.get("clean"))


def figures(result: dict) -> list:
    """Routing figures: the three measures per layer (step x head), gather by slot, and ablation drops."""
    from workbench.plots.analysis import Figure, Heatmap

    r = result["results"]
    steps, heads = r["steps"], list(range(r["heads"]))
    panels, causal = [], []
    for layer in range(r["layers"]):
        for key in ("operand_lookup", "gather", "induction"):
            panels.append(Heatmap(f"L{layer} {key.replace('_', ' ')}", [row[layer] for row in r[key]], heads, steps,
                                  "head", "step", 0, 1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            slot = np.nanmean(np.array(r["gather_slot"], dtype=float)[:, layer], 0)  # [head, slot]
        panels.append(Heatmap(f"L{layer} gather by operand slot", slot.T.tolist(), heads,
                              [f"v{s}" for s in range(slot.shape[1])], "head", "slot", 0, 1))
        for mode in ("zero", "mean"):
            causal.append(Heatmap(f"L{layer} accuracy drop, {mode} ablation", [row[layer] for row in r["ablation"][mode]],
                                  heads, steps, "head", "step", 0, 1))
    return [Figure("measures", "Attention mass per step and head: operand token -> its definition (lookup), "
                   "result -> its operand tokens (gather), result -> its parents' definitions (induction)", panels, cols=4),
            Figure("ablation", "Causal check: frontier accuracy lost when one head is ablated at one step", causal, cols=2)]


__all__ = ["MEASURES", "ROLES", "ROLE_THRESHOLD", "USED_DROP", "ABLATION_GRAPHS", "Layout", "Routing", "measure_step",
           "filled_positions", "role_of", "head_roles", "run", "summarize", "RoutingSummary", "figures",
           # the causal checks, from routing_checks
           "Capture", "one_step", "frontier_accuracy", "step_accuracy", "head_ablation", "ablation_effects",
           "composition", "group_effects", "role_groups", "single_drops", "causal_verdicts"]
