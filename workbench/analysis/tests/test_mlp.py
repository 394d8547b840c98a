"""MLP analysis: frequency classes, DFT power, the Z_p^3 sweep, contributions and ablation."""

from __future__ import annotations

import numpy as np

from workbench.analysis import mlp


def test_frequency_classes_partition_the_grid():
    c = mlp.frequency_classes(7)
    counts = np.bincount(c.ravel(), minlength=4)
    assert counts.tolist() == [1, 6, 18, 343 - 25]


def test_a_function_of_the_sum_lives_on_the_diagonal():
    p = 7
    x, y, z = np.meshgrid(*[np.arange(p)] * 3, indexing="ij")
    f = np.stack([np.cos(2 * np.pi * 2 * (x + y + z) / p), ((x + y + z) % p == 3).astype(float)], -1)
    power = mlp.fourier_power(f)
    classes = mlp.frequency_classes(p)
    assert np.isclose(power.sum(), 1.0)
    assert power[classes >= 2].sum() < 1e-9  # no axis or other frequency
    g = np.cos(2 * np.pi * x / p)[..., None]  # one operand only: an axis frequency
    assert np.isclose(mlp.fourier_power(g)[classes == 2].sum(), 1.0)


def test_run_shapes_and_sane_values(model):
    results, summary = mlp.run(model, n_nodes=10, count=8, n_steps=3, batch_size=8)
    c = results["contribution"]
    assert c["mlp"].shape == (3, 2) and (c["mlp"] > 0).all() and (c["attn"] > 0).all()
    for mode in ("zero", "mean"):
        for k in ("frontier", "kept"):
            a = results["ablation"][mode][k]
            assert a.shape == (3, 2) and np.nanmax(a) <= 1 and np.nanmin(a) >= 0
    f = results["fourier"]
    for s in mlp.SIGNALS:
        assert np.isclose(sum(f["fractions"][s].values()), 1.0, atol=1e-6)
        assert len(f["diagonal"][s]) == 7
    assert 0 <= f["accuracy"] <= 1 and len(f["accuracy_by_sum"]) == 7
    assert f["layer"] == 1 and 0 <= summary.pre_bias_share <= 1
