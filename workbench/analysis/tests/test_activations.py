"""Gathering: shapes, labels that match the graphs, teacher-forced runs reading the teacher's states."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.analysis.activations import cached_runs, default_steps, gather, node_samples, residual_points, sample_batch
from workbench.errors import WorkbenchError
from workbench.hooks.names import hook_name
from workbench.task.vocab import F_VALUE, F_VARIABLE


def test_gather_shapes_and_points(model, tb):
    g = gather(model, tb, n_steps=3, batch_size=10)
    n_rhs = int(tb.graphs.valid.sum())
    assert g.acts["rhs"].shape == (3, 5, n_rhs, 32)
    assert g.acts["operand"].shape[:2] == (3, 5) and g.acts["operand"].dtype == np.float32
    assert g.points == ["L0.pre", "L0.mid", "L0.post", "L1.mid", "L1.post"]
    assert len(residual_points(model.cfg.n_layers)) == 5


def test_samples_sit_on_their_nodes_names(tb):
    for where in ("rhs", "operand"):
        s = node_samples(tb, where)
        assert (tb.tokens[s.graph, s.pos, F_VARIABLE] == s.name).all()  # the token there is the node's name
        assert (tb.node[s.graph, s.pos] == s.node).all()
    op = node_samples(tb, "operand")
    assert (tb.graphs.parents[op.graph, op.owner, op.slot] == op.node).all()
    assert (op.value == tb.graphs.value[op.graph, op.node]).all()


def test_gathered_activation_is_the_cached_residual(model, tb):
    g = gather(model, tb, n_steps=2, batch_size=7)
    s = g.samples["rhs"]
    i = 17
    b = s.graph[i]
    _, cache = next(iter([(c.out, c.cache) for c in cached_runs(model, tb.select(np.array([b])), n_steps=2,
                                                                    names_filter=[hook_name(1, "hook_resid_mid", 1)])]))
    expected = cache[hook_name(1, "hook_resid_mid", 1)][0, s.pos[i]].numpy()
    np.testing.assert_allclose(g.acts["rhs"][1, 3, i], expected, rtol=1e-4, atol=1e-5)


def test_teacher_mode_reads_the_teacher_states(model, tb):
    g = gather(model, tb, n_steps=3, mode="teacher", where=["rhs"])
    s = g.samples["rhs"]
    for t in range(3):
        expected = tb.state(t - 1)[s.graph, tb.rhs_pos[s.graph, s.node], F_VALUE]
        assert (g.values_read["rhs"][t] == expected).all()


def test_bad_inputs_are_workbench_errors(model, tb):
    with pytest.raises(WorkbenchError):
        sample_batch(model, 100, 4)  # more nodes than names
    with pytest.raises(WorkbenchError):
        next(cached_runs(model, tb, n_steps=2, mode="dream"))
    assert default_steps(tb) == int(tb.max_depth.max()) + 3
