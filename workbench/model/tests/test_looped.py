"""The looped model: logits per factor, causality, attention paths, halting by fixed point, config errors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from workbench.errors import WorkbenchError
from workbench.model.config import ModelConfig
from workbench.model.layers import Tap, relative_buckets
from workbench.model.looped import LoopedModel
from workbench.task.config import TaskConfig
from workbench.task.graphs import sample_graphs
from workbench.task.tokens import tokenize
from workbench.testing import TINY, TINY_TASK, tiny_model
from workbench.task.vocab import F_SYNTAX, F_VALUE, PAD

TASK = TINY_TASK


def token_batch(n_nodes=(8, 12), batch: int = 2, seed: int = 0, task: TaskConfig = TASK):
    """Tokenized random graphs of the given sizes (rows right-padded to the longest)."""
    sizes = np.resize(np.asarray(n_nodes), batch)
    return tokenize(sample_graphs(sizes, batch, rng=np.random.default_rng(seed), task=task), LoopedModel(TINY, task).vocab)


def as_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).long()


class ListenEverywhere(Tap):
    """A tap that listens at every site, so attention takes its explicit (einsum) path."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, name: str, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(name)
        return x

    def active(self, name: str) -> bool:
        return True


# --- one step ---------------------------------------------------------------------------------------

def test_logits_have_one_tensor_per_factor_with_its_vocabulary_width():
    model = tiny_model()
    tb = token_batch()
    logits = model(as_tensor(tb.tokens))
    assert len(logits) == 4
    for lg, width in zip(logits, model.vocab.sizes):
        assert lg.shape == (tb.batch, tb.max_len, width)
    assert model.vocab.sizes == (7, TASK.n_names + 1, 4, TASK.modulus + 2)


def test_logits_width_of_the_value_factor_follows_n_values():
    task = TaskConfig(modulus=7, n_values=11, n_names=40)
    model = tiny_model(task=task)
    logits = model(as_tensor(token_batch(task=task).tokens))
    assert logits[F_VALUE].shape[-1] == 11 + 2


def test_changing_a_later_token_never_changes_earlier_logits():
    model = tiny_model()
    tokens = as_tensor(token_batch(n_nodes=(12,), batch=1).tokens)
    length = tokens.shape[1]
    before = model(tokens)
    for cut in (1, length // 2, length - 1):
        changed = tokens.clone()
        changed[0, cut:, F_VALUE] = (changed[0, cut:, F_VALUE] + 3) % TASK.modulus
        changed[0, cut:, 1] = (changed[0, cut:, 1] + 5) % TASK.n_names
        after = model(changed)
        for b, a in zip(before, after):
            torch.testing.assert_close(a[:, :cut], b[:, :cut], rtol=0, atol=1e-6)
        assert any(not torch.allclose(a[:, cut:], b[:, cut:]) for b, a in zip(before, after))


def test_explicit_attention_path_equals_the_fused_kernel():
    model = tiny_model()
    state = as_tensor(token_batch().tokens)
    fused, h_fused = model.step(state)
    tap = ListenEverywhere()
    explicit, h_explicit = model.step(state, tap)
    assert "blocks.1.attn.hook_pattern" in tap.seen and "blocks.0.attn.hook_result" in tap.seen
    torch.testing.assert_close(h_explicit, h_fused, rtol=1e-4, atol=1e-5)
    for a, b in zip(explicit, fused):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_explicit_pattern_is_causal_and_sums_to_one():
    model = tiny_model()
    patterns = {}

    class Grab(ListenEverywhere):
        def __call__(self, name, x):
            if name.endswith("hook_pattern"):
                patterns[name] = x
            return x

    model.step(as_tensor(token_batch().tokens), Grab())
    pattern = patterns["blocks.0.attn.hook_pattern"]  # [batch, head, query, key]
    assert torch.all(pattern.triu(1) == 0)
    torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:-1]))


def test_relative_buckets_clip_every_long_distance_to_the_last_bucket():
    buckets = relative_buckets(50, window=4, device=torch.device("cpu"))
    assert buckets.shape == (50, 50)
    assert buckets.max().item() == 3
    assert torch.all(buckets[10, :8] == 3) and buckets[10, 9].item() == 1 and buckets[10, 10].item() == 0


def test_relative_position_bias_runs_on_sequences_far_longer_than_its_window():
    cfg = replace(TINY, rel_window=4)
    model = tiny_model(cfg)
    tb = token_batch(n_nodes=(30,), batch=1)
    assert tb.max_len > 10 * cfg.rel_window
    logits = model(as_tensor(tb.tokens))
    assert all(torch.isfinite(lg).all() for lg in logits)
    assert model.blocks[0].attn.rel_bias.shape == (cfg.n_heads, 4)  # no parameter grows with the length
    out = model.run(as_tensor(tb.tokens), max_steps=3)
    assert out.final.shape == tb.tokens.shape


def test_model_is_length_agnostic_a_prefix_gives_the_same_logits_alone_or_inside_a_longer_sequence():
    model = tiny_model(replace(TINY, rel_window=4))
    tokens = as_tensor(token_batch(n_nodes=(20,), batch=1).tokens)
    full = model(tokens)
    prefix = model(tokens[:, :17])
    for a, b in zip(prefix, full):
        torch.testing.assert_close(a, b[:, :17], rtol=1e-4, atol=1e-5)


# --- the loop -------------------------------------------------------------------------------------

def one_hot_logits(state: torch.Tensor, sizes) -> list[torch.Tensor]:
    """Logits whose argmax is ``state`` in every factor."""
    return [10.0 * torch.nn.functional.one_hot(state[..., f].clamp(max=n - 1), n).float() for f, n in enumerate(sizes)]


def fake_step(model: LoopedModel, rule, calls: list | None = None):
    """A replacement for ``model.step`` whose decoded output is ``rule(state)``."""

    def step(state, tap=None, hidden=None):
        if calls is not None:
            calls.append((state.shape, hidden))
        out = rule(state)
        return one_hot_logits(out, model.vocab.sizes), torch.zeros(*state.shape[:2], model.cfg.d_model)

    return step


def test_run_stops_at_once_when_the_output_equals_the_input(monkeypatch):
    model = tiny_model()
    tb = token_batch()
    calls = []
    monkeypatch.setattr(model, "step", fake_step(model, lambda s: s.clone(), calls))
    out = model.run(as_tensor(tb.tokens), record=True)
    assert out.iterations.tolist() == [0, 0]
    assert out.converged.all()
    assert len(calls) == 1  # one step, which confirmed the fixed point
    assert torch.equal(out.final, as_tensor(tb.tokens))
    assert out.states.shape[0] == 2


def test_run_that_never_settles_is_not_converged_and_uses_every_step(monkeypatch):
    model = tiny_model()
    tb = token_batch()
    n_values = model.vocab.sizes[F_VALUE]

    def always_changes(s):
        out = s.clone()
        out[..., F_VALUE] = (s[..., F_VALUE] + 1) % n_values
        return out

    calls = []
    monkeypatch.setattr(model, "step", fake_step(model, always_changes, calls))
    out = model.run(as_tensor(tb.tokens), max_steps=5)
    assert out.iterations.tolist() == [5, 5]
    assert not out.converged.any()
    assert len(calls) == 5


def test_run_counts_the_steps_until_the_state_stops_changing(monkeypatch):
    model = tiny_model()
    tb = token_batch()
    solved = as_tensor(tb.solved())

    def solve_at_once(s):  # writes the solution in one step; then nothing changes
        return solved[: s.shape[0], : s.shape[1]].clone()

    monkeypatch.setattr(model, "step", fake_step(model, solve_at_once))
    out = model.run(as_tensor(tb.tokens), record=True)
    assert out.iterations.tolist() == [1, 1]
    assert out.converged.all()
    assert torch.equal(out.final, solved)
    assert torch.equal(out.states[1].long(), solved) and torch.equal(out.states[2].long(), solved)


def test_finished_graphs_drop_out_and_keep_their_state(monkeypatch):
    model = tiny_model()
    tb = token_batch(n_nodes=(8, 14))
    target = as_tensor(tb.solved())
    start = as_tensor(tb.tokens)
    state_rows = []

    def one_position_per_step(s):
        state_rows.append(s.shape[0])
        out = s.clone()
        # fill the first still-differing value slot of every row, so a row needs one step per gap; once
        # the short graph is done only the long one (row 1) is still in the batch
        rows = torch.arange(s.shape[0])
        full = target[-s.shape[0]:, : s.shape[1]]
        diff = (out[..., F_VALUE] != full[..., F_VALUE])
        has = diff.any(-1)
        first = diff.float().argmax(-1)
        out[rows[has], first[has], F_VALUE] = full[rows[has], first[has], F_VALUE]
        return out

    monkeypatch.setattr(model, "step", fake_step(model, one_position_per_step))
    gaps = (start[..., F_VALUE] != target[..., F_VALUE]).sum(-1)
    assert gaps[0] < gaps[1]
    out = model.run(start, max_steps=100)
    assert out.iterations.tolist() == gaps.tolist()
    assert out.converged.all()
    assert torch.equal(out.final, target)
    assert state_rows[-1] == 1  # the shorter graph dropped out of the batch


def test_min_steps_keeps_looping_past_an_early_fixed_point(monkeypatch):
    model = tiny_model()
    calls = []
    monkeypatch.setattr(model, "step", fake_step(model, lambda s: s.clone(), calls))
    out = model.run(as_tensor(token_batch().tokens), min_steps=3, record=True)
    assert out.converged.all()
    assert out.iterations.tolist() == [0, 0]  # steps until the state stopped changing: forced steps don't count
    assert len(calls) == 4 and out.states.shape[0] == 5


def test_default_cap_is_twice_the_number_of_equations_of_the_largest_graph(monkeypatch):
    model = tiny_model()
    tb = token_batch(n_nodes=(8, 11))
    n_eq = (tb.tokens[..., F_SYNTAX] == 5).sum(1).max()  # '=' tokens
    assert n_eq == 11
    n_values = model.vocab.sizes[F_VALUE]

    def always_changes(s):
        out = s.clone()
        out[..., F_VALUE] = (s[..., F_VALUE] + 1) % n_values
        return out

    monkeypatch.setattr(model, "step", fake_step(model, always_changes))
    out = model.run(as_tensor(tb.tokens))
    assert out.iterations.tolist() == [22, 22]
    assert not out.converged.any()


def test_record_keeps_the_input_as_state_zero_and_one_state_per_step():
    model = tiny_model()
    tokens = as_tensor(token_batch().tokens)
    out = model.run(tokens, record=True, max_steps=4)
    assert out.states is not None and out.states.dtype == torch.int16
    assert torch.equal(out.states[0].long(), tokens)
    assert out.states.shape[1:] == tokens.shape
    assert 2 <= out.states.shape[0] <= 5
    assert torch.equal(out.states[-1].long(), out.final)
    assert model.run(tokens, max_steps=2).states is None


def test_run_keeps_padding_as_padding():
    model = tiny_model()
    tb = token_batch(n_nodes=(8, 14))
    out = model.run(as_tensor(tb.tokens), max_steps=3)
    pad = torch.tensor(model.vocab.pad_token())
    short = int(tb.length[0])
    assert short < tb.max_len
    assert torch.all(out.final[0, short:] == pad)
    assert torch.all(out.final[0, short:, F_SYNTAX] == PAD)


def test_run_matches_repeated_decoded_steps():
    model = tiny_model()
    tokens = as_tensor(token_batch(n_nodes=(10,), batch=1).tokens)
    out = model.run(tokens, max_steps=3, min_steps=3, record=True)
    state = tokens
    for t in range(3):
        state = model.decode(model(state))
        assert torch.equal(out.states[t + 1].long(), state)


def test_feedforward_model_runs_exactly_one_step(monkeypatch):
    model = tiny_model(replace(TINY, recurrence="feedforward"))
    tokens = as_tensor(token_batch().tokens)
    calls = []
    real = model.step
    monkeypatch.setattr(model, "step", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = model.run(tokens, max_steps=10, min_steps=5, record=True)
    assert len(calls) == 1
    assert out.iterations.tolist() == [1, 1] and out.converged.all()
    assert out.states.shape[0] == 2


def test_feedforward_model_has_distinct_blocks():
    model = tiny_model(replace(TINY, recurrence="feedforward"))
    assert not torch.equal(model.blocks[0].attn.W_Q, model.blocks[1].attn.W_Q)


def test_continuous_latent_feeds_the_hidden_state_forward(monkeypatch):
    model = tiny_model(replace(TINY, latent="continuous"))
    tokens = as_tensor(token_batch().tokens)
    hiddens = []
    real = model.step

    def spy(state, tap=None, hidden=None):
        hiddens.append(hidden)
        return real(state, hidden=hidden)

    monkeypatch.setattr(model, "step", spy)
    out = model.run(tokens, max_steps=3, min_steps=3)
    assert out.final.shape == tokens.shape
    assert hiddens[0] is None
    assert all(h is not None and h.shape[-1] == TINY.d_model for h in hiddens[1:])
    assert len(hiddens) == 3


def test_continuous_latent_step_accepts_a_hidden_state():
    model = tiny_model(replace(TINY, latent="continuous"))
    tokens = as_tensor(token_batch().tokens)
    logits, h = model.step(tokens)
    logits2, h2 = model.step(tokens, hidden=h)
    assert h2.shape == h.shape and not torch.allclose(h2, h)


# --- config ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, fragment", [
    ({"recurrence": "recurrent"}, "recurrence"),
    ({"latent": "fuzzy"}, "latent"),
    ({"supervision": "none"}, "supervision"),
    ({"corruption_strategy": "random"}, "corruption_strategy"),
    ({"d_model": 18, "n_heads": 4}, "multiple of n_heads"),
    ({"n_heads": 0}, "must be positive"),
    ({"supervision": "end_to_end"}, "end-to-end"),
    ({"n_layers": 0}, "positive"),
    ({"corruption_prob": 1.5}, "[0, 1]"),
])
def test_bad_model_config_raises_a_one_line_workbench_error(kwargs, fragment):
    with pytest.raises(WorkbenchError) as info:
        ModelConfig(**kwargs)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_end_to_end_is_allowed_with_a_continuous_latent_or_feedforward():
    ModelConfig(supervision="end_to_end", latent="continuous")
    ModelConfig(supervision="end_to_end", recurrence="feedforward")


def test_model_config_round_trips_and_rejects_unknown_keys():
    assert ModelConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(WorkbenchError, match="unknown model config keys"):
        ModelConfig.from_dict({**TINY.to_dict(), "n_loops": 3})


def test_derived_sizes_and_mechanisms():
    assert TINY.d_head == 8 and TINY.mlp_width == 32 and ModelConfig(d_model=16, n_heads=2).mlp_width == 64
    assert TINY.mechanisms["error_correction"] == "off"
    assert "previous" in ModelConfig(corruption_prob=0.2, corruption_strategy="previous").mechanisms["error_correction"]


# --- the role embedding (a marker on every defining position) ------------------------------------------

def test_defining_positions_are_the_variables_right_after_equals():
    from workbench.model.looped import defining_positions
    from workbench.task.vocab import EQUALS, F_VARIABLE, VARIABLE

    tokens = as_tensor(token_batch().tokens)
    marked = defining_positions(tokens)
    syntax = tokens[..., F_SYNTAX]
    assert marked.shape == syntax.shape
    # one definition per equation: exactly as many as '=' signs, each one step after an '='
    assert torch.equal(marked.sum(1), (syntax == EQUALS).sum(1))
    b, p = marked.nonzero(as_tuple=True)
    assert (syntax[b, p - 1] == EQUALS).all() and (syntax[b, p] == VARIABLE).all()
    assert (tokens[b, p, F_VARIABLE] < TASK.n_names).all()


def test_a_zero_role_embedding_changes_nothing_and_a_trained_one_marks_definitions():
    plain = tiny_model()
    marked = LoopedModel(replace(TINY, role_embedding=True), TASK).eval()
    missing = marked.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing == ["embed_role.weight"]
    tokens = as_tensor(token_batch().tokens)
    with torch.no_grad():
        for a, b in zip(plain(tokens), marked(tokens)):
            assert torch.equal(a, b)
        marked.embed_role.weight[1] = 5.0
        changed = [not torch.equal(a, b) for a, b in zip(plain(tokens), marked(tokens))]
    assert any(changed)
