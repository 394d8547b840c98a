"""Checks on what a probe decodes: does the model use it, and did training put it there?

``causal_checks`` projects a value probe's directions out of the residual stream and reruns the step: a probe
"matters" where that costs more frontier accuracy than projecting out random directions. ``baseline_flags``
names the tasks a random-weight model probes as well as the trained one (they decode the input, nothing learnt).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from jaxtyping import Float

from workbench.analysis.activations import Gathered
from workbench.analysis.probing import LinearProbe, ProbeCurves, task_data
from workbench.errors import WorkbenchError

MATTERS_DROP = 0.05
"""A probe 'matters' when projecting out its directions costs this much more frontier accuracy than
projecting out as many random directions (a probe can decode what the model never reads)."""
SAME_AS_RANDOM = 0.02
"""A probe whose accuracy is within this of the same probe on a random-weight model decodes the input, not
anything the training put there."""


def probe_directions(probe: LinearProbe) -> Float[np.ndarray, "d_model k"]:
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


__all__ = ["MATTERS_DROP", "SAME_AS_RANDOM", "DECODES_MARGIN", "probe_directions", "ProjectOut", "causal_checks",
           "baseline_flags"]
