"""The TransformerLens wrapper: per-step hook points, caches with every step, edits, shared weights."""

from __future__ import annotations

import pytest
import torch

from workbench.errors import WorkbenchError
from workbench.hooks import hook_name, hooked, sites_filter
from workbench.hooks.names import forward_order, step_names
from workbench.model.config import ModelConfig
from workbench.model.looped import LoopedModel
from workbench.task.vocab import F_VALUE

from .conftest import TASK


def identity_model() -> LoopedModel:
    """A model whose every step copies its input state (so every graph converges at step 0)."""
    sizes = LoopedModel(ModelConfig(n_layers=1, n_heads=2, d_model=2), TASK).vocab.sizes
    width = sum(sizes) + sum(sizes) % 2
    model = LoopedModel(ModelConfig(n_layers=1, n_heads=2, d_model=width), TASK).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        start = 0
        for f, n in enumerate(sizes):
            model.embed.W_E[f].weight[:, start:start + n] = torch.eye(n)
            model.unembed.W_U[f].weight[:, start:start + n] = 10 * torch.eye(n)
            start += n
        model.ln_final.weight.fill_(1.0)
        for block in model.blocks:
            block.ln1.weight.fill_(1.0)
            block.ln2.weight.fill_(1.0)
    return model


def test_cache_holds_every_steps_attention_pattern_and_they_differ(hm, problems):
    tokens = hm.to_tokens(problems)
    _, cache = hm.run_with_cache(tokens, n_steps=5)
    assert cache.n_steps == 5
    for layer in range(hm.cfg.n_layers):
        for t in range(5):
            pattern = cache[hook_name(t, "attn.hook_pattern", layer)]
            assert pattern.shape == (len(problems), hm.cfg.n_heads, tokens.shape[1], tokens.shape[1])
        stacked = cache.pattern(layer)  # [step, batch, head, query, key]
        assert stacked.shape[0] == 5
        assert all(not torch.equal(stacked[t], stacked[t + 1]) for t in range(4))
    assert cache.stack_layers("hook_resid_post").shape == (5, 2, len(problems), tokens.shape[1], hm.cfg.d_model)


def test_cache_by_default_runs_until_convergence_like_the_plain_model(model, problems):
    hm = hooked(model)
    tokens = hm.to_tokens(problems)
    out = hm(tokens, return_type="output")
    ref = model.run(tokens, record=True)
    assert torch.equal(out.states.cpu(), ref.states.long())
    assert torch.equal(out.iterations.cpu(), ref.iterations) and torch.equal(out.converged.cpu(), ref.converged)
    _, cache = hm.run_with_cache(tokens)
    assert cache.n_steps == out.n_steps
    assert torch.equal(cache.states(), out.states[:-1])
    assert torch.equal(cache.outputs()[-1], out.final)


def test_converged_graphs_report_iterations_as_the_plain_run():
    model = identity_model()
    hm = hooked(model)
    tokens = hm.to_tokens(["a = 3\nb = a + a", "x = 1\ny = x\nz = y + x"])
    out = hm(tokens, return_type="output")
    ref = model.run(tokens)
    assert out.n_steps == 1 and out.converged.all() and torch.equal(out.iterations.cpu(), ref.iterations)
    assert torch.equal(out.final.cpu(), ref.final)


def test_each_step_output_is_the_plain_step_of_the_state_it_read(model, hm, problems):
    tokens = hm.to_tokens(problems)
    _, cache = hm.run_with_cache(tokens, n_steps=3)
    for t in range(3):
        logits, final = model.step(cache[hook_name(t, "hook_state")])
        torch.testing.assert_close(cache[hook_name(t, "hook_final")], final)
        for f, lg in enumerate(logits):
            torch.testing.assert_close(cache[hook_name(t, "hook_logits", factor=f)], lg)


def test_run_with_hooks_sets_the_state_of_a_step(model, hm, problems):
    tokens = hm.to_tokens(problems)
    clean = hm(tokens, n_steps=4, return_type="output")

    def fill(state, hook):
        state = state.clone()
        state[..., F_VALUE] = torch.where(state[..., F_VALUE] == model.vocab.empty, 0, state[..., F_VALUE])
        return state

    out = hm.run_with_hooks(tokens, fwd_hooks=[(hook_name(2, "hook_state"), fill)], n_steps=4, return_type="output")
    assert torch.equal(out.states[:2], clean.states[:2])
    assert torch.equal(out.states[2], fill(clean.states[2], None))
    assert not torch.equal(out.states[3], clean.states[3])
    assert torch.equal(out.states[3], hm(out.states[2], lengths=out.lengths, n_steps=1, return_type="state"))


def test_a_hook_named_at_a_late_step_makes_the_run_reach_it(hm, problems):
    seen = []
    hm.run_with_hooks(hm.to_tokens(problems), max_steps=3,
                      fwd_hooks=[(hook_name(9, "hook_embed"), lambda x, hook: seen.append(hook.name))])
    assert seen == ["loop.9.hook_embed"]


def test_filters_fire_once_per_step_in_forward_order(hm, problems):
    fired = []
    hm.run_with_hooks(hm.to_tokens(problems), n_steps=3, fwd_hooks=[(lambda name: True, lambda x, hook: fired.append(hook.name))])
    assert fired == [n for t in range(3) for n in step_names(t, hm.cfg.n_layers)]
    assert fired == sorted(fired, key=forward_order)
    pattern_only = []
    hm.run_with_hooks(hm.to_tokens(problems), n_steps=3,
                      fwd_hooks=[(sites_filter("attn.hook_pattern", layers=[1]), lambda x, hook: pattern_only.append(hook.name))])
    assert pattern_only == [hook_name(t, "attn.hook_pattern", 1) for t in range(3)]


def test_hooks_are_removed_and_the_plain_path_is_taken_after_a_run(hm, problems):
    hm.run_with_cache(hm.to_tokens(problems), n_steps=2)
    assert not hm.has_hooks()
    tap_active = [hm._points[0]["blocks.0.attn.hook_pattern"]._forward_hooks]
    assert tap_active == [{}]


def test_weights_stay_shared_and_the_state_dict_is_the_checkpoints(model, hm, problems):
    hm.ensure_steps(20)
    assert list(hm.state_dict()) == list(model.state_dict())
    assert sum(p.numel() for p in hm.loop.parameters()) == 0 and not list(hm.loop.buffers())
    assert [id(p) for p in hm.parameters()] == [id(p) for p in model.parameters()]
    hm.load_state_dict(model.state_dict())


def test_hook_points_grow_on_demand_but_not_under_registered_hooks(model, problems):
    hm = hooked(model, n_steps=2)
    tokens = hm.to_tokens(problems)
    _, cache = hm.run_with_cache(tokens, n_steps=6)
    assert hm.n_step_hooks >= 6 and cache.n_steps == 6
    small = hooked(model, n_steps=2)
    with small.hooks(fwd_hooks=[("loop.0.hook_state", lambda x, hook: None)]):
        with pytest.raises(WorkbenchError, match="ensure_steps"):
            small(tokens, n_steps=5)
    with pytest.raises(WorkbenchError, match="ensure_steps"):
        with small.hooks(fwd_hooks=[("loop.7.hook_state", lambda x, hook: None)]):
            pass


def test_to_tokens_takes_text_parsed_problems_and_lists(hm, problems):
    from workbench.task.text import parse_problem

    one = hm.to_tokens(problems[0])
    assert one.shape[0] == 1
    assert torch.equal(hm.to_tokens(parse_problem(problems[0], TASK)), one)
    batch = hm.to_tokens(problems)
    assert batch.shape[0] == len(problems) and torch.equal(batch[0, :one.shape[1]], one[0])
    logits = hm(problems, n_steps=1)
    assert len(logits) == 4 and logits[0].shape[:2] == batch.shape[:2]


@pytest.mark.parametrize("mechanism", [dict(latent="continuous", supervision="end_to_end"), dict(recurrence="feedforward")])
def test_other_mechanisms_run_as_the_plain_model(mechanism, problems):
    torch.manual_seed(0)
    model = LoopedModel(ModelConfig(n_layers=2, n_heads=4, d_model=32, **mechanism), TASK).eval()
    hm = hooked(model)
    tokens = hm.to_tokens(problems)
    out, ref = hm(tokens, return_type="output"), model.run(tokens, record=True)
    assert torch.equal(out.states.cpu(), ref.states.long())
    assert torch.equal(out.iterations.cpu(), ref.iterations) and torch.equal(out.converged.cpu(), ref.converged)
    _, cache = hm.run_with_cache(tokens)
    assert cache.n_steps == out.n_steps


def test_run_with_cache_incl_bwd_caches_the_gradients_of_a_metric(hm, problems):
    tokens = hm.to_tokens(problems)
    value = lambda logits: logits[3][1, 4, 7]  # noqa: E731  (one value logit of the last step)
    before = [p.grad for p in hm.model.parameters()]
    _, cache = hm.run_with_cache(tokens, n_steps=3, incl_bwd=True, metric=value)
    grad = cache[hook_name(2, "hook_final") + "_grad"]  # d logit / d final residual: the head's row, at one position
    by_hand = torch.zeros_like(grad)
    by_hand[1, 4] = hm.model.unembed.W_U[3].weight[7]
    torch.testing.assert_close(grad, by_hand)
    assert cache.stack("hook_resid_post", 1, grad=True).shape[0] == 1  # the bottleneck stops gradients: last step only
    assert not any(name.endswith("_grad") for name in cache if name.startswith(("loop.0.", "loop.1.")))
    assert cache.n_steps == 3 and all(p.grad is g for p, g in zip(hm.model.parameters(), before))
    with pytest.raises(WorkbenchError, match="pass metric="):
        hm.run_with_cache(tokens, n_steps=3, incl_bwd=True)


def test_a_hook_past_an_explicit_n_steps_raises_instead_of_never_firing(hm, problems):
    tokens = hm.to_tokens(problems)
    with pytest.raises(WorkbenchError, match="'loop.4.hook_state' is never reached.*n_steps=2"):
        hm.run_with_hooks(tokens, n_steps=2, fwd_hooks=[("loop.4.hook_state", lambda x, hook: None)])
    with pytest.raises(WorkbenchError, match="never reached"):
        hm.run_with_cache(tokens, n_steps=2, names_filter=[hook_name(3, "attn.hook_pattern", 0)])


def test_an_in_place_edit_of_the_first_state_leaves_the_callers_tokens_alone(hm, problems):
    tokens = hm.to_tokens(problems)
    before = tokens.clone()
    clean = hm(tokens, n_steps=2, return_type="output")

    def erase_in_place(state, hook):
        state[:, 2, F_VALUE] = 0

    edited = hm.run_with_hooks(tokens, n_steps=2, return_type="output", fwd_hooks=[("loop.0.hook_state", erase_in_place)])
    assert torch.equal(tokens, before)
    assert edited.states[0, :, 2, F_VALUE].eq(0).all() and torch.equal(hm(tokens, n_steps=2, return_type="output").states, clean.states)
    _, cache = hm.run_with_cache(tokens, n_steps=2, fwd_hooks=[("loop.1.hook_state", erase_in_place)])
    assert not cache[hook_name(0, "hook_bottleneck")][:, 2, F_VALUE].eq(0).all()  # the state step 0 wrote, as written


def test_the_wrapper_has_the_inner_models_train_eval_mode(model, problems):
    from transformer_lens.tools.analysis._model_state import require_eval_mode

    hm = hooked(model, n_steps=2)
    assert not model.training and not hm.training
    require_eval_mode(hm, operation="patching")  # TransformerLens's own check passes
    hm.train()
    try:
        assert model.training and hm.training
        with pytest.raises(ValueError, match="evaluation mode"):
            require_eval_mode(hm, operation="patching")
    finally:
        hm.eval()
    assert not model.training
    hm.ensure_steps(6)  # hook containers added later follow
    require_eval_mode(hm, operation="patching")


def test_hooks_reach_steps_past_the_first_window_as_the_run_takes_them(model, problems, monkeypatch):
    """Hooks land on the first ``HOOK_WINDOW`` steps at once and on later ones as the run reaches them: the
    cache, the edits and the fired names are the same as with every step hooked up front."""
    from workbench.hooks import tl_wrapper

    hm = hooked(model, n_steps=4)
    tokens = hm.to_tokens(problems)
    _, whole = hm.run_with_cache(tokens, n_steps=9)
    monkeypatch.setattr(tl_wrapper, "HOOK_WINDOW", 2)
    _, windowed = hm.run_with_cache(tokens, n_steps=9)
    assert list(windowed) == list(whole) and all(torch.equal(windowed[k], whole[k]) for k in whole)
    fired = []
    hm.run_with_hooks(tokens, n_steps=7, fwd_hooks=[(sites_filter("hook_embed"), lambda x, hook: fired.append(hook.name)),
                                                    (hook_name(5, "hook_state"), lambda x, hook: fired.append(hook.name))])
    assert fired == [hook_name(t, "hook_embed") for t in range(5)] + [hook_name(5, "hook_state")] + \
        [hook_name(t, "hook_embed") for t in (5, 6)]
    assert not hm.has_hooks()  # every step's hooks are gone again
    with hm.hooks(fwd_hooks=[(sites_filter("hook_embed"), lambda x, hook: None)], reset_hooks_end=False):
        pass
    assert all(hm.hook_dict[hook_name(t, "hook_embed")].fwd_hooks for t in range(hm.n_step_hooks))  # kept: on every step
    hm.reset_hooks()
    assert not hm.has_hooks()
