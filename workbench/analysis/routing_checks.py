"""Causal checks of attention routing: does the model need what a head attends to?

``routing`` measures where heads attend and names their roles; this module tests each claim by ablation.
``Capture`` is a tap that keeps attention patterns and can rewrite head outputs; ``one_step`` runs one
loop step through it. A head is ablated (zero or mean) alone (``ablation_effects``) or with its role's group
(``group_effects``), and the frontier accuracy of the step (``frontier_accuracy``: the nodes that step
writes) falls or not; a head whose drop stays under ``USED_DROP`` "attends, not used" (``causal_verdicts``).
``composition`` is the path test lookup -> gather: the lookup heads ablated only at operand tokens.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from jaxtyping import Float, Int
import torch
from torch import Tensor

from workbench.model.layers import NO_TAP, Tap
from workbench.model.looped import LoopedModel
from workbench.task.tokens import TokenBatch
from workbench.task.vocab import F_SYNTAX, F_VALUE, PAD

USED_DROP = 0.02
"""Frontier-accuracy drop (ablated vs clean) below which a head 'attends, not used'."""


# ------------------------------------------------------------------------------------------- capture
class Capture(Tap):
    """A tap that keeps each layer's attention pattern and can rewrite heads' outputs (``hook_z``).

    ``edit(layer, z)`` -> z, when given, runs on ``blocks.{layer}.attn.hook_z`` [batch, pos, head, d_head].
    """

    def __init__(self, patterns: bool = True, edit=None) -> None:
        self.patterns: dict[int, Tensor] = {}
        self.z: dict[int, Tensor] = {}
        self.want_patterns, self.edit = patterns, edit

    def __call__(self, name: str, x: Tensor) -> Tensor:
        if name.endswith("attn.hook_pattern") and self.want_patterns:
            self.patterns[int(name.split(".")[1])] = x
        elif name.endswith("attn.hook_z"):
            layer = int(name.split(".")[1])
            if self.edit is not None:
                x = self.edit(layer, x)
            self.z[layer] = x
        return x

    def active(self, name: str) -> bool:
        return (self.want_patterns and name.endswith("attn.hook_pattern")) or name.endswith("attn.hook_z")


@torch.no_grad()
def one_step(model: LoopedModel, state: Int[np.ndarray, "batch pos factor"], tap: Tap = NO_TAP) -> Int[np.ndarray, "batch pos factor"]:
    """One loop step from ``state`` [batch, pos, factor] through ``tap`` (a ``Capture``, say), in eval
    mode whatever the model's mode (restored after); the decoded next state."""
    was_training = model.training
    model.eval()
    logits, _ = model.step(torch.from_numpy(state).long().to(model.device), tap)
    model.train(was_training)
    return model.decode(logits).cpu().numpy()


# ------------------------------------------------------------------------------------------- causal
def frontier_accuracy(tb: TokenBatch, step: int, output: Int[np.ndarray, "batch pos factor"]) -> float:
    """Share of the nodes of depth ``step`` (the ones step ``step`` writes) whose written value is right."""
    b, p = np.nonzero(tb.is_rhs & (tb.depth == step))
    return float((output[b, p, F_VALUE] == tb.target_value[b, p]).mean()) if len(b) else float("nan")


def step_accuracy(model: LoopedModel, tb: TokenBatch, step: int, tap: Tap = NO_TAP) -> float:
    """``frontier_accuracy`` of ``step`` run on its teacher input (the teacher state after step - 1) through ``tap``."""
    return frontier_accuracy(tb, step, one_step(model, tb.state(step - 1), tap))


def head_ablation(heads: Sequence[tuple[int, int]], mode: str, means: dict[int, Tensor] | None = None,
                  positions: np.ndarray | None = None):
    """An ``edit`` for ``Capture``: zero (or set to their mean) the outputs of ``heads`` [(layer, head)],
    at every position or only where ``positions`` [batch, pos] is True."""
    if mode not in ("zero", "mean"):
        raise ValueError(f"ablation mode must be 'zero' or 'mean', got {mode!r}")
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)

    def edit(layer: int, z: Tensor) -> Tensor:
        hs = by_layer.get(layer)
        if not hs:
            return z
        z = z.clone()
        value = torch.zeros_like(z[..., hs, :]) if mode == "zero" else means[layer][hs].to(z).expand_as(z[..., hs, :])
        if positions is None:
            z[..., hs, :] = value
        else:
            where = torch.from_numpy(positions[:, : z.shape[1]]).to(z.device)[..., None, None]
            z[..., hs, :] = torch.where(where, value, z[..., hs, :])
        return z

    return edit


def ablation_effects(model: LoopedModel, tb: TokenBatch, *, steps: Sequence[int] | None = None,
                     modes: Sequence[str] = ("zero", "mean")) -> dict:
    """Frontier-accuracy drop when each head is ablated at each step, teacher-forced input.

    Returns {"clean": [step], mode: [step, layer, head] drops (clean - ablated)}. Mean ablation sets
    a head's output to its mean over the batch's real positions at that step (a head that only adds a
    constant is then harmless); zero ablation removes it.
    """
    steps = list(steps) if steps is not None else list(range(int(tb.max_depth.max()) + 1))
    L, H = model.cfg.n_layers, model.cfg.n_heads
    real = torch.from_numpy(tb.tokens[..., F_SYNTAX] != PAD)
    out = {"steps": steps, "clean": [], **{m: np.full((len(steps), L, H), np.nan) for m in modes}}
    for i, t in enumerate(steps):
        clean = Capture(patterns=False)
        clean_acc = step_accuracy(model, tb, t, clean)
        out["clean"].append(clean_acc)
        means = {layer: z[real].mean(0) for layer, z in clean.z.items()}  # [head, d_head]
        for mode in modes:
            for layer in range(L):
                for head in range(H):
                    edit = head_ablation([(layer, head)], mode, means)
                    out[mode][i, layer, head] = clean_acc - step_accuracy(model, tb, t, Capture(patterns=False, edit=edit))
    return out


def composition(model: LoopedModel, tb: TokenBatch, lookup_heads: Sequence[tuple[int, int]], *,
                steps: Sequence[int] | None = None) -> dict:
    """Path test of lookup -> gather: ablate the lookup heads only at operand tokens, only elsewhere, everywhere.

    If the later layer reads what the lookup heads wrote at the operand tokens, ablating them there alone
    costs (nearly) as much as ablating them everywhere, and ablating them elsewhere costs little.
    Returns {where: [step] frontier accuracy} for clean, operands, elsewhere, everywhere.
    """
    steps = list(steps) if steps is not None else list(range(1, int(tb.max_depth.max()) + 1))
    operand = (tb.node >= 0) & ~tb.is_rhs
    out: dict[str, list] = {"steps": steps, "clean": [], "operands": [], "elsewhere": [], "everywhere": []}
    for t in steps:
        out["clean"].append(step_accuracy(model, tb, t))
        for where, positions in (("operands", operand), ("elsewhere", ~operand), ("everywhere", None)):
            edit = head_ablation(lookup_heads, "zero", positions=positions)
            out[where].append(step_accuracy(model, tb, t, Capture(patterns=False, edit=edit)))
    return out


def group_effects(model: LoopedModel, tb: TokenBatch, groups: dict[str, Sequence[tuple[int, int]]], *,
                  steps: Sequence[int] | None = None) -> dict[str, float]:
    """Mean frontier-accuracy drop (zero ablation, over ``steps``) when a whole group of heads is ablated.

    Heads that back each other up (several lookup heads reading the same definition) each cost nothing
    alone; only the group's ablation shows that the role is used.
    """
    steps = list(steps) if steps is not None else list(range(int(tb.max_depth.max()) + 1))
    drops: dict[str, list[float]] = {name: [] for name in groups}
    for t in steps:
        clean = step_accuracy(model, tb, t)
        for name, heads in groups.items():
            edit = head_ablation(heads, "zero")
            drops[name].append(clean - step_accuracy(model, tb, t, Capture(patterns=False, edit=edit)))
    return {name: float(np.nanmean(v)) for name, v in drops.items()}


def role_groups(roles: list[dict], alone: np.ndarray | None = None, threshold: float = USED_DROP) -> dict[str, list[tuple[int, int]]]:
    """The heads of each (layer, role), e.g. ``{"L0 lookup": [(0, 2), (0, 4)]}`` (``other`` left out).

    With ``alone`` ([layer, head] drops of single-head ablations), also ``"L0 lookup (weak)"``: the heads
    of the role whose ablation alone costs less than ``threshold`` (are they backups of each other?).
    """
    groups: dict[str, list[tuple[int, int]]] = {}
    for r in roles:
        if r["role"] != "other":
            groups.setdefault(f"L{r['layer']} {r['role']}", []).append((r["layer"], r["head"]))
            if alone is not None and alone[r["layer"], r["head"]] < threshold:
                groups.setdefault(f"L{r['layer']} {r['role']} (weak)", []).append((r["layer"], r["head"]))
    return groups


def single_drops(effects: dict) -> Float[np.ndarray, "layer head"]:
    """[layer, head] the larger of the zero- and mean-ablation drops, averaged over steps."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmax(np.stack([np.nanmean(effects[m], 0) for m in ("zero", "mean") if m in effects]), 0)


def causal_verdicts(roles: list[dict], effects: dict, group_drops: dict[str, float] | None = None,
                    threshold: float = USED_DROP) -> list[dict]:
    """Each role claim with its causal effect and a verdict.

    ``ablation_drop``: the larger of zero and mean ablation of the head alone, averaged over steps;
    ``group_drop``: the drop when its whole (layer, role) group is ablated. Verdict: ``used`` (alone),
    ``used as a group`` (weak alone, but ablating the role's weak heads together costs: they back each
    other up), or ``attends, not used`` (not even the weak heads together matter while the others work).
    """
    drops = single_drops(effects)
    group_drops = group_drops or {}
    out = []
    for r in roles:
        drop = float(drops[r["layer"], r["head"]])
        group = group_drops.get(f"L{r['layer']} {r['role']}")
        weak = group_drops.get(f"L{r['layer']} {r['role']} (weak)")
        if r["role"] == "other":
            verdict = "-"
        elif drop >= threshold:
            verdict = "used"
        elif weak is not None and weak >= threshold:
            verdict = "used as a group"
        else:
            verdict = "attends, not used"
        out.append({**r, "ablation_drop": drop, "group_drop": group, "verdict": verdict})
    return out


__all__ = ["USED_DROP", "Capture", "one_step", "frontier_accuracy", "step_accuracy", "head_ablation", "ablation_effects",
           "composition", "group_effects", "role_groups", "single_drops", "causal_verdicts"]
