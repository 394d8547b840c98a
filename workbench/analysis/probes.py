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

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.model_selection import GroupShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from workbench.analysis.activations import Gathered
from workbench.errors import WorkbenchError

PROBE_KINDS = ("ridge", "logistic")
#: control tasks: ``name`` (Hewitt & Liang: a random label per variable name, shared by every graph) and
#: ``shuffle`` (each graph's labels moved to other positions of the same graph)
CONTROLS = ("name", "shuffle")
TASKS: tuple[str, ...] = ("value@rhs", "value@operand", "computed@rhs", "computed@operand", "depth@rhs",
                          "operand0@rhs", "operand1@rhs", "operand2@rhs")


class LinearProbe(ClassifierMixin, BaseEstimator):
    """A linear probe on standardized features: ``ridge`` (least squares on one-hot labels, closed form,
    the default for sweeps) or ``logistic`` (L2 multinomial logistic regression, ``C``; ~10x slower).

    Capacity is limited by the L2 penalty only. A training set with one class gives a constant
    predictor (so every (step, point) has a score).

    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([0, 0, 1, 1])
    >>> LinearProbe().fit(X, y).score(X, y), LinearProbe(kind="logistic", C=10.0).fit(X, y).score(X, y)
    (1.0, 1.0)
    """

    def __init__(self, kind: str = "ridge", alpha: float = 10.0, C: float = 0.1, max_iter: int = 300, tol: float = 1e-2):
        self.kind = kind
        self.alpha = alpha
        self.C = C
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X, y):  # X [n_samples, d_model], y [n_samples]
        if self.kind not in PROBE_KINDS:
            raise WorkbenchError(f"probe kind must be one of {list(PROBE_KINDS)}, got {self.kind!r}")
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            self.clf_ = None
            return self
        if self.kind == "ridge":
            head = RidgeClassifier(alpha=self.alpha)
        else:
            head = LogisticRegression(C=self.C, max_iter=self.max_iter, tol=self.tol)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.clf_ = make_pipeline(StandardScaler(), head).fit(X, y)
        return self

    def predict(self, X):
        if self.clf_ is None:
            return np.full(len(X), self.classes_[0])
        return self.clf_.predict(X)


def graph_split(groups: np.ndarray, *, test_size: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train and test sample indices with every graph wholly on one side.

    >>> train, test = graph_split(np.repeat(np.arange(8), 3), seed=0)
    >>> len(set(np.repeat(np.arange(8), 3)[train]) & set(np.repeat(np.arange(8), 3)[test]))
    0
    """
    if len(np.unique(groups)) < 2:
        raise WorkbenchError("probing needs at least 2 graphs to split into train and test")
    split = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
    train, test = next(split.split(np.zeros(len(groups)), groups=groups))
    return train, test


def shuffled_labels(groups: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Labels moved to another sample of the same graph (a random cyclic shift within each graph).

    The label distribution of every graph is kept; the link between a position and its own label is cut.

    >>> c = shuffled_labels(np.array([0, 0, 0, 1, 1]), np.array([1, 2, 3, 4, 5]), seed=0)
    >>> sorted(c[:3].tolist()), sorted(c[3:].tolist()), bool((c != np.array([1, 2, 3, 4, 5])).all())
    ([1, 2, 3], [4, 5], True)
    """
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(groups)), groups))  # by graph, random within
    g = groups[order]
    start = np.r_[0, np.flatnonzero(np.diff(g)) + 1]
    size = np.diff(np.r_[start, len(g)])
    first = np.repeat(start, size)
    rank = np.arange(len(g)) - first
    source = first + (rank + 1) % np.repeat(size, size)  # the next sample of the same graph
    out = np.empty_like(labels)
    out[order] = labels[order[source]]
    return out


def control_labels(keys: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Random but consistent labels: every distinct key gets one label drawn from ``labels``' distribution.

    >>> c = control_labels(np.array([5, 5, 7, 7, 5]), np.array([0, 1, 2, 3, 4]), seed=1)
    >>> bool(c[0] == c[1] == c[4] and c[2] == c[3])
    True
    """
    rng = np.random.default_rng(seed)
    uniq, inverse = np.unique(keys, return_inverse=True)
    table = rng.choice(labels, size=len(uniq), replace=True)
    return table[inverse]


@dataclass
class TaskData:
    """The samples and labels of one probing task at one step."""

    where: str  # which gathered positions
    keep: np.ndarray  # [n] indices into the gathered samples
    labels: np.ndarray  # [n]
    keys: np.ndarray  # [n] the control task's key (the name at the position)


def task_data(g: Gathered, task: str, step: int) -> TaskData | None:
    """Samples and labels of ``task`` at ``step``; None when ``g`` lacks the positions it needs."""
    kind, where = task.split("@")
    if where not in g.samples:
        return None
    s = g.samples[where]
    everything = np.arange(len(s))
    if kind == "value":
        return TaskData(where, everything, s.value, s.name)
    if kind == "computed":
        return TaskData(where, everything, (g.values_read[where][step] != g.empty).astype(np.int64), s.name)
    if kind == "depth":
        return TaskData(where, everything, s.depth, s.name)
    if kind.startswith("operand") and kind[7:].isdigit():
        slot = int(kind[7:])
        keep = np.flatnonzero(s.operand_names[:, slot] >= 0)
        return TaskData(where, keep, s.operand_names[keep, slot], s.name[keep])
    raise WorkbenchError(f"unknown probing task {task!r}; the tasks are {list(TASKS)}")


@dataclass
class ProbeCurves:
    """One task's probe scores: [step, point] arrays, and per depth [depth, step, point] (test accuracy)."""

    task: str
    accuracy: np.ndarray
    control: dict[str, np.ndarray]  # CONTROLS -> [step, point]
    majority: np.ndarray  # accuracy of always guessing the training set's most common label
    by_depth: np.ndarray  # test accuracy split by the node's depth (NaN where no test node has it)
    n_classes: int
    n_train: int
    n_test: int

    @property
    def selectivity(self) -> dict[str, np.ndarray]:
        return {kind: self.accuracy - c for kind, c in self.control.items()}

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "control": self.control, "selectivity": self.selectivity,
                "majority": self.majority, "by_depth": self.by_depth, "n_classes": self.n_classes,
                "n_train": self.n_train, "n_test": self.n_test}


def probe_curves(g: Gathered, tasks: Sequence[str] = TASKS, *, probe: dict | None = None, test_size: float = 0.25,
                 seed: int = 0, max_depth: int | None = None, progress: bool = False) -> dict[str, ProbeCurves]:
    """Fit a probe and its control at every (step, point) for every task; scores on held-out graphs.

    One split by graph serves every task, step and point (the same graphs are held out everywhere).
    ``probe``: keyword arguments of ``LinearProbe`` (kind, alpha, C, ...).
    """
    probe = probe or {}
    groups = np.concatenate([s.graph for s in g.samples.values()])
    graphs = np.unique(groups)
    _, test_graphs = graph_split(graphs, test_size=test_size, seed=seed)
    held_out = np.zeros(int(graphs.max()) + 1, dtype=bool)
    held_out[graphs[test_graphs]] = True
    n_points = len(g.points)
    depth_cap = max_depth if max_depth is not None else int(max(s.depth.max() for s in g.samples.values()))
    out: dict[str, ProbeCurves] = {}
    jobs = [(task, t) for task in tasks for t in range(g.n_steps)]
    bar = tqdm(total=len(jobs) * n_points, desc="probes", disable=not progress, dynamic_ncols=True, leave=False)
    for task in tasks:
        if task_data(g, task, 0) is None:
            continue
        acc, maj = np.full((g.n_steps, n_points), np.nan), np.full(g.n_steps, np.nan)
        ctl = {kind: np.full((g.n_steps, n_points), np.nan) for kind in CONTROLS}
        by_depth = np.full((depth_cap + 1, g.n_steps, n_points), np.nan)
        n_classes = n_train = n_test = 0
        for t in range(g.n_steps):
            data = task_data(g, task, t)
            s = g.samples[data.where]
            test = held_out[s.graph[data.keep]]
            train = ~test
            y = data.labels
            controls = {"name": control_labels(data.keys, y, seed=seed + 7919 * t),
                        "shuffle": shuffled_labels(s.graph[data.keep], y, seed=seed + 1)}
            n_classes, n_train, n_test = max(n_classes, len(np.unique(y))), int(train.sum()), int(test.sum())
            if not train.any() or not test.any():
                bar.update(n_points)
                continue
            values, counts = np.unique(y[train], return_counts=True)
            maj[t] = np.mean(y[test] == values[counts.argmax()])
            depth = s.depth[data.keep][test]
            for i in range(n_points):
                X = g.acts[data.where][t, i, data.keep]
                right = LinearProbe(**probe).fit(X[train], y[train]).predict(X[test]) == y[test]
                acc[t, i] = right.mean()
                for kind, c in controls.items():
                    ctl[kind][t, i] = LinearProbe(**probe).fit(X[train], c[train]).score(X[test], c[test])
                for d in range(depth_cap + 1):
                    if (depth == d).any():
                        by_depth[d, t, i] = right[depth == d].mean()
                bar.update(1)
        out[task] = ProbeCurves(task, acc, ctl, maj, by_depth, n_classes, n_train, n_test)
    bar.close()
    return out


def transfer_matrix(g: Gathered, task: str = "value@rhs", *, point: int = -1, probe: dict | None = None,
                    test_size: float = 0.25, seed: int = 0) -> np.ndarray:
    """[train step, test step]: a probe trained at one step, scored on held-out graphs at every step."""
    data0 = task_data(g, task, 0)
    if data0 is None:
        raise WorkbenchError(f"the gathered activations lack the positions task {task!r} needs")
    s = g.samples[data0.where]
    groups = s.graph[data0.keep]
    train_idx, test_idx = graph_split(groups, test_size=test_size, seed=seed)
    out = np.full((g.n_steps, g.n_steps), np.nan)
    for t in range(g.n_steps):
        dt = task_data(g, task, t)
        X = g.acts[dt.where][t, point, dt.keep]
        fitted = LinearProbe(**(probe or {})).fit(X[train_idx], dt.labels[train_idx])
        for u in range(g.n_steps):
            du = task_data(g, task, u)
            Xu = g.acts[du.where][u, point, du.keep]
            out[t, u] = fitted.score(Xu[test_idx], du.labels[test_idx])
    return out


# ------------------------------------------------------------------------------------ causal checks
MATTERS_DROP = 0.05
"""A probe 'matters' when projecting out its directions costs this much more frontier accuracy than
projecting out as many random directions (a probe can decode what the model never reads)."""
SAME_AS_RANDOM = 0.02
"""A probe whose accuracy is within this of the same probe on a random-weight model decodes the input, not
anything the training put there."""


def probe_directions(probe: LinearProbe) -> np.ndarray:
    """[d_model, k] an orthonormal basis of the residual directions the fitted probe reads (raw, unscaled space)."""
    if probe.clf_ is None:
        raise WorkbenchError("a probe fitted on one class reads no direction")
    scaler, head = probe.clf_[0], probe.clf_[-1]
    weights = np.atleast_2d(head.coef_) / scaler.scale_[None, :]  # [class, d_model]
    u, sv, _ = np.linalg.svd(weights.T, full_matrices=False)
    return u[:, sv > sv.max() * 1e-6]


class ProjectOut:
    """A ``Tap`` that removes a subspace from one residual site at some positions: h - Q Q^T h."""

    def __init__(self, site: str, basis: np.ndarray, positions: np.ndarray) -> None:
        import torch

        self.site, self.positions = site, positions
        self.Q = torch.from_numpy(basis).float()

    def __call__(self, name: str, x):
        import torch

        if name != self.site:
            return x
        where = torch.from_numpy(self.positions[:, : x.shape[1]]).to(x.device)[..., None]
        Q = self.Q.to(x)
        return torch.where(where, x - (x @ Q) @ Q.T, x)

    def active(self, name: str) -> bool:
        return False  # no slow explicit path needed: residual sites are always materialized


DECODES_MARGIN = 0.1
"""A probe 'decodes' at a point when its held-out accuracy beats the majority guess by this much; only there
is its causal check meaningful (projecting out a chance-level probe's directions tests nothing about it)."""


def causal_checks(model, tb, g: Gathered, tasks: Sequence[str] = ("value@rhs", "value@operand"), *,
                  step: int | None = None, probe: dict | None = None, seed: int = 0,
                  curves: dict[str, ProbeCurves] | None = None) -> dict:
    """For each value probe and residual point: does the model *use* what the probe decodes?

    At ``step`` (default: the middle of the run's steps with new nodes), fit the probe on all gathered
    samples, then rerun that step on its teacher input with the probe's directions projected out at the
    positions the task probes (the frontier's defining positions for ``@rhs``, their operand tokens for
    ``@operand``) and compare the frontier accuracy with the clean run and with as many random
    directions projected out. ``matters`` is None at points where the probe does not decode (its held-out
    accuracy in ``curves`` within ``DECODES_MARGIN`` of the majority guess).
    Returns {task: {step, points, rank, clean, ablated [point], random [point], decodes [point], matters [point]}}.
    """
    from workbench.analysis.activations import residual_points
    from workbench.analysis.routing import step_accuracy
    from workbench.hooks.tl_wrapper import hooked

    m = hooked(model).model
    depth_max = int(tb.max_depth.max())
    t = step if step is not None else max(1, min(depth_max, g.n_steps - 1) // 2 + 1)
    tt = min(t, g.n_steps - 1)  # the gathered step whose activations the probes are fitted on
    frontier = tb.is_rhs & (tb.depth == t)
    operand_of_frontier = np.zeros_like(frontier)
    b, n = np.nonzero(tb.graphs.valid & (tb.graphs.depth == t))
    ops = tb.operand_pos[b, n]  # [node, 3]
    has = ops >= 0
    operand_of_frontier[np.repeat(b, 3)[has.ravel()], ops[has]] = True
    sites = [f"blocks.{layer}.{site}" for site, layer in residual_points(m.cfg.n_layers)]

    clean = step_accuracy(m, tb, t)
    rng = np.random.default_rng(seed)
    out = {}
    for task in tasks:
        data = task_data(g, task, tt)
        if data is None:
            continue
        where = frontier if data.where == "rhs" else operand_of_frontier
        row = {"step": t, "points": g.points, "clean": clean, "ablated": [], "random": [], "rank": 0}
        for i, site in enumerate(sites):
            X = g.acts[data.where][tt, i, data.keep]
            fitted = LinearProbe(**(probe or {})).fit(X, data.labels)
            basis = probe_directions(fitted)
            rand, _ = np.linalg.qr(rng.standard_normal((basis.shape[0], basis.shape[1])))
            row["rank"] = int(basis.shape[1])
            row["ablated"].append(step_accuracy(m, tb, t, ProjectOut(site, basis, where)))
            row["random"].append(step_accuracy(m, tb, t, ProjectOut(site, rand, where)))
        c = (curves or {}).get(task)
        row["decodes"] = [True] * len(sites) if c is None else \
            [bool(c.accuracy[tt, i] >= c.majority[tt] + DECODES_MARGIN) for i in range(len(sites))]
        row["matters"] = [bool(r - a >= MATTERS_DROP) if d else None
                          for a, r, d in zip(row["ablated"], row["random"], row["decodes"])]
        out[task] = row
    return out


def baseline_flags(tasks_out: dict, tolerance: float = SAME_AS_RANDOM) -> list[str]:
    """Tasks whose probe accuracy (after the last layer, mean over steps) equals the random-weight model's:
    they decode what the input already says, not what the model computed."""
    flags = []
    for name, d in tasks_out.items():
        if "random_init" not in d:
            continue
        trained = float(np.nanmean(np.asarray(d["accuracy"], dtype=float)[:, -1]))
        random = float(np.nanmean(np.asarray(d["random_init"], dtype=float)[:, -1]))
        if abs(trained - random) <= tolerance:
            flags.append(name)
    return flags


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
        seed: int = 0, batch_size: int = 64, progress: bool = False) -> tuple[dict, dict]:
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
    summary = {}
    for name, c in curves.items():  # means over steps after the last layer
        summary[f"{name} acc"] = float(np.nanmean(c.accuracy[:, -1]))
        summary[f"{name} majority"] = float(np.nanmean(c.majority))
        if "random_init" in tasks_out[name]:
            summary[f"{name} random-init acc"] = float(np.nanmean(tasks_out[name]["random_init"][:, -1]))
        for kind, sel in c.selectivity.items():
            summary[f"{name} selectivity ({kind})"] = float(np.nanmean(sel[:, -1]))
    for name, row in causal.items():
        used = [p for p, m in zip(row["points"], row["matters"]) if m]
        idle = [p for p, m in zip(row["points"], row["matters"]) if m is False]
        summary[f"{name} probe used by the model at"] = ", ".join(used) or "no point"
        if idle:
            summary[f"{name} probe decodes but is not used at"] = ", ".join(idle)
    if flags:
        summary["probes no better than on random weights"] = ", ".join(flags)
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
           "causal_checks", "baseline_flags", "MATTERS_DROP", "SAME_AS_RANDOM", "DECODES_MARGIN", "random_init", "run", "figures"]
