"""Probes: split by graph, controls, selectivity, and the leakage guard (a random model probes near chance)."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.analysis import probes
from workbench.analysis.activations import gather, sample_batch
from workbench.analysis.probes import (LinearProbe, control_labels, graph_split, probe_curves, shuffled_labels,
                                       task_data, transfer_matrix)
from workbench.errors import WorkbenchError


@pytest.fixture(scope="module")
def gathered(model):
    tb = sample_batch(model, 10, 64, seed=1, depth_cap=4)
    return {mode: gather(model, tb, n_steps=3, mode=mode, batch_size=32) for mode in ("free", "teacher")}


def test_split_is_by_graph_never_by_token():
    groups = np.repeat(np.arange(20), 7)
    train, test = graph_split(groups, seed=3)
    assert not set(groups[train]) & set(groups[test])
    assert len(train) + len(test) == len(groups) and len(set(groups[test])) == 5
    with pytest.raises(WorkbenchError):
        graph_split(np.zeros(5, dtype=int))


def test_control_labels_are_consistent_per_key_and_keep_the_label_set():
    keys = np.array([3, 1, 3, 2, 1, 3])
    labels = np.array([0, 1, 2, 3, 4, 5])
    c = control_labels(keys, labels, seed=0)
    assert c[0] == c[2] == c[5] and c[1] == c[4]
    assert set(c) <= set(labels)
    assert (control_labels(keys, labels, seed=0) == c).all()  # deterministic


def test_shuffled_labels_stay_within_each_graph():
    groups = np.array([0, 0, 0, 0, 1, 1, 2])
    labels = np.arange(7)
    c = shuffled_labels(groups, labels, seed=2)
    for g in range(3):
        assert sorted(c[groups == g]) == sorted(labels[groups == g])
    assert (c[:6] != labels[:6]).all()  # a graph of one sample keeps its own label


def test_probe_is_a_sklearn_estimator_and_handles_one_class():
    from sklearn.base import clone

    X = np.random.default_rng(0).normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    for kind in ("ridge", "logistic"):
        probe = clone(LinearProbe(kind=kind)).fit(X, y)
        assert probe.score(X, y) > 0.9 and probe.get_params()["kind"] == kind
    assert LinearProbe().fit(X, np.zeros(40)).score(X, np.zeros(40)) == 1.0
    with pytest.raises(WorkbenchError):
        LinearProbe(kind="mlp").fit(X, y)


def test_curves_shapes_and_selectivity_is_task_minus_control(gathered):
    g = gathered["free"]
    curves = probe_curves(g, ["value@rhs", "computed@operand", "operand1@rhs"], seed=0)
    for c in curves.values():
        assert c.accuracy.shape == (3, 5) and c.majority.shape == (3,)
        assert np.nanmin(c.accuracy) >= 0 and np.nanmax(c.accuracy) <= 1
        for kind in ("name", "shuffle"):
            np.testing.assert_allclose(c.selectivity[kind], c.accuracy - c.control[kind])
    assert curves["value@rhs"].by_depth.shape[1:] == (3, 5)
    assert curves["value@rhs"].n_classes == 7
    assert task_data(g, "operand2@rhs", 0).labels.max() < 16


def test_random_model_probes_near_chance(gathered):
    """The leakage guard: a random-weight model's residual at a computed node's rhs holds no linear code of
    its value (a leaf's constant, two tokens back, does reach its rhs through attention: real flow, not leakage)."""
    curves = probe_curves(gathered["free"], ["value@rhs", "value@operand"], seed=0)
    inner = curves["value@rhs"].by_depth[1:]  # nodes of depth >= 1, [depth, step, point]
    chance = float(np.nanmax(curves["value@rhs"].majority))
    assert np.nanmean(inner) < chance + 0.1
    assert np.nanmean(curves["value@operand"].accuracy) < np.nanmax(curves["value@operand"].majority) + 0.1
    assert np.nanmean(curves["value@rhs"].selectivity["shuffle"][:, -1]) < 0.25


def test_probes_read_a_value_that_is_in_the_input(gathered):
    """Teacher-forced, the state step t reads holds the values of depth < t: a probe must find them."""
    curves = probe_curves(gathered["teacher"], ["value@rhs", "computed@rhs"], seed=0)
    by_depth = curves["value@rhs"].by_depth
    assert by_depth[0, 1, 0] > 0.8 and by_depth[1, 2, 0] > 0.8  # leaves at step 1, depth 1 at step 2, embedding
    assert curves["computed@rhs"].accuracy[1, 0] > 0.95


def test_transfer_matrix_shape(gathered):
    m = transfer_matrix(gathered["teacher"], "value@rhs")
    assert m.shape == (3, 3) and np.isfinite(m).all()


# --- causal checks: does the model use what a probe decodes? -------------------------------------------

def test_probe_directions_span_what_the_probe_reads():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 8))
    y = (X[:, 2] > 0).astype(int) + 2 * (X[:, 5] > 0)
    basis = probes.probe_directions(probes.LinearProbe().fit(X, y))
    assert np.allclose(basis.T @ basis, np.eye(basis.shape[1]), atol=1e-8)
    assert np.linalg.norm(basis[[2, 5]]) > 0.9 * np.sqrt(min(2, basis.shape[1]))  # mostly the two informative axes


def test_projecting_out_a_subspace_removes_it_only_where_asked():
    import torch

    Q = np.eye(4)[:, :1]
    where = np.array([[True, False]])
    tap = probes.ProjectOut("blocks.0.hook_resid_mid", Q, where)
    x = torch.ones(1, 2, 4)
    out = tap("blocks.0.hook_resid_mid", x)
    assert out[0, 0].tolist() == [0, 1, 1, 1] and out[0, 1].tolist() == [1, 1, 1, 1]
    assert torch.equal(tap("blocks.1.hook_resid_mid", x), x)


def test_causal_checks_and_random_baseline_flags_on_the_tiny_model(model, tb):
    from workbench.analysis.activations import gather

    g = gather(model, tb, n_steps=3, mode="teacher")
    curves = probes.probe_curves(g, ["value@rhs", "value@operand"])
    out = probes.causal_checks(model, tb, g, curves=curves)
    for task in ("value@rhs", "value@operand"):
        row = out[task]
        assert len(row["ablated"]) == len(g.points) == len(row["random"]) == len(row["matters"])
        assert all(m is None or isinstance(m, bool) for m in row["matters"])
        assert 0 <= row["clean"] <= 1
    same = {"x": {"accuracy": [[0.5, 0.30]], "random_init": [[0.1, 0.31]]},
            "y": {"accuracy": [[0.5, 0.90]], "random_init": [[0.1, 0.31]]}}
    assert probes.baseline_flags(same) == ["x"]


def test_the_probe_estimator_and_checks_stay_importable_from_probes():
    from workbench.analysis import probe_checks, probes, probing

    for module in (probing, probe_checks):
        for name in module.__all__:
            assert getattr(probes, name) is getattr(module, name)
