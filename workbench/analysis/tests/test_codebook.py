"""Codebook usage: transitions, invalid combinations (none in a teacher state), histograms."""

from __future__ import annotations

import numpy as np

from workbench.analysis import codebook


def test_transition_kinds_are_exhaustive():
    empty = 9
    before = np.array([9, 9, 9, 1, 1, 2, 2, 2, 3])
    after = np.array([9, 1, 2, 1, 2, 1, 2, 4, 9])
    counts = codebook.transitions(before, after, np.ones(9, dtype=int), empty)
    assert sum(counts.values()) == 9
    assert counts == {"empty->empty": 1, "empty->right": 1, "empty->wrong": 1, "right->right": 1, "right->wrong": 1,
                      "wrong->right": 1, "wrong->same": 1, "wrong->other": 1, "value->empty": 1}


def test_a_teacher_state_is_valid(tb):
    for t in (-1, 0, 2, int(tb.max_depth.max())):
        bad = codebook.invalid_counts(tb.state(t), tb, 7)
        assert all(v == 0 for v, _ in bad.values()), bad
    state = tb.solved()
    state[0, 0, 0] = 6  # the first token's syntax changed
    assert codebook.invalid_counts(state, tb, 7)["syntax changed"][0] == 1


def test_run_histograms_sum_to_one(model):
    results, summary = codebook.run(model, n_nodes=10, count=8, n_steps=3)
    for h, n in zip(results["histograms"], results["sizes"]):
        assert h.shape == (3, n)
        np.testing.assert_allclose(h.sum(1), 1.0)
    np.testing.assert_allclose(sum(np.asarray(v) for v in results["transitions"].values()), 1.0)
    assert len(results["entropy"]) == 4 and summary.unused_value_codes >= 0
