"""nnsight sees the same per-step activations as TransformerLens and the plain forward."""

from __future__ import annotations

import nnsight
import pytest
import torch

from workbench.errors import WorkbenchError
from workbench.hooks import hook_name, hooked, nnsight_model
from workbench.task.vocab import F_VALUE


@pytest.fixture()
def nm(model):
    return nnsight_model(hooked(model, n_steps=2))


def test_nnsight_values_equal_the_transformer_lens_cache_and_the_plain_forward_at_every_step(model, nm, problems):
    tokens = nm.hooked.to_tokens(problems)
    logits, saved = nm.save(tokens)  # until convergence, every site
    tl_logits, cache = nm.hooked.run_with_cache(tokens)
    assert set(saved) == set(cache) and saved.n_steps == cache.n_steps > 1
    for name, value in cache.items():
        assert torch.equal(saved[name], value), name
    assert all(torch.equal(a, b) for a, b in zip(logits, tl_logits))
    plain = model.run(tokens, record=True)
    assert torch.equal(saved.states(), plain.states[:-1].long())
    for t in range(saved.n_steps):  # the plain step (fused attention) from the state step t read
        step_logits, final = model.step(saved[hook_name(t, "hook_state")])
        torch.testing.assert_close(saved[hook_name(t, "hook_final")], final)
        for f, lg in enumerate(step_logits):
            torch.testing.assert_close(saved[hook_name(t, "hook_logits", factor=f)], lg)


def test_a_raw_trace_reaches_each_step_by_index(nm, problems):
    tokens = nm.hooked.to_tokens(problems)
    _, cache = nm.hooked.run_with_cache(tokens, n_steps=4)
    with nm.trace(tokens, n_steps=4):
        early = nm.loop[1].blocks[0].attn.hook_pattern.output.save()
        late = nm.step(3).blocks[1].attn.hook_pattern.output.save()
    assert torch.equal(early, cache[hook_name(1, "attn.hook_pattern", 0)])
    assert torch.equal(late, cache[hook_name(3, "attn.hook_pattern", 1)])


def test_run_visits_names_in_forward_order_and_sets_the_state(model, nm, problems):
    tokens = nm.hooked.to_tokens(problems)

    def erase(state):
        state = state.clone()
        state[..., F_VALUE] = torch.where(state[..., F_VALUE] < model.vocab.n_values, model.vocab.empty, state[..., F_VALUE])
        return state

    later, earlier = hook_name(3, "hook_state"), hook_name(2, "hook_embed")
    _, saved = nm.run(tokens, set={hook_name(2, "hook_state"): erase},
                      save=[later, earlier, hook_name(2, "hook_state")])  # not in forward order
    clean = nm.hooked(tokens, n_steps=4, return_type="output")
    edited = erase(clean.states[2])
    assert torch.equal(saved[hook_name(2, "hook_state")], edited)
    torch.testing.assert_close(saved[earlier], model.embed(edited))
    assert torch.equal(saved[later], nm.hooked(edited, lengths=clean.lengths, n_steps=1, return_type="state"))


def test_tensor_edits_match_transformer_lens_edits(nm, problems):
    tokens = nm.hooked.to_tokens(problems)
    name = hook_name(1, "hook_resid_mid", layer=0)
    _, cache = nm.hooked.run_with_cache(tokens, n_steps=3)
    zeros = torch.zeros_like(cache[name])
    out_nn, saved = nm.run(tokens, set={name: zeros}, save=[hook_name(2, "hook_state")], n_steps=3)
    out_tl, tl_cache = nm.hooked.run_with_cache(tokens, names_filter=[hook_name(2, "hook_state")], n_steps=3,
                                                fwd_hooks=[(name, lambda x, hook: zeros)])
    assert torch.equal(saved[hook_name(2, "hook_state")], tl_cache[hook_name(2, "hook_state")])
    for a, b in zip(out_nn, out_tl):  # nnsight computes every attention explicitly, TL only where hooked
        torch.testing.assert_close(a, b)


def test_a_step_beyond_a_fixed_run_is_refused(nm, problems):
    with pytest.raises(WorkbenchError, match="never reached"):
        nm.run(nm.hooked.to_tokens(problems), save=[hook_name(5, "hook_state")], n_steps=3)


CLEAN = "a = 3\nb = a + a\nc = b + a"
CORRUPTED = "a = 5\nb = a + a\nc = b + a"


def test_two_invokes_patch_the_clean_run_into_the_corrupted_one_at_a_step(nm):
    clean, corrupted = nm.hooked.to_tokens(CLEAN), nm.hooked.to_tokens(CORRUPTED)
    with nm.trace(n_steps=3) as tracer:
        barrier = tracer.barrier(2)
        with tracer.invoke(clean):
            resid = nm.loop[1].blocks[0].hook_resid_pre.output
            barrier()
        with tracer.invoke(corrupted):
            barrier()
            nm.loop[1].blocks[0].hook_resid_pre.output = resid
            patched = nm.output.save()
    name = hook_name(1, "hook_resid_pre", layer=0)
    _, cache = nm.hooked.run_with_cache(clean, n_steps=3, names_filter=name)
    by_tl = nm.hooked.run_with_hooks(corrupted, n_steps=3, fwd_hooks=[(name, lambda x, hook: cache[name])])
    for a, b in zip(patched, by_tl):
        torch.testing.assert_close(a, b)


def test_invokes_of_different_lengths_each_see_their_own_rows(nm, problems):
    with nm.trace(n_steps=2) as tracer:
        with tracer.invoke(problems[0]):
            short = nm.loop[1].hook_state.output.save()
        with tracer.invoke(problems[2]):
            long = nm.loop[1].hook_state.output.save()
    for text, saved in [(problems[0], short), (problems[2], long)]:
        alone = nm.hooked(text, n_steps=2, return_type="output").states[1]
        assert saved.shape[0] == 1 and torch.equal(saved[:, :alone.shape[1]], alone)


def test_tracer_iter_maps_iterations_onto_steps(nm, problems):
    tokens = nm.hooked.to_tokens(problems)
    with nm.trace(tokens, n_steps=3) as tracer:
        patterns = nnsight.save([])
        for _ in tracer.iter[:3]:
            patterns.append(nm.blocks[1].attn.hook_pattern.output)
    _, cache = nm.save(tokens, [hook_name(t, "attn.hook_pattern", 1) for t in range(3)], n_steps=3)
    assert torch.equal(torch.stack(list(patterns)), cache.pattern(1))


def test_a_per_step_module_inside_an_iteration_names_the_path_to_use(nm, problems):
    with pytest.raises(WorkbenchError, match=r"nm.blocks\[0\].hook_resid_pre"):
        with nm.trace(nm.hooked.to_tokens(problems), n_steps=3) as tracer:
            for _ in tracer.iter[1]:
                nm.loop[1].blocks[0].hook_resid_pre.output.save()
    with pytest.raises(WorkbenchError, match="pass n_steps="):
        with nm.trace(nm.hooked.to_tokens(problems), n_steps=3):
            nm.loop[2].hook_state.output.save()
            nm.loop[1].hook_state.output.save()  # out of forward order


def test_gradients_flow_through_a_step_when_asked(nm, problems):
    tokens = nm.hooked.to_tokens(problems)
    with nm.trace(tokens, n_steps=3, grad=True):
        resid = nm.loop[2].blocks[1].hook_resid_mid.output
        logits = nm.output
        with logits[3][1, 4, 7].backward():
            grad = resid.grad.save()
    nm.hooked.model.zero_grad(set_to_none=True)  # a plain backward filled the parameters' .grad, as in PyTorch
    _, cache = nm.hooked.run_with_cache(tokens, n_steps=3, incl_bwd=True, metric=lambda lg: lg[3][1, 4, 7])
    torch.testing.assert_close(grad, cache[hook_name(2, "hook_resid_mid", layer=1) + "_grad"])
    with pytest.raises(WorkbenchError, match="grad=True"):
        with nm.trace(tokens, n_steps=3):
            logits = nm.output
            with logits[3][1, 4, 7].backward():
                nm.loop[2].blocks[1].hook_resid_mid.output.grad.save()


def test_an_in_place_edit_of_the_first_state_leaves_the_tokens_alone(nm, problems):
    tokens = nm.hooked.to_tokens(problems)
    before = tokens.clone()
    with nm.trace(tokens, n_steps=1):
        nm.loop[0].hook_state.output[:, 2, 3] = 0
    assert torch.equal(tokens, before)
