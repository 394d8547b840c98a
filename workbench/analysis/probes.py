"""Linear probes on the residual stream: accuracy and selectivity per (step, residual point).

The probe is a scikit-learn estimator (``LinearProbe``: standardized features, then ridge or logistic
regression, capacity limited by L2 only); train and test are split **by graph**, never by token, and
one split serves every task, step and point. Every task has two control tasks (``CONTROLS``):
    name     Hewitt & Liang (2019): random but consistent labels, one per variable name (the token at
             the probed position), drawn from the task's label distribution and shared by every graph.
             A probe scores on it only by memorizing names; note that with d_model >= the name pool
             every function of the name is linear, so this control can reach 1.
    shuffle  each graph's labels moved to other positions of the same graph (label statistics of the
             graph kept, the position's own link cut): near chance unless the probe reads graph-level
             context.
selectivity[kind] = task accuracy - control accuracy. ``majority`` is the most common training label's
accuracy. A random-weight model must probe near chance (the leakage guard, tested).

Tasks (``TASKS``):
    value@rhs        a node's value mod p, at its defining position
    value@operand    an operand node's value, at its occurrence in a later equation
    computed@rhs     whether the node's value is written in the state the step reads
    computed@operand the same, read at the operand occurrence (the value is never written there)
    depth@rhs        the node's depth
    operand{s}@rhs   the name of operand s (0, 1, 2) of the node, at its defining position
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workbench.analysis.probe_checks import (DECODES_MARGIN, MATTERS_DROP, SAME_AS_RANDOM, ProjectOut, baseline_flags,
                                             causal_checks, probe_directions)
from workbench.analysis.probing import (CONTROLS, PROBE_KINDS, TASKS, LinearProbe, ProbeCurves, TaskData,
                                        control_labels, graph_split, probe_curves, shuffled_labels, task_data,
                                        transfer_matrix)
from workbench.analysis.summary import ProbesSummary
from workbench.errors import WorkbenchError


# ------------------------------------------------------------------------------------ the analysis
def random_init(model, seed: int = 0):
    """A freshly initialized model of the same architecture and task (the random-weight baseline)."""
    import torch

    from workbench.hooks.tl_wrapper import hooked
    from workbench.model.looped import LoopedModel

    m = hooked(model).model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = LoopedModel(m.cfg, m.task)
    return fresh.to(m.device).eval()


def run(model, *, n_nodes: int = 16, count: int = 384, depth_cap: int | None = 6, n_steps: int | None = None,
        mode: str = "free", tasks: Sequence[str] = TASKS, probe: dict | None = None, random_baseline: bool = True,
        seed: int = 0, batch_size: int = 64, progress: bool = False) -> tuple[dict, ProbesSummary]:
    """Probe every task at every (step, residual point) on ``count`` graphs of ``n_nodes`` nodes.

    Returns ``(results, summary)`` for the JSON envelope. results: ``points``, ``steps``,
    ``tasks[task]`` = {accuracy [step][point], control {kind: [step][point]}, selectivity {kind: [step][point]},
    majority [step], by_depth [depth][step][point], n_classes, n_train, n_test, random_init [step][point]
    (the same probe on a random-weight model of the same architecture, when ``random_baseline``)},
    ``transfer`` (value@rhs at the last point, [train step][test step]).
    """
    from workbench.analysis.activations import default_steps, gather, sample_batch

    bad = [t for t in tasks if t not in TASKS]
    if bad:
        raise WorkbenchError(f"unknown probing tasks {bad}; the tasks are {list(TASKS)}")
    tb = sample_batch(model, n_nodes, count, seed=seed, depth_cap=depth_cap)
    steps = n_steps or default_steps(tb, extra=1, cap=10)
    g = gather(model, tb, n_steps=steps, mode=mode, batch_size=batch_size, progress=progress)
    curves = probe_curves(g, tasks, probe=probe, seed=seed, progress=progress)
    transfer = transfer_matrix(g, "value@rhs", probe=probe, seed=seed) if "value@rhs" in curves else None
    tasks_out = {name: c.to_dict() for name, c in curves.items()}
    if random_baseline:
        g0 = gather(random_init(model, seed), tb, n_steps=steps, mode=mode, batch_size=batch_size, progress=progress)
        for name, c in probe_curves(g0, tasks, probe=probe, seed=seed, progress=progress).items():
            tasks_out[name]["random_init"] = c.accuracy
    causal = causal_checks(model, tb, g, [t for t in ("value@rhs", "value@operand") if t in curves], probe=probe,
                           seed=seed, curves=curves)
    flags = baseline_flags(tasks_out)
    results = {"points": g.points, "steps": list(range(steps)), "mode": mode, "probe": LinearProbe(**(probe or {})).get_params(),
               "tasks": tasks_out, "causal": causal, "same_as_random": flags,
               "transfer": None if transfer is None else {"task": "value@rhs", "point": g.points[-1], "matrix": transfer}}
    used_at, idle_at = {}, {}
    for name, row in causal.items():
        used_at[name] = tuple(p for p, m in zip(row["points"], row["matters"]) if m)
        idle = tuple(p for p, m in zip(row["points"], row["matters"]) if m is False)
        if idle:
            idle_at[name] = idle
    last = lambda x: float(np.nanmean(np.asarray(x)[:, -1]))  # noqa: E731  (mean over steps after the last layer)
    summary = ProbesSummary(
        acc={name: last(c.accuracy) for name, c in curves.items()},
        majority={name: float(np.nanmean(c.majority)) for name, c in curves.items()},
        random_init_acc={name: last(d["random_init"]) for name, d in tasks_out.items() if "random_init" in d},
        selectivity_name={name: last(c.selectivity["name"]) for name, c in curves.items() if "name" in c.selectivity},
        selectivity_shuffle={name: last(c.selectivity["shuffle"]) for name, c in curves.items()
                             if "shuffle" in c.selectivity},
        used_at=used_at, idle_at=idle_at, same_as_random=tuple(flags) or None)
    return results, summary


def figures(result: dict) -> list:
    """Figures of a probes result: accuracy and selectivity heatmaps, curves, value by depth, transfer."""
    from workbench.plots.analysis import Figure, Heatmap, Lines

    r = result["results"]
    points, steps, tasks = r["points"], r["steps"], r["tasks"]
    heat = lambda pick, lo, hi: [Heatmap(name, pick(d), points, steps, "residual point", "step", lo, hi)  # noqa: E731
                                 for name, d in tasks.items()]
    figs = [Figure("accuracy", "Probe accuracy on held-out graphs (step x residual point)",
                   heat(lambda d: d["accuracy"], 0, 1), cols=4)]
    for kind in CONTROLS:
        figs.append(Figure(f"selectivity_{kind}", f"Selectivity = task - control accuracy (control: {kind})",
                           heat(lambda d: d["selectivity"][kind], -1, 1), cols=4))
    curves = []
    for name, d in tasks.items():
        series = {"task": [row[-1] for row in d["accuracy"]], "majority": d["majority"],
                  **{f"control ({k})": [row[-1] for row in d["control"][k]] for k in CONTROLS}}
        if "random_init" in d:
            series["random-init model"] = [row[-1] for row in d["random_init"]]
        curves.append(Lines(f"{name} at {points[-1]}", steps, series, "step", "accuracy", 0, 1,
                            dashed=("majority", "random-init model", *(f"control ({k})" for k in CONTROLS))))
    figs.append(Figure("curves", "Probe accuracy after the last layer, by step (dashed: control, majority)", curves, cols=4))
    if "value@rhs" in tasks:
        bd = tasks["value@rhs"]["by_depth"]
        series = {f"depth {d}": [row[-1] for row in rows] for d, rows in enumerate(bd)}
        panels = [Lines(f"value@rhs at {points[-1]}, by node depth", steps, series, "step", "test accuracy", 0, 1)]
        if r.get("transfer"):
            panels.append(Heatmap(f"transfer at {r['transfer']['point']}", r["transfer"]["matrix"], steps, steps,
                                  "tested at step", "trained at step", 0, 1))
        figs.append(Figure("value_by_depth", "Is a node's value decodable at the step that computes it (step = depth)?",
                           panels))
    return figs


__all__ = ["TASKS", "CONTROLS", "PROBE_KINDS", "LinearProbe", "graph_split", "shuffled_labels", "control_labels",
           "TaskData", "task_data", "ProbeCurves", "probe_curves", "transfer_matrix", "probe_directions", "ProjectOut",
           "causal_checks", "baseline_flags", "MATTERS_DROP", "SAME_AS_RANDOM", "DECODES_MARGIN", "random_init", "run",
           "ProbesSummary", "figures"]
