"""Cross-step activation patching: layer x component x step effect maps between a clean and a corrupted run.

The corrupted problem is the clean one with one leaf's value changed (so every node depending on it
changes). Both run free for T steps. For every step t and component (each head's ``hook_z``, a
layer's whole attention output, its MLP output) the corrupted run is restarted from the state it read
at step t (the discrete state is the whole recurrent state, so this equals patching in mid-run) with
that one activation taken from the clean run's step t, and run on to step T. Two effects:
    step    the normalized value-logit difference at step t's output, over the defining positions
            where the clean and corrupted outputs of step t differ: (LD_patched - LD_corrupted) /
            (LD_clean - LD_corrupted), LD = logit(clean value) - logit(corrupted value); 1 = fully restored
    final   of the nodes whose final values differ between the clean and corrupted runs, the fraction the
            patched run ends with the clean value
Patching the whole state at step t is the sanity row: its final effect is 1 by construction.

Results (``run``): ``components`` (labels: heads ``0..H-1``, ``attn``, ``mlp``), ``step_effect`` and
``final_effect`` [step][layer][component], ``state`` {``step``, ``final``} [step], ``n_differ`` [step].
"""

from __future__ import annotations


import numpy as np
import torch
from tqdm.auto import tqdm

from workbench.analysis.activations import default_steps, sample_batch
from workbench.analysis.summary import PatchingSummary
from workbench.errors import WorkbenchError
from workbench.hooks.names import hook_name, sites_filter
from workbench.hooks.tl_wrapper import hooked
from workbench.task.graphs import evaluate
from workbench.task.tokens import TokenBatch, tokenize
from workbench.task.vocab import F_VALUE


def corrupt_leaf(tb: TokenBatch, rng: np.random.Generator) -> TokenBatch:
    """The same graphs with one random leaf per graph given a different random value (all values recomputed)."""
    g = tb.graphs
    leaf = g.leaf_value.copy()
    rows = np.arange(g.batch)
    which = np.array([rng.choice(np.flatnonzero(leaf[b] >= 0)) for b in rows])
    leaf[rows, which] = (leaf[rows, which] + rng.integers(1, g.modulus, size=g.batch)) % g.modulus
    from workbench.task.graphs import Graphs

    new = Graphs(g.parents, g.ops, leaf, evaluate(g.parents, g.ops, leaf, g.modulus), g.depth, g.names, g.n_nodes,
                 g.modulus)
    return tokenize(new, tb.vocab, pad_to=tb.max_len)


def _run(hm, state: torch.Tensor, lengths: torch.Tensor, n_steps: int, hooks=()):
    keep = [hook_name(0, "hook_logits", factor=F_VALUE)]
    return hm.run_with_cache(state, names_filter=keep, lengths=lengths, n_steps=n_steps, return_type="output",
                             fwd_hooks=list(hooks))


def run(model, *, n_nodes: int = 16, count: int = 64, n_steps: int | None = None, seed: int = 0,
        progress: bool = False) -> tuple[dict, PatchingSummary]:
    """Patch every head, attention and MLP output at every step from the clean run; ``(results, summary)``."""
    hm = hooked(model)
    if hm.cfg.latent != "discrete" or not hm.cfg.looped:
        raise WorkbenchError("cross-step patching restarts runs from a step's discrete state; "
                             "it needs a looped model with a discrete latent")
    rng = np.random.default_rng(seed)
    clean_tb = sample_batch(hm, n_nodes, count, seed=seed, depth_cap=6)
    corr_tb = corrupt_leaf(clean_tb, rng)
    T = n_steps or default_steps(clean_tb, extra=0, cap=10)
    L, H = hm.cfg.n_layers, hm.cfg.n_heads
    lengths = torch.from_numpy(clean_tb.length).long()
    sites = sites_filter("attn.hook_z", "hook_attn_out", "hook_mlp_out", "hook_state", "hook_logits", "hook_bottleneck")
    runs = {}
    for name, tb in (("clean", clean_tb), ("corrupted", corr_tb)):
        runs[name] = hm.run_with_cache(torch.from_numpy(tb.tokens).long().to(hm.device), names_filter=sites,
                                       lengths=lengths, n_steps=T, return_type="output")
    (clean_out, clean_c), (corr_out, corr_c) = runs["clean"], runs["corrupted"]
    g = clean_tb.graphs
    b, n = np.nonzero(g.valid)
    rhs = torch.from_numpy(clean_tb.rhs_pos[b, n])
    b_t = torch.from_numpy(b)
    final_clean = clean_out.states[-1][b_t, rhs, F_VALUE].cpu()
    final_corr = corr_out.states[-1][b_t, rhs, F_VALUE].cpu()
    final_differ = final_clean != final_corr

    def value_logits(cache, t):
        return cache[hook_name(t, "hook_logits", factor=F_VALUE)][b_t, rhs].float().cpu()  # [node, vocab]

    comps = [str(h) for h in range(H)] + ["attn", "mlp"]
    step_eff = np.full((T, L, len(comps)), np.nan)
    final_eff = np.full((T, L, len(comps)), np.nan)
    state_eff = {"step": np.full(T, np.nan), "final": np.full(T, np.nan)}
    n_differ = np.zeros(T, dtype=int)
    bar = tqdm(total=T * (L * len(comps) + 1), desc="patching", disable=not progress, dynamic_ncols=True, leave=False)
    for t in range(T):
        out_clean = clean_c[hook_name(t, "hook_bottleneck")][b_t, rhs, F_VALUE].cpu()
        out_corr = corr_c[hook_name(t, "hook_bottleneck")][b_t, rhs, F_VALUE].cpu()
        differ = out_clean != out_corr
        n_differ[t] = int(differ.sum())
        idx = torch.arange(len(b))[differ]

        def ld(logits):
            return (logits[idx, out_clean[idx]] - logits[idx, out_corr[idx]]).sum().item()
        ld_clean, ld_corr = ld(value_logits(clean_c, t)), ld(value_logits(corr_c, t))
        start = corr_c[hook_name(t, "hook_state")]

        def measure(hooks, init=start):
            out, cache = _run(hm, init, lengths, T - t, hooks)
            final = out.states[-1][b_t, rhs, F_VALUE].cpu()
            fin = float((final[final_differ] == final_clean[final_differ]).float().mean()) if final_differ.any() else np.nan
            denom = ld_clean - ld_corr
            step = (ld(value_logits(cache, 0)) - ld_corr) / denom if len(idx) and abs(denom) > 1e-6 else np.nan
            return step, fin

        state_eff["step"][t], state_eff["final"][t] = measure([], clean_c[hook_name(t, "hook_state")])
        bar.update(1)
        for layer in range(L):
            for j, comp in enumerate(comps):
                if comp == "attn" or comp == "mlp":
                    site = "hook_attn_out" if comp == "attn" else "hook_mlp_out"
                    donor = clean_c[hook_name(t, site, layer)]
                    fn = lambda act, hook, donor=donor: donor.to(act.dtype)  # noqa: E731
                    name = hook_name(0, site, layer)
                else:
                    h = int(comp)
                    donor = clean_c[hook_name(t, "attn.hook_z", layer)][:, :, h]

                    def fn(act, hook, donor=donor, h=h):
                        act = act.clone()
                        act[:, :, h] = donor.to(act.dtype)
                        return act
                    name = hook_name(0, "attn.hook_z", layer)
                step_eff[t, layer, j], final_eff[t, layer, j] = measure([(name, fn)])
                bar.update(1)
    bar.close()
    results = {"steps": list(range(T)), "layers": L, "components": comps, "step_effect": step_eff,
               "final_effect": final_eff, "state": state_eff, "n_differ": n_differ,
               "final_differ": int(final_differ.sum())}
    with np.errstate(invalid="ignore"):
        best = np.nanargmax(np.nan_to_num(step_eff, nan=-np.inf).reshape(-1)) if np.isfinite(step_eff).any() else None
    largest = None
    if best is not None:
        t, layer, j = np.unravel_index(best, step_eff.shape)
        largest = f"step {t}, L{layer} {comps[j]}: {step_eff[t, layer, j]:.2f}"

    def mean_effect(x: np.ndarray) -> float | None:
        with np.errstate(invalid="ignore"):
            return float(np.nanmean(x)) if np.isfinite(x).any() else None

    summary = PatchingSummary(
        nodes_differing=int(final_differ.sum()),
        state_patch_effect=float(np.nanmin(state_eff["final"])) if np.isfinite(state_eff["final"]).any() else None,
        largest_step_effect=largest, mlp_effect={layer: mean_effect(step_eff[:, layer, -1]) for layer in range(L)},
        attn_effect={layer: mean_effect(step_eff[:, layer, -2]) for layer in range(L)})
    return results, summary


def figures(result: dict) -> list:
    """Patching maps: step x component per layer, for the step effect and the final effect."""
    from workbench.plots.analysis import Figure, Heatmap, Lines

    r = result["results"]
    steps, comps = r["steps"], r["components"]
    panels = []
    for key, title in (("step_effect", "effect on step t's output"), ("final_effect", "effect on the final state")):
        for layer in range(r["layers"]):
            panels.append(Heatmap(f"L{layer}: {title}", [row[layer] for row in r[key]], comps, steps,
                                  "component (head, attn, mlp)", "patched step", -0.2, 1))
    sanity = Lines("whole-state patch (sanity: final = 1) and support", steps,
                   {"state: step effect": r["state"]["step"], "state: final effect": r["state"]["final"]},
                   "patched step", "effect", -0.2, 1.05)
    support = Lines("nodes whose step-t output differs (clean vs corrupted)", steps, {"nodes": r["n_differ"]},
                    "step", "count")
    return [Figure("maps", "Cross-step activation patching: clean -> corrupted (one leaf changed)", panels),
            Figure("sanity", "Patching the whole state", [sanity, support])]


__all__ = ["corrupt_leaf", "PatchingSummary", "run", "figures"]
