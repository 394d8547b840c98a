"""Linear probes on the residual stream: accuracy and selectivity per (step, residual point).

The probe is a scikit-learn estimator (standardized features, multinomial logistic regression, L2);
train and test are split **by graph**, never by token. Every task has a control task after Hewitt &
Liang (2019): the same samples with random but consistent labels, one per variable name (the token
at the probed position), drawn from the task's own label distribution; selectivity = task accuracy
minus control accuracy. A probe that only memorizes names scores the same on both.

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
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from workbench.analysis.activations import Gathered
from workbench.errors import WorkbenchError

TASKS: tuple[str, ...] = ("value@rhs", "value@operand", "computed@rhs", "computed@operand", "depth@rhs",
                          "operand0@rhs", "operand1@rhs", "operand2@rhs")


class LinearProbe(ClassifierMixin, BaseEstimator):
    """A linear probe: standardized features, then L2-regularized multinomial logistic regression.

    A training set with one class gives a constant predictor (so every (step, point) has a score).

    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([0, 0, 1, 1])
    >>> LinearProbe(C=10.0).fit(X, y).score(X, y)
    1.0
    """

    def __init__(self, C: float = 0.1, max_iter: int = 300):
        self.C = C
        self.max_iter = max_iter

    def fit(self, X, y):  # X [n_samples, d_model], y [n_samples]
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            self.clf_ = None
            return self
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.clf_ = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=self.max_iter)).fit(X, y)
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
    control: np.ndarray
    majority: np.ndarray  # accuracy of always guessing the training set's most common label
    by_depth: np.ndarray  # test accuracy split by the node's depth (NaN where no test node has it)
    n_classes: int
    n_train: int
    n_test: int

    @property
    def selectivity(self) -> np.ndarray:
        return self.accuracy - self.control

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "control": self.control, "selectivity": self.selectivity,
                "majority": self.majority, "by_depth": self.by_depth, "n_classes": self.n_classes,
                "n_train": self.n_train, "n_test": self.n_test}


def probe_curves(g: Gathered, tasks: Sequence[str] = TASKS, *, C: float = 0.1, max_iter: int = 300,
                 test_size: float = 0.25, seed: int = 0, max_depth: int | None = None,
                 progress: bool = False) -> dict[str, ProbeCurves]:
    """Fit a probe and its control at every (step, point) for every task; scores on held-out graphs.

    One split by graph serves every task, step and point (the same graphs are held out everywhere).
    """
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
        acc, ctl, maj = (np.full((g.n_steps, n_points), np.nan) for _ in range(3))
        by_depth = np.full((depth_cap + 1, g.n_steps, n_points), np.nan)
        n_classes = n_train = n_test = 0
        for t in range(g.n_steps):
            data = task_data(g, task, t)
            s = g.samples[data.where]
            test = held_out[s.graph[data.keep]]
            train = ~test
            y = data.labels
            control = control_labels(data.keys, y, seed=seed + 7919 * t)
            n_classes, n_train, n_test = max(n_classes, len(np.unique(y))), int(train.sum()), int(test.sum())
            if not train.any() or not test.any():
                bar.update(n_points)
                continue
            values, counts = np.unique(y[train], return_counts=True)
            maj[t] = np.mean(y[test] == values[counts.argmax()])
            depth = s.depth[data.keep][test]
            for i in range(n_points):
                X = g.acts[data.where][t, i, data.keep]
                probe = LinearProbe(C=C, max_iter=max_iter).fit(X[train], y[train])
                right = probe.predict(X[test]) == y[test]
                acc[t, i] = right.mean()
                ctl[t, i] = LinearProbe(C=C, max_iter=max_iter).fit(X[train], control[train]).score(X[test], control[test])
                for d in range(depth_cap + 1):
                    if (depth == d).any():
                        by_depth[d, t, i] = right[depth == d].mean()
                bar.update(1)
        out[task] = ProbeCurves(task, acc, ctl, maj, by_depth, n_classes, n_train, n_test)
    bar.close()
    return out


def transfer_matrix(g: Gathered, task: str = "value@rhs", *, point: int = -1, C: float = 0.1, max_iter: int = 300,
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
        probe = LinearProbe(C=C, max_iter=max_iter).fit(X[train_idx], dt.labels[train_idx])
        for u in range(g.n_steps):
            du = task_data(g, task, u)
            Xu = g.acts[du.where][u, point, du.keep]
            out[t, u] = probe.score(Xu[test_idx], du.labels[test_idx])
    return out


# ------------------------------------------------------------------------------------ the analysis
def run(model, *, n_nodes: int = 16, count: int = 256, depth_cap: int | None = 6, n_steps: int | None = None,
        mode: str = "free", tasks: Sequence[str] = TASKS, C: float = 0.1, seed: int = 0, batch_size: int = 64,
        progress: bool = False) -> tuple[dict, dict]:
    """Probe every task at every (step, residual point) on ``count`` graphs of ``n_nodes`` nodes.

    Returns ``(results, summary)`` for the JSON envelope. results: ``points``, ``steps``,
    ``tasks[task]`` = {accuracy, control, selectivity [step][point], majority [step],
    by_depth [depth][step][point], n_classes, n_train, n_test}, ``transfer`` (value@rhs at the last point,
    [train step][test step]).
    """
    from workbench.analysis.activations import default_steps, gather, sample_batch

    bad = [t for t in tasks if t not in TASKS]
    if bad:
        raise WorkbenchError(f"unknown probing tasks {bad}; the tasks are {list(TASKS)}")
    tb = sample_batch(model, n_nodes, count, seed=seed, depth_cap=depth_cap)
    steps = n_steps or default_steps(tb, extra=1, cap=10)
    g = gather(model, tb, n_steps=steps, mode=mode, batch_size=batch_size, progress=progress)
    curves = probe_curves(g, tasks, C=C, seed=seed, progress=progress)
    transfer = transfer_matrix(g, "value@rhs", C=C, seed=seed) if "value@rhs" in curves else None
    results = {"points": g.points, "steps": list(range(steps)), "mode": mode,
               "tasks": {name: c.to_dict() for name, c in curves.items()},
               "transfer": None if transfer is None else {"task": "value@rhs", "point": g.points[-1], "matrix": transfer}}
    summary = {}
    for name, c in curves.items():
        last = c.accuracy[:, -1]
        t = int(np.nanargmax(last)) if np.isfinite(last).any() else 0
        summary[f"{name} best acc (last point)"] = float(last[t]) if np.isfinite(last).any() else None
        summary[f"{name} selectivity there"] = float(c.selectivity[t, -1]) if np.isfinite(last).any() else None
    return results, summary


def figures(result: dict) -> list:
    """Figures of a probes result: accuracy and selectivity heatmaps, curves, value by depth, transfer."""
    from workbench.plots.analysis import Figure, Heatmap, Lines

    r = result["results"]
    points, steps, tasks = r["points"], r["steps"], r["tasks"]
    heat = lambda key, lo, hi: [Heatmap(name, d[key], points, steps, "residual point", "step", lo, hi)  # noqa: E731
                                for name, d in tasks.items()]
    figs = [Figure("accuracy", "Probe accuracy on held-out graphs (step x residual point)", heat("accuracy", 0, 1), cols=4),
            Figure("selectivity", "Selectivity = task - control accuracy", heat("selectivity", -0.2, 1), cols=4)]
    curves = []
    for name, d in tasks.items():
        series = {"task": [row[-1] for row in d["accuracy"]], "control": [row[-1] for row in d["control"]],
                  "majority": d["majority"]}
        curves.append(Lines(f"{name} at {points[-1]}", steps, series, "step", "accuracy", 0, 1,
                            dashed=("control", "majority")))
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


__all__ = ["TASKS", "LinearProbe", "graph_split", "control_labels", "TaskData", "task_data", "ProbeCurves",
           "probe_curves", "transfer_matrix", "run", "figures"]
