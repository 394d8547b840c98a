"""Stepwise curves, halting and injected errors: events on a hand-made run, shapes and ranges on the tiny model."""

from __future__ import annotations

import numpy as np
import torch

from workbench.analysis import correction
from workbench.hooks.decoded import Trajectory


def test_events_count_corrections_and_new_errors(tb):
    truth = torch.tensor([[1, 2, -1]])
    values = torch.tensor([[[9, 9, -1]], [[3, 9, -1]], [[1, 2, -1]], [[1, 4, -1]]])  # [step + 1, batch, node]
    traj = Trajectory(tb, torch.zeros(4, 1, 3, 4), values, truth, torch.tensor([3]), torch.tensor([False]))
    e = correction.events(traj, empty=9)
    assert e["corrections"].tolist() == [0.0, 0.5, 0.0] and e["new_errors"].tolist() == [0.0, 0.0, 0.5]
    assert e["graphs_with_correction"] == 1.0


def test_free_trajectory_matches_one_batch_run(model, tb):
    from workbench.hooks.interventions import trajectory

    a = correction.free_trajectory(model, tb, n_steps=3, batch_size=5)
    b = trajectory(model, tb, n_steps=3)
    assert torch.equal(a.values, b.values)


def test_run_shapes_and_ranges(model):
    results, summary = correction.run(model, sizes=(8, 10), count=6, inject_nodes=10, inject_count=6,
                                      inject_steps=(1, 2), ks=(1, 2), compare=[model], max_steps=6)
    s = results["stepwise"][10]
    assert len(s["solved"]) == s["steps"] and 0 <= s["acc_oracle"] <= 1
    assert set(s["solved_by_depth"]) == set(s["iterations_by_depth"])
    inj = results["injection"]
    for key in ("one_step", "eventual", "recovered"):
        a = np.asarray(inj[key])
        assert a.shape == (2, 2) and np.nanmin(a) >= 0 and np.nanmax(a) <= 1
    assert "tiny0" in results["compare"]
    assert set(summary.solved) == {8, 10}
