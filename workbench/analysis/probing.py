"""Linear probes fitted on gathered residuals: the estimator, graph splits, control labels, accuracy curves.

The probe is a scikit-learn estimator (``LinearProbe``); train and test are split by graph
(``graph_split``); each task has the control tasks ``CONTROLS`` (``control_labels``, ``shuffled_labels``).
``probe_curves`` fits every task at every (step, residual point); ``transfer_matrix`` tests a probe fitted at
one step on the others. The tasks and controls are described in ``workbench.analysis.probes``, which runs them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from jaxtyping import Int
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


def graph_split(groups: Int[np.ndarray, "sample"], *, test_size: float = 0.25,
                seed: int = 0) -> tuple[Int[np.ndarray, "train"], Int[np.ndarray, "test"]]:
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


def shuffled_labels(groups: Int[np.ndarray, "sample"], labels: Int[np.ndarray, "sample"], *,
                    seed: int = 0) -> Int[np.ndarray, "sample"]:
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


def control_labels(keys: Int[np.ndarray, "sample"], labels: Int[np.ndarray, "sample"], *,
                   seed: int = 0) -> Int[np.ndarray, "sample"]:
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


__all__ = ["TASKS", "CONTROLS", "PROBE_KINDS", "LinearProbe", "graph_split", "shuffled_labels", "control_labels",
           "TaskData", "task_data", "ProbeCurves", "probe_curves", "transfer_matrix"]
