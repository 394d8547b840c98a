"""Routing scores on hand-made attention patterns, roles, and a run on the tiny model."""

from __future__ import annotations

import numpy as np
import torch

from workbench.analysis import routing
from workbench.analysis.activations import sample_batch


def handmade_patterns(tb, target: str):
    """[batch, head=2, q, k]: head 0 sends every inner rhs to its operand names (copy) or definitions (induction)."""
    B, P = tb.batch, tb.max_len
    pat = torch.zeros(B, 2, P, P)
    pat[:, 1] = 1.0 / P
    g = tb.graphs
    for b in range(B):
        for n in range(int(g.n_nodes[b])):
            q = tb.rhs_pos[b, n]
            parents = [p for p in g.parents[b, n] if p >= 0]
            if not parents:
                pat[b, 0, q, q - 2] = 1.0
                continue
            keys = tb.operand_pos[b, n, :len(parents)] if target == "copy" else tb.rhs_pos[b, parents]
            pat[b, 0, q, torch.as_tensor(keys)] = 1.0 / len(parents)
    return pat


def test_scores_of_a_perfect_copy_head_and_a_perfect_induction_head(model):
    tb = sample_batch(model, 10, 6, seed=0)
    s = routing.routing_scores([handmade_patterns(tb, "copy"), handmade_patterns(tb, "induction")], tb, step=1)
    copy, ind = s["copy"] / s["count"], s["ind"] / s["count"]
    np.testing.assert_allclose([copy[0, 0], ind[1, 0]], 1.0, atol=1e-6)
    assert copy[1, 0] < 0.01 and ind[0, 0] < 0.01
    assert np.isclose(s["constant"][0, 0] / s["leaf_count"], 1.0)
    by_slot = s["copy_s"][0, 0] / np.maximum(s["count_s"], 1)  # [fan-in, slot]: 1/k to each of k slots
    for k in range(3):
        if s["count_s"][k, 0]:
            np.testing.assert_allclose(by_slot[k, :k + 1], 1.0 / (k + 1), atol=1e-6)


def test_run_shapes_roles_and_stability(model):
    results, summary = routing.run(model, n_nodes=10, count=8, n_steps=3, batch_size=4)
    assert results["copy"].shape == (3, 2, 4) and results["copy_by_slot"].shape == (3, 2, 4, 3, 3)
    assert len(results["roles"]) == 8
    assert all(r["role"] in routing.ROLES for r in results["roles"])
    assert 0 <= summary["uniform baseline"] <= 1
    assert np.nanmax(results["copy"]) <= 1 + 1e-6
