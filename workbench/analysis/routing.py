"""Attention routing: where each head, at each step, sends a result position's attention.

For a node ``v0 + v1 + v2 = rhs`` the query is the rhs position. Its attention mass on
    copy       its own operand tokens (the operand *names*, in the same equation: layer-1 heads in the paper)
    induction  the operands' defining positions (where their *values* live: layer-2 heads in the paper)
per operand slot, averaged over inner nodes (``all``) or over the step's frontier (nodes of depth t,
the ones step t must compute). ``constant``: a leaf's rhs attending to its own constant (step 0's job).
``uniform``: the mass a head would put on the operands by attending uniformly (the baseline).

Head roles come from the frontier scores averaged over steps: ``copy`` or ``induction`` when that mass
is at least ``threshold`` and beats the other, else ``other``; the slot is the one with the most mass
(``positional``: the head serves the last operand at every fan-in); the stability is the fraction of
steps whose own role is the same, and ``steps`` lists the role at every step.

Results (``run``): ``copy``, ``induction``, ``constant`` [step][layer][head]; ``copy_by_slot``,
``induction_by_slot`` (below); ``frontier`` {copy, induction} [step][layer][head]; by slot: [step][layer][head][fan-in - 1][slot] (slot s of
the nodes with that fan-in: a positional head shows as slot k-1 of every fan-in k);
``uniform`` [step]; ``roles``: [{layer, head, role, slot, positional, copy, induction, stability, steps}].
"""

from __future__ import annotations

import warnings

import numpy as np
from jaxtyping import Float
from torch import Tensor

from workbench.analysis.activations import cached_runs, default_steps, sample_batch
from workbench.hooks.names import hook_name, sites_filter
from workbench.hooks.tl_wrapper import hooked

ROLES = ("copy", "induction", "other")


def routing_scores(patterns: list[Float[Tensor, "batch head query key"]], tb, step: int) -> dict[str, np.ndarray]:
    """Sums and counts of one step's scores: patterns per layer [batch, head, query, key] -> arrays [layer, head, ...]."""
    g = tb.graphs
    L, H = len(patterns), patterns[0].shape[1]
    inner = g.valid & (g.parents[..., 0] >= 0)
    b, n = np.nonzero(inner)
    q = tb.rhs_pos[b, n]
    fan = (g.parents[b, n] >= 0).sum(-1)  # [node] fan-in
    copy_s, ind_s = np.zeros((L, H, 3, 3)), np.zeros((L, H, 3, 3))  # [layer, head, fan-in - 1, slot]
    count_s = np.zeros((3, 3))
    copy_node, ind_node = np.zeros((L, H, len(b))), np.zeros((L, H, len(b)))
    for s in range(3):
        present = g.parents[b, n, s] >= 0
        bs, ns, qs, ks = b[present], n[present], q[present], fan[present] - 1
        op_pos = tb.operand_pos[bs, ns, s]
        def_pos = tb.rhs_pos[bs, g.parents[bs, ns, s]]
        np.add.at(count_s[:, s], ks, 1)
        for layer, pat in enumerate(patterns):
            c = pat[bs, :, qs, op_pos].numpy()  # [node, head]
            i = pat[bs, :, qs, def_pos].numpy()
            for k in range(3):
                copy_s[layer, :, k, s] += c[ks == k].sum(0)
                ind_s[layer, :, k, s] += i[ks == k].sum(0)
            copy_node[layer][:, present] += c.T
            ind_node[layer][:, present] += i.T
    frontier = g.depth[b, n] == step
    leaf_b, leaf_n = np.nonzero(g.valid & (g.leaf_value >= 0))
    leaf_q = tb.rhs_pos[leaf_b, leaf_n]
    constant = np.stack([pat[leaf_b, :, leaf_q, leaf_q - 2].numpy().sum(0) for pat in patterns])  # [layer, head]
    return {"copy_s": copy_s, "ind_s": ind_s, "count_s": count_s, "copy": copy_node.sum(-1), "ind": ind_node.sum(-1),
            "count": len(b), "f_copy": copy_node[..., frontier].sum(-1), "f_ind": ind_node[..., frontier].sum(-1),
            "f_count": int(frontier.sum()), "constant": constant, "leaf_count": len(leaf_b),
            "uniform": float((fan / (q + 1)).sum())}


def head_roles(copy: np.ndarray, induction: np.ndarray, copy_by_slot: np.ndarray, induction_by_slot: np.ndarray,
               threshold: float = 0.25) -> list[dict]:
    """Roles of every head from [step, layer, head] scores (NaN at steps without nodes).

    The slot comes from the per-slot scores [step, layer, head, fan-in - 1, slot] of the largest fan-in;
    ``positional`` says the head serves the last operand (the one just before '=') at every fan-in, i.e.
    it routes by position, not by slot. ``steps``: the role at each step (None without nodes).

    >>> c = np.array([[[0.9, 0.0]]]); i = np.array([[[0.0, 0.5]]]); s = np.zeros((1, 1, 2, 3, 3))
    >>> s[..., 2, :] = [0, 0, 1]
    >>> [(r["role"], r["slot"], r["positional"]) for r in head_roles(c, i, s, s)]
    [('copy', 2, False), ('induction', 2, False)]
    """
    def role_of(cv, iv):
        if cv >= threshold and cv >= iv:
            return "copy"
        if iv >= threshold and iv > cv:
            return "induction"
        return "other"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices (no such nodes) stay NaN
        mean_c, mean_i = np.nanmean(copy, 0), np.nanmean(induction, 0)
        mean_cs, mean_is = np.nanmean(copy_by_slot, 0), np.nanmean(induction_by_slot, 0)  # [layer, head, fan, slot]
    fans = [k for k in range(mean_cs.shape[2]) if np.isfinite(mean_cs[:, :, k, :k + 1]).any()]
    out = []
    T, L, H = copy.shape
    for layer in range(L):
        for head in range(H):
            role = role_of(mean_c[layer, head], mean_i[layer, head])
            by_slot = mean_cs[layer, head] if role == "copy" else mean_is[layer, head]  # [fan, slot]
            slot = positional = None
            if role != "other" and fans:
                slot = int(np.nanargmax(by_slot[fans[-1], :fans[-1] + 1]))
                positional = len(fans) > 1 and all(int(np.nanargmax(by_slot[k, :k + 1])) == k for k in fans)
            steps = [role_of(copy[t, layer, head], induction[t, layer, head]) if np.isfinite(copy[t, layer, head])
                     else None for t in range(T)]
            valid = [r for r in steps if r is not None]
            out.append({"layer": layer, "head": head, "role": role, "slot": slot, "positional": positional,
                        "copy": float(mean_c[layer, head]), "induction": float(mean_i[layer, head]),
                        "stability": float(np.mean([r == role for r in valid])) if valid else None, "steps": steps})
    return out


def run(model, *, n_nodes: int = 16, count: int = 128, depth_cap: int | None = 6, n_steps: int | None = None,
        mode: str = "free", threshold: float = 0.25, seed: int = 0, batch_size: int = 16,
        progress: bool = False) -> tuple[dict, dict]:
    """Routing scores of every head at every step on ``count`` graphs; ``(results, summary)``."""
    hm = hooked(model)
    tb = sample_batch(hm, n_nodes, count, seed=seed, depth_cap=depth_cap)
    T, L, H = n_steps or default_steps(tb, extra=1, cap=10), hm.cfg.n_layers, hm.cfg.n_heads
    acc = [None] * T
    for chunk in cached_runs(hm, tb, n_steps=T, names_filter=sites_filter("attn.hook_pattern"), mode=mode,
                             batch_size=batch_size, progress=progress, desc="routing"):
        for t in range(T):
            pats = [chunk.cache[hook_name(t, "attn.hook_pattern", layer)].float().cpu() for layer in range(L)]
            scores = routing_scores(pats, chunk.tb, t)
            acc[t] = scores if acc[t] is None else {k: acc[t][k] + v for k, v in scores.items()}
    def div(a, n):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(np.asarray(n) > 0, a / np.maximum(n, 1), np.nan)
    copy = np.stack([div(a["copy"], a["count"]) for a in acc])  # [step, layer, head]
    ind = np.stack([div(a["ind"], a["count"]) for a in acc])
    copy_s = np.stack([div(a["copy_s"], a["count_s"]) for a in acc])  # [step, layer, head, fan-in - 1, slot]
    ind_s = np.stack([div(a["ind_s"], a["count_s"]) for a in acc])
    k = int(np.flatnonzero(sum(a["count_s"] for a in acc).sum(1) > 0).max())  # the largest fan-in present
    f_copy = np.stack([div(a["f_copy"], a["f_count"]) for a in acc])
    f_ind = np.stack([div(a["f_ind"], a["f_count"]) for a in acc])
    on_frontier = bool(np.isfinite(f_copy).any())  # roles from the nodes each step must compute
    roles = head_roles(f_copy if on_frontier else copy, f_ind if on_frontier else ind, copy_s, ind_s, threshold)
    results = {"steps": list(range(T)), "layers": L, "heads": H, "mode": mode, "threshold": threshold,
               "copy": copy, "induction": ind, "copy_by_slot": copy_s, "induction_by_slot": ind_s,
               "frontier": {"copy": f_copy, "induction": f_ind},
               "constant": np.stack([div(a["constant"], a["leaf_count"]) for a in acc]),
               "uniform": np.array([div(np.array(a["uniform"]), a["count"]) for a in acc]), "roles": roles,
               "role_fan_in": k + 1, "roles_from": "frontier" if on_frontier else "all"}
    groups: dict[str, list[str]] = {}
    for r in roles:
        if r["role"] != "other":
            tag = "last operand" if r["positional"] else f"v{r['slot']}"
            groups.setdefault(f"L{r['layer']} {r['role']} heads", []).append(f"{r['head']} ({tag})")
    by_step: dict[str, list[str]] = {}
    for t in range(T):
        for role in ("copy", "induction"):
            for layer in range(L):
                heads = [str(r["head"]) for r in roles if r["layer"] == layer and r["steps"][t] == role]
                if heads:
                    by_step.setdefault(f"L{layer} {role} heads by step", []).append(f"t{t}: {' '.join(heads)}")
    summary = {**{k: ", ".join(v) for k, v in sorted(groups.items())},
               **{k: "; ".join(v) for k, v in sorted(by_step.items())},
               "max copy": float(np.nanmax(copy)), "max induction": float(np.nanmax(ind)),
               "uniform baseline": float(np.nanmean(results["uniform"])),
               "mean stability": float(np.mean([r["stability"] for r in roles if r["stability"] is not None]))}
    return results, summary


def figures(result: dict) -> list:
    """Routing figures: copy and induction scores per layer (step x head), per slot, and frontier only."""
    from workbench.plots.analysis import Figure, Heatmap, Lines

    r = result["results"]
    steps, heads = r["steps"], list(range(r["heads"]))
    panels, slots, front = [], [], []
    for layer in range(r["layers"]):
        for key in ("copy", "induction"):
            panels.append(Heatmap(f"L{layer} {key}", [row[layer] for row in r[key]], heads, steps, "head", "step", 0, 1))
            front.append(Heatmap(f"L{layer} {key} (frontier nodes)", [row[layer] for row in r["frontier"][key]],
                                 heads, steps, "head", "step", 0, 1))
            by_slot = np.array(r[f"{key}_by_slot"], dtype=float)[:, layer]  # [step, head, fan-in, slot]
            for k in range(by_slot.shape[2]):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mat = np.nanmean(by_slot[:, :, k, :k + 1], 0)  # [head, slot]
                if np.isfinite(mat).any():
                    slots.append(Heatmap(f"L{layer} {key}, fan-in {k + 1} nodes", mat.T.tolist(), heads,
                                         [f"v{s}" for s in range(k + 1)], "head", "slot", 0, 1))
        panels.append(Heatmap(f"L{layer} leaf rhs -> own constant", [row[layer] for row in r["constant"]], heads,
                              steps, "head", "step", 0, 1))
    roles = r["roles"]
    stab = Lines("role stability across steps", [f"L{x['layer']}h{x['head']}" for x in roles],
                 {"copy (mean)": [x["copy"] for x in roles], "induction (mean)": [x["induction"] for x in roles],
                  "stability": [x["stability"] for x in roles]}, "head", "", 0, 1)
    return [Figure("scores", "Attention from a result position: to its operand names (copy), to their values "
                   "(induction), leaves to their constant", panels, cols=3),
            Figure("slots", "Routing by operand slot (mean over steps), per fan-in", slots + [stab], cols=3),
            Figure("frontier", "Routing at the frontier (nodes the step must compute)", front, cols=2)]


__all__ = ["ROLES", "routing_scores", "head_roles", "run", "figures"]
