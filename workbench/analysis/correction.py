"""Error correction and halting along the loop: natural self-corrections, injected errors, fixed points.

``stepwise``: free runs per graph size N, read after every step: % of graphs fully solved after step t
(overall and per graph depth), node accuracy, the steps to a fixed point against the true depth, the
accuracy when stopping at the fixed point against the oracle stop (after step d for a graph of depth
d) and the paper's stop (the test set's max depth + 2 steps), and natural self-correction events
(a node holding a wrong value, later its true one) and new errors (right, later wrong).

``injection``: overwrite k node values (among those the clean run already holds right) in the state
step t reads, run on, and measure: one-step repair (the step that read the error writes the true
value back), eventual repair, steps to repair, the run ending where the clean run ended, by k, t and
the corrupted node's depth. Run it for the full model and for its no-error-correction ablation (the
script's ``--compare``) to see what error-correction training buys.

Results (``run``): ``stepwise[N]`` {``solved`` [step], ``node_acc`` [step], ``solved_by_depth`` {d: [step]},
``iterations_by_depth`` {d: mean steps to the fixed point}, ``converged``, ``acc_fixed_point``,
``acc_oracle``, ``acc_paper_T``, ``paper_T``, ``corrections`` [step], ``new_errors`` [step], ``graphs_with_correction``};
``injection`` {``steps``, ``ks``, ``one_step``, ``eventual``, ``recovered``, ``delay``, ``steps_to_repair`` [t][k],
``by_depth`` {``one_step``, ``eventual``} {d: value} (k = 1)}; ``compare`` {model: injection} when given.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from workbench.analysis.activations import cached_runs, sample_batch
from workbench.analysis.summary import CorrectionSummary
from workbench.hooks.interventions import inject_corruption
from workbench.hooks.tl_wrapper import hooked
from workbench.hooks.decoded import Trajectory, decode_run


def free_trajectory(hm, tb, *, n_steps: int, batch_size: int = 32, progress: bool = False) -> Trajectory:
    """A free run of exactly ``n_steps`` steps on ``tb`` (in chunks), decoded per node."""
    parts = []
    for chunk in cached_runs(hm, tb, n_steps=n_steps, names_filter=[], batch_size=batch_size, progress=progress,
                             desc="runs"):
        parts.append((chunk, decode_run(chunk.out, chunk.tb)))
    width = tb.max_len
    pad = lambda x: torch.nn.functional.pad(x, (0, 0, 0, width - x.shape[2]), value=0)  # noqa: E731
    return Trajectory(tb, torch.cat([pad(tr.states) for _, tr in parts], 1), torch.cat([tr.values for _, tr in parts], 1),
                      torch.cat([tr.truth for _, tr in parts]), torch.cat([tr.iterations for _, tr in parts]),
                      torch.cat([tr.converged for _, tr in parts]))


def events(traj: Trajectory, empty: int) -> dict[str, np.ndarray]:
    """Per step: self-corrections (wrong -> right) and new errors (right -> wrong), as fractions of nodes."""
    v, truth, valid = traj.values, traj.truth, traj.node_mask
    before, after = v[:-1], v[1:]
    wrong_before = (before != truth) & (before != empty) & valid
    corr = wrong_before & (after == truth)
    new = (before == truth) & (after != truth) & valid
    n = max(int(valid.sum()), 1)
    return {"corrections": corr.sum((1, 2)).numpy() / n, "new_errors": new.sum((1, 2)).numpy() / n,
            "graphs_with_correction": float(corr.any(0).any(-1).float().mean())}


def stepwise(hm, n_nodes: int, count: int, *, seed: int = 0, max_steps: int = 24, batch_size: int = 32,
             progress: bool = False) -> dict:
    """Stepwise solved curves, halting and natural events for ``count`` uncapped graphs of ``n_nodes`` nodes."""
    tb = sample_batch(hm, n_nodes, count, seed=seed)
    depth = torch.from_numpy(tb.max_depth).long()  # [batch]
    paper_T = int(depth.max()) + 2
    T = min(max(paper_T, int(depth.max()) + 3), max_steps)
    traj = free_trajectory(hm, tb, n_steps=T, batch_size=batch_size, progress=progress)
    full = (traj.correct | ~traj.node_mask).all(-1)  # [step + 1, batch]
    solved = full[1:].float().mean(1).numpy()  # after step t
    by_depth, iters = {}, {}
    for d in sorted(set(depth.tolist())):
        rows = depth == d
        by_depth[int(d)] = full[1:, rows].float().mean(1).numpy()
        iters[int(d)] = float(traj.iterations[rows].float().mean())
    oracle = full[torch.clamp(depth + 1, max=T), torch.arange(tb.batch)]
    return {"solved": solved, "node_acc": traj.node_accuracy()[1:].numpy(), "solved_by_depth": by_depth,
            "iterations_by_depth": iters, "converged": float(traj.converged.float().mean()),
            "acc_fixed_point": float((full[-1] & traj.converged).float().mean()), "acc_oracle": float(oracle.float().mean()),
            "acc_paper_T": float(full[min(paper_T, T)].float().mean()), "paper_T": paper_T, "steps": T,
            "mean_depth": float(depth.float().mean()), **events(traj, hm.vocab.empty)}


def injection(model, *, n_nodes: int = 16, count: int = 64, steps: Sequence[int] = (1, 2, 3), ks: Sequence[int] = (1, 2, 4),
              seed: int = 0, progress: bool = False) -> dict:
    """Injected-error experiments: repair rates [t][k] and, for k = 1, by the corrupted node's depth."""
    hm = hooked(model)
    tb = sample_batch(hm, n_nodes, count, seed=seed, depth_cap=6)
    shape = (len(steps), len(ks))
    one, eventual, recovered, delay, to_repair = (np.full(shape, np.nan) for _ in range(5))
    depth_one, depth_all = {}, {}
    bar = tqdm(total=len(steps) * len(ks), desc="injections", disable=not progress, dynamic_ncols=True, leave=False)
    for i, t in enumerate(steps):
        for j, k in enumerate(ks):
            inj = inject_corruption(hm, tb, t, count=k, seed=seed + 1000 * t + k, max_steps=t + 2 * n_nodes)
            mask = inj.was_error  # the injected errors: never-written nodes and true values are not errors to repair
            rs = inj.repair_step[mask]
            one[i, j] = float((rs == t).float().mean())
            eventual[i, j] = float(inj.repaired[mask].float().mean())
            recovered[i, j] = float(inj.same_as_clean.float().mean())
            delay[i, j] = float(inj.delay.float().mean())
            fixed = rs[rs >= 0]
            to_repair[i, j] = float((fixed - t).float().mean()) if len(fixed) else np.nan
            if k == 1:
                d = inj.clean.depth[mask]
                for dd in sorted(set(d.tolist())):
                    sel = d == dd
                    depth_one.setdefault(int(dd), []).append((rs[sel] == t).float().sum().item())
                    depth_all.setdefault(int(dd), []).append((int(sel.sum()), inj.repaired[mask][sel].float().sum().item()))
            bar.update(1)
    bar.close()
    totals = {d: sum(n for n, _ in v) for d, v in depth_all.items()}
    by_depth = {"one_step": {d: sum(depth_one[d]) / totals[d] for d in totals},
                "eventual": {d: sum(r for _, r in depth_all[d]) / totals[d] for d in totals},
                "count": totals}
    return {"steps": list(steps), "ks": list(ks), "one_step": one, "eventual": eventual, "recovered": recovered,
            "delay": delay, "steps_to_repair": to_repair, "by_depth": by_depth}


def run(model, *, sizes: Sequence[int] = (8, 16, 32, 64), count: int = 128, inject_nodes: int = 16, inject_count: int = 96,
        inject_steps: Sequence[int] = (1, 2, 3), ks: Sequence[int] = (1, 2, 4), compare: Sequence = (),
        max_steps: int = 24, seed: int = 0, progress: bool = False) -> tuple[dict, CorrectionSummary]:
    """Stepwise curves and halting per size, injections (for ``compare`` models too); ``(results, summary)``."""
    hm = hooked(model)
    sizes = [n for n in sizes if n <= hm.task.n_names]
    bar = tqdm(sizes, desc="sizes", disable=not progress, dynamic_ncols=True, leave=False)
    step = {int(n): stepwise(hm, n, count, seed=seed, max_steps=max_steps, progress=False) for n in bar}
    inj = injection(hm, n_nodes=inject_nodes, count=inject_count, steps=inject_steps, ks=ks, seed=seed, progress=progress)
    others = {}
    for other in compare:
        name = (getattr(other, "meta", {}) or {}).get("name", "other")
        others[name] = injection(other, n_nodes=inject_nodes, count=inject_count, steps=inject_steps, ks=ks, seed=seed,
                                 progress=progress)
    results = {"sizes": sizes, "stepwise": step, "injection": inj, "compare": others}
    summary = CorrectionSummary(
        solved={n: (float(s["acc_fixed_point"]), float(s["acc_oracle"])) for n, s in step.items()},
        corrections_per_node={n: float(np.sum(s["corrections"])) for n, s in step.items()},
        one_step_repair=float(np.nanmean(inj["one_step"][:, 0])), eventual_repair=float(np.nanmean(inj["eventual"][:, 0])),
        ends_as_clean=float(np.nanmean(inj["recovered"][:, 0])),
        compare_one_step_repair={name: float(np.nanmean(o["one_step"][:, 0])) for name, o in others.items()})
    return results, summary


def figures(result: dict) -> list:
    """Correction figures: stepwise solved curves, halting, natural events, injection repair."""
    from workbench.plots.analysis import Bars, Figure, Heatmap, Lines

    r = result["results"]
    st = r["stepwise"]
    T = max(s["steps"] for s in st.values())
    steps = list(range(T))
    pad = lambda ys: list(ys) + [None] * (T - len(ys))  # noqa: E731
    curves = [Lines("% graphs fully solved after step t", steps, {f"N={n}": pad([100 * v for v in s["solved"]])
                                                                   for n, s in st.items()}, "step", "%", 0, 100),
              Lines("node accuracy after step t", steps, {f"N={n}": pad(s["node_acc"]) for n, s in st.items()},
                    "step", "fraction", 0, 1)]
    biggest = st[str(max(int(n) for n in st))]  # JSON keys are strings
    curves.append(Lines("largest N: solved after step t, by graph depth", steps,
                        {f"depth {d}": pad(v) for d, v in biggest["solved_by_depth"].items()}, "step", "fraction", 0, 1))
    depths = sorted({int(d) for s in st.values() for d in s["iterations_by_depth"]})
    curves.append(Lines("steps to a fixed point vs depth (perfect: depth + 1)", depths,
                        {**{f"N={n}": [s["iterations_by_depth"].get(str(d)) for d in depths]
                            for n, s in st.items()}, "depth + 1": [d + 1 for d in depths]}, "graph depth", "steps",
                        dashed=("depth + 1",)))
    sizes = [f"N={n}" for n in st]
    halting = Bars("fully solved: stop at fixed point vs oracle vs paper T", sizes,
                   {"fixed point": [s["acc_fixed_point"] for s in st.values()],
                    "oracle (depth + 1 steps)": [s["acc_oracle"] for s in st.values()],
                    "paper T (max depth + 2)": [s["acc_paper_T"] for s in st.values()]}, "", "fraction", 0, 1)
    natural = Lines("natural events per step (fraction of nodes)", steps,
                    {**{f"N={n} corrections": pad(s["corrections"]) for n, s in st.items()},
                     **{f"N={n} new errors": pad(s["new_errors"]) for n, s in st.items()}}, "step", "fraction")
    figs = [Figure("stepwise", "Stepwise solving and halting (free runs)", curves + [halting, natural])]
    inj = {result["model"]["name"]: r["injection"], **r.get("compare", {})}
    panels = []
    for name, x in inj.items():
        ks, ts = [f"k={k}" for k in x["ks"]], [f"t={t}" for t in x["steps"]]
        panels.append(Heatmap(f"{name}: one-step repair", x["one_step"], ks, ts, "errors injected", "step", 0, 1))
        panels.append(Heatmap(f"{name}: run ends as clean", x["recovered"], ks, ts, "errors injected", "step", 0, 1))
    depth_keys = sorted({int(d) for x in inj.values() for d in x["by_depth"]["one_step"]})
    panels.append(Bars("k=1 one-step repair by depth of the corrupted node", depth_keys,
                       {name: [x["by_depth"]["one_step"].get(str(d)) for d in depth_keys]
                        for name, x in inj.items()}, "node depth", "fraction", 0, 1))
    figs.append(Figure("injection", "Injected errors: repair and recovery", panels))
    return figs


__all__ = ["free_trajectory", "events", "stepwise", "injection", "CorrectionSummary", "run", "figures"]
