"""The sampler follows the paper's law (task-and-model §1.1) and returns graphs in model order."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from workbench.task.config import TaskConfig
from workbench.task.graphs import (ADD, MUL, SUB, Graphs, apply_op, compute_depth, evaluate, sample_graphs,
                                   to_model_order)

P = 23
ALL_OPS = TaskConfig(operations=("+", "-", "*"))


def _sample(n=32, batch=1000, seed=0, **kw) -> Graphs:
    return sample_graphs(n, batch, rng=np.random.default_rng(seed), **kw)


@pytest.fixture(scope="module")
def train() -> Graphs:
    """A training-like batch: N = 32, depth cap 6, all three operations."""
    return _sample(32, 2000, seed=1, depth_cap=6, task=ALL_OPS)


def _fold(values: list[int], ops: list[int], p: int) -> int:
    """Plain-Python left fold ((v1 op2 v2) op3 v3) mod p."""
    acc = values[0]
    for op, v in zip(ops, values[1:]):
        acc = {ADD: acc + v, SUB: acc - v, MUL: acc * v}[op] % p
    return acc


def test_fan_in_is_uniform_on_one_to_three_over_inner_nodes(train):
    inner = train.valid & (train.leaf_value < 0)
    share = np.bincount(train.fan_in[inner], minlength=4) / inner.sum()
    assert share[0] == 0
    np.testing.assert_allclose(share[1:], 1 / 3, atol=0.01)


def test_leaf_values_are_uniform_mod_p(train):
    counts = np.bincount(train.leaf_value[train.leaf_value >= 0], minlength=P)
    assert len(counts) == P
    expected = counts.sum() / P
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 60  # 22 degrees of freedom: p < 1e-4 above ~52, fixed seed


def test_every_graph_has_exactly_six_leaves_first_at_depth_zero(train):
    leaf = train.leaf_value >= 0
    assert (leaf.sum(1) == 6).all()
    assert leaf[:, :6].all()
    np.testing.assert_array_equal(train.depth == 0, leaf)
    assert (train.parents[leaf] == -1).all() and (train.ops[leaf] == -1).all()


def test_depth_cap_bounds_every_depth():
    for cap in (1, 3, 6):
        g = _sample(40, 300, depth_cap=cap)
        assert g.max_depth.max() == cap


def test_parents_are_distinct_earlier_prefix_filled_with_matching_ops(train):
    par = train.parents
    node = np.arange(train.max_nodes)[None, :, None]
    present = par >= 0
    assert (par[present] < np.broadcast_to(node, par.shape)[present]).all()
    assert (present[..., 1] <= present[..., 0]).all() and (present[..., 2] <= present[..., 1]).all()
    a, b, c = par[..., 0], par[..., 1], par[..., 2]
    assert not ((a == b) & (b >= 0)).any() and not ((a == c) & (c >= 0)).any() and not ((b == c) & (c >= 0)).any()
    np.testing.assert_array_equal(train.ops >= 0, present[..., 1:])
    assert set(np.unique(train.ops[train.ops >= 0])) == {ADD, SUB, MUL}


def test_depth_is_one_plus_max_parent_depth_and_model_order_sorts_by_depth(train):
    par, depth = train.parents, train.depth
    parent_depth = np.where(par >= 0, np.take_along_axis(depth, np.maximum(par, 0).reshape(train.batch, -1), 1)
                            .reshape(par.shape), -1)
    inner = train.leaf_value < 0
    np.testing.assert_array_equal(depth[inner], 1 + parent_depth.max(-1)[inner])
    assert (np.diff(depth, axis=1) >= 0).all()
    np.testing.assert_array_equal(compute_depth(par, train.valid), depth)


def test_values_equal_the_left_fold_recomputed_in_plain_python(train):
    for b in range(5):
        values: list[int] = []
        for j in range(train.max_nodes):
            if train.leaf_value[b, j] >= 0:
                values.append(int(train.leaf_value[b, j]))
                continue
            ps = [int(q) for q in train.parents[b, j] if q >= 0]
            ops = [int(o) for o in train.ops[b, j][:len(ps) - 1]]
            values.append(_fold([values[q] for q in ps], ops, P))
        assert values == train.value[b].tolist()
    np.testing.assert_array_equal(evaluate(train.parents, train.ops, train.leaf_value, P), train.value)


def test_names_are_distinct_pool_entries(train):
    names = np.sort(train.names, axis=1)
    assert (names >= 0).all() and (names < 128).all()
    assert (np.diff(names, axis=1) > 0).all()


@pytest.mark.parametrize("n, expected", [(32, 6.1), (128, 11.7)])
def test_uncapped_mean_depth_matches_the_reference_table(n, expected):
    g = _sample(n, 400, seed=3)
    assert abs(g.max_depth.mean() - expected) < 0.6


def test_capped_training_depths_match_the_reference_table():
    share = np.bincount(_sample(32, 2000, seed=4, depth_cap=6).max_depth, minlength=7) / 2000
    assert abs(share[6] - 0.64) < 0.05 and abs(share[5] - 0.28) < 0.05


def test_variable_sizes_pad_invalid_nodes_at_the_end():
    sizes = np.array([7, 32, 12, 20, 31])
    g = sample_graphs(sizes, 5, rng=np.random.default_rng(0), depth_cap=4)
    assert g.max_nodes == 32
    np.testing.assert_array_equal(g.valid.sum(1), sizes)
    np.testing.assert_array_equal(g.valid, np.arange(32)[None, :] < sizes[:, None])
    assert (g.names[~g.valid] == -1).all()
    for b, n in enumerate(sizes):
        sub = Graphs(g.parents[b:b + 1, :n], g.ops[b:b + 1, :n], g.leaf_value[b:b + 1, :n], g.value[b:b + 1, :n],
                     g.depth[b:b + 1, :n], g.names[b:b + 1, :n], g.n_nodes[b:b + 1], P)
        assert (sub.parents < n).all()
        np.testing.assert_array_equal(evaluate(sub.parents, sub.ops, sub.leaf_value, P), sub.value)


def test_recent_window_produces_deep_chains():
    chain = _sample(40, 50, recent=1)
    assert (chain.max_depth == 40 - 6).all()  # one candidate: every node extends the last one
    assert _sample(40, 200, recent=2).max_depth.mean() > 2 * _sample(40, 200).max_depth.mean()


def test_seeding_is_deterministic():
    a, b, c = _sample(32, 50, seed=7, depth_cap=6), _sample(32, 50, seed=7, depth_cap=6), _sample(32, 50, seed=8, depth_cap=6)
    for field in ("parents", "ops", "leaf_value", "value", "depth", "names"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.names, c.names)


def _fingerprint(g: Graphs) -> str:
    h = hashlib.sha256()
    for field in ("parents", "ops", "leaf_value", "value", "depth", "names", "n_nodes"):
        h.update(np.ascontiguousarray(getattr(g, field), dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("kw, digest", [
    (dict(n_nodes=32, batch=64, depth_cap=6), "e4348b70246faf04"),
    (dict(n_nodes=40, batch=16, task=ALL_OPS), "ea213fbbc0016b40"),
    (dict(n_nodes=np.array([7, 12, 20, 9]), batch=4, recent=3), "4e458b46b2b107de"),
])
def test_seeded_output_is_bit_identical_to_the_reference_sampler(kw, digest):
    # digests of the first (unoptimized) vectorized sampler: a seed names the same data set across versions
    assert _fingerprint(sample_graphs(rng=np.random.default_rng(2024), **kw)) == digest


def test_leaf_constants_beyond_the_modulus_are_copied_unreduced():
    g = _sample(20, 200, leaf_values=100)
    single = (g.leaf_value < 0) & (g.fan_in == 1)
    parent_value = np.take_along_axis(g.value, np.maximum(g.parents[..., 0], 0), 1)
    np.testing.assert_array_equal(g.value[single], parent_value[single])
    assert (g.value[g.fan_in >= 2] < P).all() and (g.value >= P).any()
    np.testing.assert_array_equal(evaluate(g.parents, g.ops, g.leaf_value, P), g.value)


def test_dtypes_are_int64():
    g = _sample(16, 4)
    for field in ("parents", "ops", "leaf_value", "value", "depth", "names", "n_nodes"):
        assert getattr(g, field).dtype == np.int64, field


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="more than 6 nodes"):
        _sample(6, 2)
    with pytest.raises(ValueError, match="max_fan_in"):
        _sample(10, 2, fan_in=(1, 2, 3), task=TaskConfig(max_fan_in=2))
    with pytest.raises(ValueError, match="names"):
        _sample(20, 2, task=TaskConfig(n_names=10))


def test_hand_built_graph_helpers():
    # leaves 0 (= 5) and 1 (= 7); node 2 = n0 * n1; node 3 = n2 - n0 + n1; node 4 = n1, a depth-1 copy that
    # model order moves before the depth-2 node 3
    parents = np.array([[[-1, -1, -1], [-1, -1, -1], [0, 1, -1], [2, 0, 1], [1, -1, -1]]])
    ops = np.array([[[-1, -1], [-1, -1], [MUL, -1], [SUB, ADD], [-1, -1]]])
    leaf_value = np.array([[5, 7, -1, -1, -1]])
    value = evaluate(parents, ops, leaf_value, P)
    assert value.tolist() == [[5, 7, 35 % P, ((35 % P - 5) + 7) % P, 7]]
    depth = compute_depth(parents, np.ones((1, 5), dtype=bool))
    assert depth.tolist() == [[0, 0, 1, 2, 1]]
    g = to_model_order(Graphs(parents, ops, leaf_value, value, depth, np.array([[4, 3, 2, 1, 0]]), np.array([5]), P))
    assert g.depth.tolist() == [[0, 0, 1, 1, 2]]
    assert g.names.tolist() == [[4, 3, 2, 0, 1]]
    assert g.parents.tolist() == [[[-1, -1, -1], [-1, -1, -1], [0, 1, -1], [1, -1, -1], [2, 0, 1]]]
    np.testing.assert_array_equal(evaluate(g.parents, g.ops, g.leaf_value, P), g.value)
    assert apply_op(np.array([3, 3, 3]), np.array([5, 5, 5]), np.array([ADD, SUB, MUL]), P).tolist() == [8, 21, 15]
