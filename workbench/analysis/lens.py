"""The bottleneck lens: decode the residual stream after every layer of every step through the output.

The model's own decoder is ``ln_final`` then one linear head per factor, then argmax (the bottleneck).
Applying it to an intermediate residual point (``L0.pre``, ``Ll.mid``, ``Ll.post``) asks what the
bottleneck would write if the step stopped there: where, within the loop, does a node's value first
appear? Also here: drift of the final hidden state across steps (analysis 11 of the paper's list).

Results (``run``): ``agreement[factor][step][point]`` (the lens' code equals the step's actual output,
over real positions), ``value_accuracy[step][point]`` (the lens decodes the node's true value at its
defining position), ``value_by_depth[depth][step][point]``, ``first_appearance[depth][step * points + point]``
(fraction of the nodes of that depth whose value the lens first decodes there; the last column: never),
``drift``: {``delta`` [step] relative change ||h_{t+1} - h_t|| / ||h_t|| of the final hidden state,
``update_cosine`` [step] cosine of successive updates, ``confidence`` [step] mean top value probability at
defining positions, ``changed`` [step] fraction of real positions whose output token changed}.
"""

from __future__ import annotations


import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from workbench.analysis.activations import (cached_runs, default_steps, node_samples, point_label, residual_points,
                                            sample_batch)
from workbench.analysis.summary import LensSummary
from workbench.hooks.names import hook_name, sites_filter
from workbench.hooks.tl_wrapper import hooked
from workbench.task.vocab import F_VALUE, FACTORS


@torch.no_grad()
def lens_logits(model, resid: Float[Tensor, "... d_model"]) -> list[Float[Tensor, "... vocab"]]:
    """Logits per factor of residuals [..., d_model] through the final norm and the factor heads."""
    m = hooked(model).model
    return m.unembed(m.ln_final(resid))


def run(model, *, n_nodes: int = 16, count: int = 256, depth_cap: int | None = 6, n_steps: int | None = None,
        mode: str = "free", seed: int = 0, batch_size: int = 32, progress: bool = False) -> tuple[dict, LensSummary]:
    """Lens every residual point of every step on ``count`` graphs; ``(results, summary)``."""
    hm = hooked(model)
    tb = sample_batch(hm, n_nodes, count, seed=seed, depth_cap=depth_cap)
    T = n_steps or default_steps(tb, extra=1, cap=10)
    points = residual_points(hm.cfg.n_layers)
    P, F = len(points), len(FACTORS)
    samples = node_samples(tb, "rhs")
    max_depth = int(samples.depth.max())
    agree, seen = np.zeros((F, T, P)), np.zeros((F, T, P))
    correct = np.zeros((len(samples), T, P), dtype=bool)
    delta, cosine, confidence, changed = (np.zeros(T) for _ in range(4))
    n_real = n_rhs = 0
    keep = sites_filter("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_final", "hook_bottleneck")
    for chunk in cached_runs(hm, tb, n_steps=T, names_filter=keep, mode=mode, batch_size=batch_size,
                             progress=progress, desc="lens"):
        c = chunk.cache
        sub, rows = chunk.tb, chunk.rows
        real = torch.arange(sub.max_len)[None, :] < torch.from_numpy(sub.length)[:, None]  # [chunk, pos]
        local = np.full(tb.batch, -1)
        local[rows] = np.arange(len(rows))
        mine = np.flatnonzero(local[samples.graph] >= 0)
        b, pos = torch.from_numpy(local[samples.graph[mine]]), torch.from_numpy(samples.pos[mine])
        truth = torch.from_numpy(samples.value[mine])
        states = chunk.out.states.cpu()  # states[t]: what step t read (the teacher's, in teacher mode)
        finals = [c[hook_name(t, "hook_final")].cpu() for t in range(T)]
        n_real += int(real.sum())
        n_rhs += len(mine)
        for t in range(T):
            output = c[hook_name(t, "hook_bottleneck")].cpu()  # what step t wrote
            for i, (site, layer) in enumerate(points):
                logits = lens_logits(hm, c[hook_name(t, site, layer)].cpu())
                for f in range(F):
                    agree[f, t, i] += (logits[f].argmax(-1) == output[..., f])[real].sum().item()
                    seen[f, t, i] += real.sum().item()
                correct[mine, t, i] = (logits[F_VALUE][b, pos].argmax(-1) == truth).numpy()
            probs = hm.model.unembed.W_U[F_VALUE](finals[t][b, pos]).softmax(-1)
            confidence[t] += probs.max(-1).values.sum().item()
            changed[t] += (output != states[t]).any(-1)[real].sum().item()
            if t + 1 < T:
                h0, h1 = finals[t][real], finals[t + 1][real]
                delta[t] += ((h1 - h0).norm(dim=-1) / h0.norm(dim=-1).clamp(min=1e-6)).sum().item()
                if t + 2 < T:
                    d0, d1 = h1 - h0, finals[t + 2][real] - h1
                    cosine[t] += torch.nn.functional.cosine_similarity(d0, d1, dim=-1).nan_to_num().sum().item()
    depth = samples.depth
    value_acc = correct.mean(0)
    by_depth = np.full((max_depth + 1, T, P), np.nan)
    first = np.zeros((max_depth + 1, T * P + 1))
    flat = correct.reshape(len(samples), T * P)
    where = np.where(flat.any(1), flat.argmax(1), T * P)
    for d in range(max_depth + 1):
        if (depth == d).any():
            by_depth[d] = correct[depth == d].mean(0)
            first[d] = np.bincount(where[depth == d], minlength=T * P + 1) / (depth == d).sum()
    labels = [point_label(s, l) for s, l in points]
    drift = {"delta": np.where(np.arange(T) < T - 1, delta / max(n_real, 1), np.nan),
             "update_cosine": np.where(np.arange(T) < T - 2, cosine / max(n_real, 1), np.nan),
             "confidence": confidence / max(n_rhs, 1), "changed": changed / max(n_real, 1)}
    results = {"points": labels, "steps": list(range(T)), "factors": list(FACTORS), "mode": mode,
               "agreement": agree / np.maximum(seen, 1), "value_accuracy": value_acc, "value_by_depth": by_depth,
               "first_appearance": first, "first_labels": [f"t{t}.{p}" for t in range(T) for p in labels] + ["never"],
               "drift": drift}
    at_depth = [by_depth[d, d, :] for d in range(min(max_depth, T - 1) + 1) if np.isfinite(by_depth[d, d]).all()]
    summary = LensSummary(last_acc=float(value_acc[-1, -1]),
                          first_point_agreement=float(agree[F_VALUE, :, 0].sum() / seen[F_VALUE, :, 0].sum()),
                          never_decoded=float((where == T * P).mean()),
                          acc_at_depth_by_point=tuple(float(v) for v in np.mean(at_depth, 0)) if at_depth else None)
    return results, summary


def figures(result: dict) -> list:
    """Lens figures: agreement per factor, value accuracy (all, by depth), first appearance, drift."""
    from workbench.plots.analysis import Figure, Heatmap, Lines

    r = result["results"]
    pts, steps = r["points"], r["steps"]
    agree = [Heatmap(f"{f}: lens = step output", r["agreement"][i], pts, steps, "residual point", "step", 0, 1)
             for i, f in enumerate(r["factors"])]
    figs = [Figure("agreement", "Bottleneck lens: agreement with the step's actual output, per factor", agree, cols=4)]
    depth_panels = [Heatmap("value decoded = true value (all nodes)", r["value_accuracy"], pts, steps,
                            "residual point", "step", 0, 1)]
    for d, mat in enumerate(r["value_by_depth"]):
        if any(v is not None for row in mat for v in row):
            depth_panels.append(Heatmap(f"depth {d} nodes", mat, pts, steps, "residual point", "step", 0, 1))
    figs.append(Figure("value", "Bottleneck lens: true value decoded at the node's defining position", depth_panels, cols=4))
    figs.append(Figure("first", "Where a node's value first appears (fraction of nodes per depth)",
                       [Heatmap("first correct decode", r["first_appearance"], r["first_labels"],
                                list(range(len(r["first_appearance"]))), "step.point", "node depth", 0, 1,
                                annotate=False)], cols=1))
    d = r["drift"]
    figs.append(Figure("drift", "Drift of the final hidden state across steps",
                       [Lines("relative change and update cosine", steps,
                              {"||h(t+1)-h(t)|| / ||h(t)||": d["delta"], "cos(update t, update t+1)": d["update_cosine"]},
                              "step", ""),
                        Lines("decoding", steps, {"top value probability (rhs)": d["confidence"],
                                                  "positions changed": d["changed"]}, "step", "", 0, 1)]))
    return figs


__all__ = ["lens_logits", "LensSummary", "run", "figures"]
