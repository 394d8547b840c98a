"""The bottleneck lens: the last point decodes exactly what the step wrote; shapes and ranges."""

from __future__ import annotations

import numpy as np

from workbench.analysis import lens


def test_lens_at_the_last_point_is_the_model_output(model):
    results, summary = lens.run(model, n_nodes=10, count=12, n_steps=3, depth_cap=4, batch_size=6)
    agreement = np.asarray(results["agreement"])  # [factor, step, point]
    assert agreement.shape == (4, 3, 5)
    np.testing.assert_allclose(agreement[:, :, -1], 1.0)  # ln_final + heads of the last residual = the bottleneck
    assert (agreement >= 0).all() and (agreement <= 1).all()
    first = np.asarray(results["first_appearance"])
    np.testing.assert_allclose(first.sum(1)[first.sum(1) > 0], 1.0)
    assert len(results["first_labels"]) == first.shape[1] == 3 * 5 + 1
    assert results["value_by_depth"].shape[1:] == (3, 5)
    d = results["drift"]
    assert np.isnan(d["delta"][-1]) and np.isfinite(d["delta"][0]) and 0 < d["confidence"][0] <= 1
    assert 0 <= summary.never_decoded <= 1


def test_teacher_lens_runs(model):
    results, _ = lens.run(model, n_nodes=8, count=4, n_steps=2, mode="teacher")
    np.testing.assert_allclose(np.asarray(results["agreement"])[:, :, -1], 1.0)
