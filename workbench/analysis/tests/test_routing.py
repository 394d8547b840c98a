"""Routing measures pinned on hand-built attention patterns whose right answer is known, the derived
roles, the causal checks (on a model whose circuit we build by hand), and a run on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.analysis import routing
from workbench.analysis.activations import sample_batch
from workbench.task.vocab import F_SYNTAX, PAD


def handmade(tb, kind: str) -> torch.Tensor:
    """[batch, head=2, q, k]: head 0 routes perfectly for ``kind``; head 1 attends uniformly (causally)."""
    B, P = tb.batch, tb.max_len
    pat = torch.zeros(B, 2, P, P)
    causal = torch.ones(P, P).tril()
    pat[:, 1] = causal / causal.sum(-1, keepdim=True)
    pat[:, 0] = torch.eye(P)  # by default a head looks at itself
    lo = routing.Layout.of(tb)
    if kind == "lookup":
        pat[lo.op_b, 0, lo.op_q] = 0.0
        pat[lo.op_b, 0, lo.op_q, lo.op_def] = 1.0
    else:
        keys = lo.nd_ops if kind == "gather" else lo.nd_defs
        k = (keys >= 0).sum(1)
        pat[lo.nd_b, 0, lo.nd_q] = 0.0
        for s in range(3):
            has = keys[:, s] >= 0
            pat[lo.nd_b[has], 0, lo.nd_q[has], keys[has, s]] = 1.0 / torch.from_numpy(k[has]).float()
    return pat


def solved_filled(tb):
    return routing.filled_positions(tb.solved(), tb.vocab)


@pytest.mark.parametrize("kind, measure", [("lookup", "operand_lookup"), ("gather", "gather"), ("induction", "induction")])
def test_a_perfect_head_scores_one_on_its_measure_and_uniform_attention_scores_little(model, kind, measure):
    tb = sample_batch(model, 12, 6, seed=1)
    sums = routing.measure_step([handmade(tb, kind)], routing.Layout.of(tb), solved_filled(tb))
    mean = {m: sums[m][0][0] / sums[m][1] for m in routing.MEASURES}  # [head]
    assert mean[measure][0] == pytest.approx(1.0)
    assert mean[measure][1] < 0.1  # uniform attention over a 12-node sequence
    others = [m for m in ("operand_lookup", "gather", "induction") if m != measure]
    assert all(mean[m][0] < 0.05 for m in others)


def test_self_and_syntax_mass_of_handmade_heads(model):
    tb = sample_batch(model, 10, 4, seed=2)
    layout = routing.Layout.of(tb)
    sums = routing.measure_step([handmade(tb, "lookup")], layout, solved_filled(tb))
    self_mass = sums["self"][0][0] / sums["self"][1]
    n_real, n_ops = int(layout.real.sum()), len(layout.op_b)
    assert self_mass[0] == pytest.approx((n_real - n_ops) / n_real)  # every position but the operand tokens
    syntax = sums["syntax"][0][0] / sums["syntax"][1]
    assert syntax[0] == pytest.approx(layout.syntax_key.sum() / n_real)  # syntax positions look at themselves


def test_only_queries_whose_source_is_filled_count(model):
    tb = sample_batch(model, 10, 4, seed=3)
    layout = routing.Layout.of(tb)
    nothing = routing.filled_positions(tb.tokens, tb.vocab)  # the input state: no value written yet
    sums = routing.measure_step([handmade(tb, "lookup")], layout, nothing)
    assert sums["operand_lookup"][1] == 0 and sums["gather"][1] == 0
    leaves_only = routing.filled_positions(tb.state(0), tb.vocab)
    sums = routing.measure_step([handmade(tb, "lookup")], layout, leaves_only)
    leaf_defs = tb.depth[layout.op_b, layout.op_def] == 0
    assert sums["operand_lookup"][1] == int(leaf_defs.sum())


def test_roles_come_from_the_largest_measure_over_the_threshold():
    T, L, H = 3, 2, 3
    m = {k: np.zeros((T, L, H)) for k in routing.MEASURES}
    m["operand_lookup"][:, 0, 0] = 0.9
    m["gather"][:, 1, 1] = 0.6
    m["induction"][:2, 1, 2] = 0.5
    m["induction"][2, 1, 2] = 0.1  # the role lapses at the last step
    slot = np.zeros((T, L, H, 3))
    slot[:, 1, 1, 2] = 0.6
    roles = {(r["layer"], r["head"]): r for r in routing.head_roles(m, slot)}
    assert roles[(0, 0)]["role"] == "lookup" and roles[(0, 0)]["stability"] == 1.0
    assert roles[(1, 1)]["role"] == "gather" and roles[(1, 1)]["slot"] == 2
    assert roles[(1, 2)]["role"] == "induction" and roles[(1, 2)]["steps"] == ["induction", "induction", "other"]
    assert roles[(0, 1)]["role"] == "other"


def test_causal_verdicts_separate_used_backup_and_idle_heads():
    roles = [{"layer": 0, "head": h, "role": "lookup"} for h in range(3)] + [{"layer": 1, "head": 0, "role": "other"}]
    effects = {"zero": np.zeros((2, 2, 3)), "mean": np.zeros((2, 2, 3))}
    effects["zero"][:, 0, 0] = 0.5  # head 0 matters alone
    verdicts = routing.causal_verdicts(roles, effects, {"L0 lookup": 0.9, "L0 lookup (weak)": 0.4})
    assert [v["verdict"] for v in verdicts] == ["used", "used as a group", "used as a group", "-"]
    idle = routing.causal_verdicts(roles, effects, {"L0 lookup": 0.9, "L0 lookup (weak)": 0.0})
    assert [v["verdict"] for v in idle][:3] == ["used", "attends, not used", "attends, not used"]


def test_ablating_a_head_changes_only_that_heads_output(model):
    tb = sample_batch(model, 10, 4, seed=4)
    state = tb.state(0)
    clean = routing.Capture(patterns=False)
    routing.one_step(model, state, clean)
    real = torch.from_numpy(tb.tokens[..., F_SYNTAX] != PAD)
    means = {layer: z[real].mean(0) for layer, z in clean.z.items()}
    for mode in ("zero", "mean"):
        ablated = routing.Capture(patterns=False, edit=routing.head_ablation([(0, 1)], mode, means))
        routing.one_step(model, state, ablated)
        z0, z1 = clean.z[0], ablated.z[0]
        assert torch.equal(z0[..., 0, :], z1[..., 0, :])
        expected = torch.zeros_like(z1[..., 1, :]) if mode == "zero" else means[0][1].expand_as(z1[..., 1, :])
        assert torch.allclose(z1[..., 1, :], expected)


def test_ablation_of_a_heads_output_at_some_positions_only(model):
    tb = sample_batch(model, 10, 2, seed=5)
    where = np.zeros(tb.tokens.shape[:2], dtype=bool)
    where[:, 3] = True
    cap = routing.Capture(patterns=False, edit=routing.head_ablation([(0, 0)], "zero", positions=where))
    clean = routing.Capture(patterns=False)
    routing.one_step(model, tb.state(0), cap)
    routing.one_step(model, tb.state(0), clean)
    assert torch.all(cap.z[0][:, 3, 0] == 0) and torch.equal(cap.z[0][:, 4, 0], clean.z[0][:, 4, 0])


def test_run_on_the_tiny_model_has_every_measure_role_and_causal_check(model):
    results, summary = routing.run(model, n_nodes=10, count=8, n_steps=3, batch_size=4)
    T, L, H = 3, model.cfg.n_layers, model.cfg.n_heads
    for m in routing.MEASURES:
        assert np.asarray(results[m], dtype=float).shape == (T, L, H)
    assert np.asarray(results["ablation"]["zero"], dtype=float).shape == (T, L, H)
    assert len(results["roles"]) == L * H and all(r["role"] in routing.ROLES for r in results["roles"])
    assert all("verdict" in r for r in results["roles"])
    assert 0 <= summary.max_operand_lookup <= 1 + 1e-6


def test_the_causal_checks_stay_importable_from_routing():
    from workbench.analysis import routing_checks

    for name in routing_checks.__all__:
        assert getattr(routing, name) is getattr(routing_checks, name)
