"""Template experiments: appended equations, relative variance, head groups, OV amplification."""

from __future__ import annotations

import numpy as np

from workbench.analysis import attribution
from workbench.task.tokens import tokenize


def test_appended_equation_computes_the_sum(model, tb):
    g = tb.graphs
    parents = np.array([[0, 1, 2], [3, 4, 5]])
    new = attribution.append_equation(g, 0, parents, np.array([15, 14]))
    n = int(g.n_nodes[0])
    assert new.n_nodes.tolist() == [n + 1, n + 1]
    expected = g.value[0, parents].sum(1) % 7
    assert new.value[:, n].tolist() == expected.tolist()
    assert (new.value[:, :n] == g.value[0, :n]).all() and new.depth[0, n] == 1
    tokenize(new, model.vocab)  # lays out


def test_template_batches_vary_exactly_one_slot(model, tb):
    rng = np.random.default_rng(0)
    batches = list(attribution.template_batches(tb.graphs, 1, 3, 16, rng, max_batch=5))
    assert [s for s, _ in batches] == ["v0", "v1", "v2", "rhs"]
    for slot, g in batches:
        last = g.parents[:, -1]
        varying = [len(set(last[:, s])) > 1 for s in range(3)] + [len(set(g.names[:, -1])) > 1]
        assert varying == [s == slot for s in attribution.SLOTS]


def test_relative_variance_and_groups():
    rng = np.random.default_rng(0)
    o = np.ones((2, 6, 3, 4))
    o[0, :, 1] = rng.normal(size=(6, 4))  # head 1 of layer 0 varies
    rv = attribution.relative_variance(o)
    assert rv.shape == (2, 3) and rv[0, 1] > 0.5 and np.allclose(rv[1], 0) and np.allclose(rv[0, [0, 2]], 0)
    assert attribution.head_groups(np.array([[[0.0, 0.6, 0.1, 0.0]]]), min_var=0.2) == [{"v1": [0]}]


def test_run_shapes_and_ov(model):
    results, summary = attribution.run(model, n_nodes=10, templates=2, fan_ins=(1, 3), max_batch=4)
    rel = np.asarray(results["rel_var"], dtype=float)
    assert rel.shape == (2, 2, 4, 4)
    assert np.isnan(rel[0, :, :, 1:3]).all() and np.isfinite(rel[1]).all()  # fan-in 1 has no v1, v2
    assert ((rel[1] >= 0) & (rel[1] <= 1 + 1e-6)).all()
    assert len(results["accuracy"]) == 2 and np.asarray(results["confusion"]).shape == (7, 7)
    ov = results["ov"]
    assert ov["amplification"].shape == (2, 4, 4) and (ov["amplification"] > 0).all()
    assert all(1 <= r <= 32 for r in ov["rank"])
    assert 3 in summary.accuracy and set(summary.groups) == {0, 1}
