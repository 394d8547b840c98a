"""The fan-out analysis: recurrence counts, lookup mass per occurrence, bins and the free-run table."""

from __future__ import annotations

import numpy as np
import torch

from workbench.analysis import fanout
from workbench.task.encoding import encode
from workbench.hooks.names import hook_name
from workbench.hooks.tl_wrapper import hooked

CHAIN = "w = 2\nv0 = 1\nv1 = v0 + w\nv2 = v1 + w\nv3 = v2 + w\nv4 = v3 + w"


def test_recurrence_counts_earlier_uses_of_the_same_name(model):
    tb, _ = encode(CHAIN, model.task)
    counts = fanout.recurrence_counts(tb)
    operand = (tb.node[0] >= 0) & ~tb.is_rhs[0]
    assert (counts[0][~operand] == -1).all()
    names = tb.graphs.names[0]  # node -> pool index
    w = names[np.flatnonzero(tb.graphs.leaf_value[0] == 2)[0]]
    uses_of_w = [c for pos, c in enumerate(counts[0]) if operand[pos] and names[tb.node[0, pos]] == w]
    assert uses_of_w == [0, 1, 2, 3]  # the k-th use of w has k earlier look-alikes
    others = [c for pos, c in enumerate(counts[0]) if operand[pos] and names[tb.node[0, pos]] != w]
    assert others == [0, 0, 0, 0]  # each v_i is read once


def test_lookup_mass_is_the_pattern_from_each_use_onto_its_definition(model):
    res = fanout.measure_lookup(model, CHAIN)
    assert res.mass.shape == (8, model.cfg.n_layers, model.cfg.n_heads)
    assert sorted(res.recurrence.tolist()) == [0, 0, 0, 0, 0, 1, 2, 3]
    # the same number read straight from a cached run on the solved state
    tb, _ = encode(CHAIN, model.task)
    _, cache = hooked(model).run_with_cache(torch.from_numpy(tb.solved()).long(), n_steps=1)
    pattern = cache[hook_name(0, "attn.hook_pattern", 1)][0]  # [head, query, key]
    b, q = np.nonzero(fanout.recurrence_counts(tb) >= 0)
    d = tb.rhs_pos[0, tb.node[0, q[0]]]
    np.testing.assert_allclose(res.mass[0, 1], pattern[:, q[0], d].numpy(), rtol=1e-5)
    assert res.readout_right.dtype == bool and all(0 <= h < model.cfg.n_heads for _, h in res.lookup_heads)


def test_bins_cover_every_occurrence_and_lookup_heads_follow_the_threshold(model):
    res = fanout.FanOutLookup(recurrence=np.array([0, 0, 1, 5, 40]),
                              mass=np.array([[[0.9, 0.1]], [[0.8, 0.1]], [[0.7, 0.0]], [[0.5, 0.2]], [[0.2, 0.2]]]),
                              readout_right=np.array([True, True, True, True, False]), lookup_heads=[(0, 0)])
    rows = res.binned()
    assert [r["bin"] for r in rows] == ["0", "1", "4-7", "32-47"] and sum(r["count"] for r in rows) == 5
    assert rows[0]["lookup_mass"] == np.float32(0.85) or abs(rows[0]["lookup_mass"] - 0.85) < 1e-9
    assert [r["readout_acc"] for r in rows] == [1.0, 1.0, 1.0, 0.0]
    none = fanout.FanOutLookup(res.recurrence, res.mass, res.readout_right, [])
    assert np.isnan(none.lookup_mass()).all()


def test_free_run_table_and_figure(model):
    rows = fanout.free_run(model, [CHAIN, "a = 1\nb = a + a"])
    assert rows and all(0 <= r["right"] <= 1 and 0 <= r["empty"] <= 1 for r in rows)
    fig = fanout.figure({"tiny": fanout.measure_lookup(model, CHAIN)}, {"tiny": rows})
    assert [t.name for t in fig.data][:1] == ["tiny"] and len(fig.data) == 3


def test_sharpening_scales_the_first_layers_content_scores_and_restores_the_weights(model):
    tb, _ = encode(CHAIN, model.task)
    tokens = torch.from_numpy(tb.solved()).long()
    site = hook_name(0, "attn.hook_attn_scores", 0)
    hm = hooked(model)
    _, plain = hm.run_with_cache(tokens, n_steps=1, names_filter=[site, hook_name(0, "attn.hook_q", 0)])
    before = model.blocks[0].attn.W_Q.detach().clone()
    with fanout.sharpened(model, 2.0):
        _, sharp = hm.run_with_cache(tokens, n_steps=1, names_filter=[site])
    torch.testing.assert_close(model.blocks[0].attn.W_Q, before)
    # scores = q.k / sqrt(d) + position bias: only the content part doubles
    bias = plain[site] - torch.einsum("bqhd,bkhd->bhqk", plain[hook_name(0, "attn.hook_q", 0)],
                                      hm.run_with_cache(tokens, n_steps=1, names_filter=[hook_name(0, "attn.hook_k", 0)])[1][hook_name(0, "attn.hook_k", 0)]) / model.cfg.d_head ** 0.5
    finite = torch.isfinite(plain[site])
    torch.testing.assert_close((sharp[site] - bias)[finite], 2 * (plain[site] - bias)[finite], rtol=1e-4, atol=1e-4)


def test_first_errors_name_the_first_step_that_leaves_the_one_step_map(model):
    """An untrained model errs at once; an oracle stepping exactly never errs."""
    from workbench.training.batches import one_step_values

    errors = fanout.first_errors(model, [CHAIN, "a = 1\nb = a + a"])
    assert errors and all(e["step"] >= 0 and e["node"] >= 0 and e["recurrence"] >= -1 for e in errors)
    assert len({e["graph"] for e in errors}) == len(errors)  # one entry per graph: the first error only

    tb, _ = encode(CHAIN, model.task)

    class Oracle(torch.nn.Module):
        def forward(self, state):  # the exact one-step map, as a stand-in for the model's step
            out = state.clone()
            out[..., 3] = torch.from_numpy(one_step_values(tb, state.numpy(), model.task.modulus))
            return out

    oracle = Oracle()
    original = model.step

    def exact_step(state, tap=None, hidden=None):
        logits = [torch.nn.functional.one_hot(oracle(state)[..., f], n).float() * 10
                  for f, n in enumerate(model.vocab.sizes)]
        return logits, None

    model.step = exact_step
    try:
        assert fanout.first_errors(model, CHAIN) == []
    finally:
        model.step = original
