"""Attention in query blocks (CPU inference) against a plain softmax of the full score table."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workbench.model import layers
from workbench.model.config import ModelConfig
from workbench.model.layers import QUERY_BLOCK, RelativeAttention, Tap, blocked_attention, full_table_attention
from workbench.model.looped import LoopedModel
from workbench.task.config import TaskConfig
from workbench.task.graphs import sample_graphs
from workbench.task.tokens import tokenize

LENGTHS = (1, QUERY_BLOCK - 1, QUERY_BLOCK, QUERY_BLOCK + 1, 200)  # below, at, past and not a multiple of a block
CFG = ModelConfig(n_layers=2, n_heads=2, d_model=16, d_mlp=32, rel_window=8, rel_bias_scale=3.0)


def reference(q, k, v, bias, scale):
    """softmax(scale * q.k + bias) @ v from the whole [batch, head, query, key] table, written out plainly."""
    scores = torch.einsum("bqhd,bkhd->bhqk", q.double(), k.double()) * scale + bias.double()
    return torch.einsum("bhqk,bkhd->bqhd", torch.softmax(scores, -1), v.double())  # [batch, pos, head, d_head]


def causal_bias(n_heads: int, n_pos: int, gen: torch.Generator) -> torch.Tensor:
    bias = 3 * torch.randn(n_heads, n_pos, n_pos, generator=gen)
    return bias.masked_fill(torch.ones(n_pos, n_pos, dtype=torch.bool).triu(1), float("-inf"))


@pytest.mark.parametrize("n_pos", LENGTHS)
@pytest.mark.parametrize("block", [QUERY_BLOCK, 7])
def test_blocked_attention_equals_a_softmax_of_the_full_table(n_pos, block):
    gen = torch.Generator().manual_seed(n_pos)
    q, k, v = (2 * torch.randn(3, n_pos, 2, 8, generator=gen) for _ in range(3))  # batch 3, 2 heads, d_head 8
    bias, scale = causal_bias(2, n_pos, gen), 1 / math.sqrt(8)
    with torch.no_grad():
        z = blocked_attention(q, k, v, bias, scale, block=block)
    assert z.shape == (3, n_pos, 2, 8)
    torch.testing.assert_close(z.double(), reference(q, k, v, bias, scale), rtol=1e-5, atol=1e-5)


def attention(seed: int = 0) -> RelativeAttention:
    torch.manual_seed(seed)
    attn = RelativeAttention(CFG).eval()
    with torch.no_grad():
        attn.rel_bias.normal_()
    return attn


@pytest.mark.parametrize("n_pos", LENGTHS)
def test_inference_takes_the_blocked_path_and_agrees_with_the_full_table_and_the_fused_kernel(n_pos, monkeypatch):
    attn = attention()
    x = torch.randn(3, n_pos, CFG.d_model, generator=torch.Generator().manual_seed(1))
    calls = []
    spy = lambda *a, **kw: calls.append(1) or blocked_attention(*a, **kw)  # noqa: E731
    monkeypatch.setattr(layers, "blocked_attention", spy)
    with torch.no_grad():
        blocked = attn(x)
        assert len(calls) == 1
        with full_table_attention():
            table = attn(x)
        assert len(calls) == 1  # the switch forces the full table
        blocked_again = attn(x)  # and is off again after the block
        assert len(calls) == 2
    fused = attn(x).detach()  # with gradients: SDPA
    assert len(calls) == 2
    torch.testing.assert_close(blocked, table, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(blocked, fused, rtol=1e-5, atol=1e-5)
    assert torch.equal(blocked, blocked_again)


class Listening(Tap):
    """A tap with some sites active; records what passes through them."""

    def __init__(self, *sites: str) -> None:
        self.sites, self.seen = sites, {}

    def __call__(self, name, x):
        if name in self.sites:
            self.seen[name] = x
        return x

    def active(self, name):
        return name in self.sites


@pytest.mark.parametrize(("sites", "blocked"), [(("hook_pattern",), False), (("hook_attn_scores",), False),
                                                (("hook_attn_scores", "hook_pattern"), False),
                                                (("hook_z",), True), (("hook_result",), True)])
def test_a_hook_on_scores_or_pattern_gets_the_full_table_and_z_and_result_are_served_by_blocks(sites, blocked, monkeypatch):
    attn = attention()
    x = torch.randn(2, 100, CFG.d_model, generator=torch.Generator().manual_seed(2))
    calls = []
    monkeypatch.setattr(layers, "blocked_attention", lambda *a, **kw: calls.append(1) or blocked_attention(*a, **kw))
    tap = Listening(*sites)
    with torch.no_grad():
        out = attn(x, tap)
        assert len(calls) == int(blocked)
        plain = attn(x)
    assert set(tap.seen) == set(sites)
    if "hook_pattern" in sites:
        assert tap.seen["hook_pattern"].shape == (2, CFG.n_heads, 100, 100)
    torch.testing.assert_close(out, plain, rtol=1e-5, atol=1e-5)


def test_decoded_states_are_identical_with_and_without_blocks():
    task = TaskConfig(modulus=7, n_names=40)
    torch.manual_seed(0)
    model = LoopedModel(CFG, task).eval()
    graphs = sample_graphs(np.array([14, 24, 30]), 3, rng=np.random.default_rng(0), task=task)
    tb = tokenize(graphs, model.vocab)
    tokens, lengths = torch.from_numpy(tb.tokens).long(), torch.from_numpy(tb.length)
    assert tokens.shape[1] > 2 * QUERY_BLOCK  # several blocks, the last one partial
    blocked = model.run(tokens, lengths=lengths, max_steps=5, min_steps=5, record=True)
    with full_table_attention():
        table = model.run(tokens, lengths=lengths, max_steps=5, min_steps=5, record=True)
    assert torch.equal(blocked.states, table.states)
    assert (blocked.states[1:] != blocked.states[:1]).any()  # the steps did change the state


def test_a_shorter_length_gets_the_corner_of_the_kept_bias_table_bit_for_bit():
    attn = attention()
    with torch.no_grad():
        long = attn.position_bias(200)
        short = attn.position_bias(65)
        assert short.data_ptr() == attn.position_bias(200).data_ptr() == long.data_ptr()  # kept, not rebuilt
    assert torch.equal(short, attn.position_bias(65).detach())  # with gradients: built afresh
    with torch.no_grad():
        attn.rel_bias.add_(1.0)  # new weights: the kept table is stale
        assert not torch.equal(attn.position_bias(65), short)


def test_a_pattern_hook_gets_the_full_causal_pattern_from_the_blocks_and_its_edits_reach_z():
    """The pattern a hook sees equals the full table's (zeros above the diagonal, rows summing to 1), and z is
    read from what the hook returns: an edited pattern, even one that looks ahead, changes the output."""
    attn = attention()
    x = torch.randn(2, QUERY_BLOCK + 37, CFG.d_model, generator=torch.Generator().manual_seed(5))
    tap = Listening("hook_pattern")
    with torch.no_grad():
        out = attn(x, tap)
        with full_table_attention():
            table_tap = Listening("hook_pattern")
            table_out = attn(x, table_tap)
    pattern = tap.seen["hook_pattern"]
    torch.testing.assert_close(pattern, table_tap.seen["hook_pattern"], rtol=1e-5, atol=1e-6)
    assert not pattern.triu(1).any() and torch.allclose(pattern.sum(-1), torch.ones(()))
    torch.testing.assert_close(out, table_out, rtol=1e-5, atol=1e-5)

    class LookLast(Listening):  # every query reads only the last key: the future, which causal attention never sees
        def __call__(self, name, x):
            edited = torch.zeros_like(x)
            edited[..., -1] = 1.0
            return edited

    with torch.no_grad():
        edited = attn(x, LookLast("hook_pattern"))
    assert not torch.allclose(edited, out)
    torch.testing.assert_close(edited[:, 0], edited[:, -1])  # every position got the same (the last value)


@pytest.mark.parametrize("sites", [("hook_attn_scores",), ("hook_pattern",), ("hook_attn_scores", "hook_pattern")])
def test_hooked_tables_come_from_the_blocks_and_equal_the_full_tables(sites):
    attn = attention()
    x = torch.randn(2, 2 * QUERY_BLOCK + 9, CFG.d_model, generator=torch.Generator().manual_seed(6))
    tap, table_tap = Listening(*sites), Listening(*sites)
    with torch.no_grad():
        out = attn(x, tap)
        with full_table_attention():
            table_out = attn(x, table_tap)
    for site in sites:
        torch.testing.assert_close(tap.seen[site], table_tap.seen[site], rtol=1e-5, atol=1e-5)  # -inf / 0 above the diagonal too
    torch.testing.assert_close(out, table_out, rtol=1e-5, atol=1e-5)


class InPlace(Listening):
    """Edits a table in place and returns nothing new (as a TransformerLens hook that writes into its input does)."""

    def __init__(self, site, edit):
        super().__init__(site)
        self.edit = edit

    def __call__(self, name, x):
        if name in self.sites:
            self.edit(x)
        return x


@pytest.mark.parametrize(("site", "edit"), [
    ("hook_pattern", lambda p: p.mul_(0.5)),  # half of every pattern row: z halves
    ("hook_attn_scores", lambda s: s[:, 0].fill_(0.0)),  # head 0 attends to every key alike, the future included
])
def test_an_in_place_edit_of_a_hooked_table_reaches_z(site, edit):
    attn = attention()
    x = torch.randn(2, QUERY_BLOCK + 20, CFG.d_model, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        plain = attn(x)
        edited_out = attn(x, InPlace(site, edit))
        with full_table_attention():
            table_out = attn(x, InPlace(site, edit))
    assert not torch.allclose(edited_out, plain, atol=1e-3)
    torch.testing.assert_close(edited_out, table_out, rtol=1e-5, atol=1e-5)


def test_blocks_of_fewer_graphs_than_the_batch_give_the_same_attention_and_tables(monkeypatch):
    gen = torch.Generator().manual_seed(11)
    q, k, v = (2 * torch.randn(5, QUERY_BLOCK + 30, 2, 8, generator=gen) for _ in range(3))
    bias, scale = causal_bias(2, QUERY_BLOCK + 30, gen), 1 / math.sqrt(8)
    with torch.no_grad():
        whole = layers.blocked_tables(q, k, v, bias, scale, scores=True, pattern=True)
        monkeypatch.setattr(layers, "BLOCK_BYTES", 1)  # one graph per block: five batch chunks
        chunked = layers.blocked_tables(q, k, v, bias, scale, scores=True, pattern=True)
    for a, b in zip(whole, chunked):
        assert torch.equal(a, b)
    torch.testing.assert_close(chunked[0].double(), reference(q, k, v, bias, scale), rtol=1e-5, atol=1e-5)
