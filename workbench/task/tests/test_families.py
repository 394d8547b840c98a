"""Graph families: each pushes one axis and stays a valid graph of the task (values, depths, model order)."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.task.config import TaskConfig
from workbench.task.families import FAMILIES, add_hubs, fan_out, sample_family
from workbench.task.graphs import Graphs, compute_depth, evaluate, sample_graphs

TASK = TaskConfig()


def assert_valid(g: Graphs) -> None:
    """Parents come earlier, depths and values match the graph, nodes are in model order (depth sorted)."""
    idx = np.arange(g.max_nodes)[None, :, None]
    assert ((g.parents < idx) | (g.parents < 0)).all()
    np.testing.assert_array_equal(g.depth, compute_depth(g.parents, g.valid))
    np.testing.assert_array_equal(np.where(g.valid, g.value, -1), np.where(g.valid, evaluate(g.parents, g.ops, g.leaf_value, g.modulus), -1))
    key = np.where(g.valid, g.depth, g.max_nodes + 1)
    assert (np.diff(key, axis=1) >= 0).all()
    present = g.parents >= 0
    assert ((g.ops >= 0) == present[..., 1:]).all()  # an operation for every parent after the first
    s = np.sort(np.where(present, g.parents, -np.arange(1, 4)), axis=-1)
    assert (np.diff(s, axis=-1) != 0).all()  # distinct parents


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("n", [16, 64])
def test_every_family_samples_valid_graphs(name, n):
    g = sample_family(name, n, 40, rng=np.random.default_rng(3), task=TASK)
    assert g.batch == 40 and (g.n_nodes == n).all() and g.valid.all()
    assert_valid(g)


def test_each_family_pushes_its_own_axis():
    rng = np.random.default_rng(0)
    uniform = sample_family("uniform", 128, 64, rng=rng)
    hub = sample_family("hub", 128, 64, rng=rng)
    chain = sample_family("hub-chain", 100, 8, rng=rng)
    deep = sample_family("deep", 128, 32, rng=rng)
    leafy = sample_family("leafy", 96, 16, rng=rng)
    assert np.median(fan_out(uniform).max(1)) <= 12
    top2 = np.sort(fan_out(hub), axis=1)[:, -2:]  # the two hubs
    assert (top2 >= 25).all() and np.median(top2) >= 30 and top2.max() <= 60
    assert (chain.max_depth == 100 - 6).all() and (fan_out(chain).max(1) >= 90).all()
    assert deep.max_depth.mean() > 4 * uniform.max_depth.mean()
    assert ((leafy.leaf_value >= 0).sum(1) == 32).all()


def test_a_hub_chain_is_the_issue_example_v_i_equals_v_i_minus_1_plus_w():
    g = sample_family("hub-chain", 10, 1, rng=np.random.default_rng(1))
    inner = np.flatnonzero(g.leaf_value[0] < 0)
    hub = np.bincount(g.parents[0][g.parents[0] >= 0]).argmax()
    assert g.leaf_value[0, hub] >= 0  # the hub is a leaf
    for i in inner[1:]:
        assert hub in g.parents[0, i] and (g.parents[0, i] >= 0).sum() == 2
        assert g.depth[0, i] == g.depth[0, i - 1] + 1  # a chain


def test_training_hubs_respect_the_reader_cap_and_the_depth_cap():
    rng = np.random.default_rng(5)
    g = sample_graphs(np.full(256, 32), 256, rng=rng, depth_cap=6)
    h = add_hubs(g, rng, readers=(2, 12), hub_pool=12)
    assert_valid(h)
    assert h.max_depth.max() <= 6
    assert fan_out(h).max() <= max(12, fan_out(g).max())
    assert fan_out(h).max(1).mean() > fan_out(g).max(1).mean() + 2
    # the leaf constants are untouched: rewiring changes who reads whom, not what the leaves hold
    np.testing.assert_array_equal(np.sort(h.leaf_value, axis=1), np.sort(g.leaf_value, axis=1))


def test_fan_out_counts_distinct_readers():
    parents = np.array([[[-1, -1, -1], [0, -1, -1], [0, 1, -1], [2, 0, 1]]])
    g = Graphs(parents, np.full((1, 4, 2), -1), np.array([[5, -1, -1, -1]]), np.zeros((1, 4), int), np.array([[0, 1, 2, 3]]),
               np.arange(4)[None], np.array([4]), 23)
    np.testing.assert_array_equal(fan_out(g), [[3, 2, 1, 0]])


def test_unknown_family_and_bad_reader_range_are_user_errors():
    with pytest.raises(WorkbenchError, match="unknown graph family 'hubs'; choose one of uniform, deep, hub"):
        sample_family("hubs", 16, 2, rng=np.random.default_rng(0))
    with pytest.raises(WorkbenchError, match="readers must be a range"):
        add_hubs(sample_graphs(16, 2, rng=np.random.default_rng(0)), np.random.default_rng(0), readers=(5, 2))
