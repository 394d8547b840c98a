"""One loop step as a TransformerLens model: names, cfg, weights, tokens, ActivationCache analyses, patching.

Written as TransformerLens's own tests are: run the model, then check each helper against the
computation done by hand from the cache and the weights.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformer_lens import ActivationCache

from workbench.errors import WorkbenchError
from workbench.hooks import hook_name, hooked
from workbench.hooks.packed import pack
from workbench.model.config import ModelConfig
from workbench.model.looped import LoopedModel

from .conftest import TASK

CLEAN = "a = 3\nb = a + a\nc = b + a"
CORRUPTED = "a = 5\nb = a + a\nc = b + a"
STEP = 2


@pytest.fixture()
def run(hm):
    """The clean problem's loop cache (every site, 3 steps) and step 2's view and ActivationCache."""
    tokens = hm.to_tokens(CLEAN)
    _, cache = hm.run_with_cache(tokens, n_steps=STEP + 1)
    return cache, hm.at_step(STEP), cache.at_step(STEP)


def test_view_names_are_transformer_lens_names_and_see_the_loop_step(hm, run):
    cache, view, _ = run
    logits, view_cache = view.run_with_cache(view.to_tokens(CLEAN))
    assert isinstance(view_cache, ActivationCache)
    assert "blocks.1.attn.hook_pattern" in view.hook_dict and "hook_embed" in view.hook_dict
    for name in ["hook_embed", "blocks.0.hook_resid_pre", "blocks.1.attn.hook_pattern", "blocks.1.mlp.hook_post"]:
        torch.testing.assert_close(view_cache[name], cache[f"loop.{STEP}.{name}"])
    torch.testing.assert_close(view_cache["pattern", 1], cache[hook_name(STEP, "attn.hook_pattern", 1)])
    torch.testing.assert_close(logits, cache[hook_name(STEP, "hook_logits", factor=3)])


def test_cfg_has_the_fields_transformer_lens_reads(hm):
    cfg = hm.at_step(1).cfg
    assert (cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_head, cfg.d_mlp) == (2, 4, 32, 8, 64)
    assert cfg.d_vocab == cfg.d_vocab_out == hm.vocab.sizes[3] and cfg.factor_name == "value"
    assert cfg.act_fn == "relu" and cfg.normalization_type == "LNPre" and cfg.device == "cpu"
    assert cfg.n_ctx == 8 * TASK.n_names and cfg.n_key_value_heads is None and cfg.step == 1
    assert hm.at_step(1, "variable", fold_ln=False).cfg.normalization_type == "LN"
    assert hm.at_step(1, "variable").cfg.d_vocab == hm.vocab.sizes[1]


def test_weights_are_stacked_as_transformer_lens_stacks_them(hm):
    view = hm.at_step(0)
    L, H, D, d, M = 2, 4, 32, 8, 64
    shapes = {"W_Q": (L, H, D, d), "W_K": (L, H, D, d), "W_V": (L, H, D, d), "W_O": (L, H, d, D),
              "b_Q": (L, H, d), "b_O": (L, D), "W_in": (L, D, M), "b_in": (L, M), "W_out": (L, M, D), "b_out": (L, D),
              "W_E": (hm.vocab.sizes[3], D), "W_U": (D, hm.vocab.sizes[3]), "b_U": (hm.vocab.sizes[3],)}
    for name, shape in shapes.items():
        assert tuple(getattr(view, name).shape) == shape, name
    assert torch.equal(view.blocks[1].attn.W_O, view.W_O[1])
    raw = hm.at_step(0, fold_ln=False)
    assert torch.equal(raw.W_Q[1], hm.model.blocks[1].attn.W_Q.detach())
    assert torch.equal(raw.W_in[0], hm.model.blocks[0].mlp.W_in.weight.detach().T)
    assert tuple(view.QK.shape) == (L, H, D, D)


def test_folded_weights_reproduce_the_cached_activations(run):
    cache, view, acache = run
    for layer in range(2):
        resid_pre = F.layer_norm(acache["resid_pre", layer], (32,))  # LNPre: centre and scale only
        q = torch.einsum("bpm,hmd->bphd", resid_pre, view.W_Q[layer]) + view.b_Q[layer]
        torch.testing.assert_close(q, acache["q", layer], atol=1e-5, rtol=1e-4)
        pre = F.layer_norm(acache["resid_mid", layer], (32,)) @ view.W_in[layer] + view.b_in[layer]
        torch.testing.assert_close(pre, acache["pre", layer], atol=1e-5, rtol=1e-4)
    logits = F.layer_norm(acache["resid_post", 1], (32,)) @ view.W_U + view.b_U
    torch.testing.assert_close(logits, cache[hook_name(STEP, "hook_logits", factor=3)], atol=1e-5, rtol=1e-4)


def test_decompose_resid_sums_to_the_final_residual(run):
    _, _, acache = run
    resid, labels = acache.decompose_resid(return_labels=True)
    assert labels == ["embed", "0_attn_out", "0_mlp_out", "1_attn_out", "1_mlp_out"]
    torch.testing.assert_close(resid.sum(0), acache["resid_post", 1], atol=1e-5, rtol=1e-4)


def test_apply_ln_to_stack_divides_by_the_final_layer_norms_scale(run):
    _, _, acache = run
    resid = acache.decompose_resid()
    scaled = acache.apply_ln_to_stack(resid, layer=-1)  # centred, over the cached ln_final scale
    torch.testing.assert_close(scaled.sum(0), F.layer_norm(acache["resid_post", 1], (32,)), atol=1e-5, rtol=1e-4)


def test_the_loop_cache_moves_and_drops_its_batch_axis_as_an_activation_cache_does(hm, run):
    cache, _, _ = run
    one = cache.remove_batch_dim()
    assert one[hook_name(1, "attn.hook_pattern", 0)].shape == cache[hook_name(1, "attn.hook_pattern", 0)].shape[1:]
    assert one.to("cpu").n_steps == 3 and not one.has_batch_dim
    assert one.at_step(1).decompose_resid().shape == (5, 15, 32)  # [component, pos, d_model]
    with pytest.raises(WorkbenchError, match="batch of one"):
        hm.run_with_cache(hm.to_tokens([CLEAN, CORRUPTED]), n_steps=1)[1].remove_batch_dim()
    assert torch.equal(hm.W_Q, hm.at_step(2).W_Q)  # one set of weights for every step


def test_logit_attrs_through_the_value_head_add_up_to_the_logits(run):
    cache, view, acache = run
    resid = acache.decompose_resid()
    for code in (0, 5, "7"):
        attrs = acache.logit_attrs(resid, tokens=code)  # [component, batch, pos]
        index = view.to_single_token(code) if isinstance(code, str) else code
        by_hand = cache[hook_name(STEP, "hook_logits", factor=3)][..., index] - view.b_U[index]
        torch.testing.assert_close(attrs.sum(0), by_hand, atol=1e-4, rtol=1e-4)


def test_accumulated_resid_through_ln_final_and_w_u_gives_the_logits(run):
    cache, view, acache = run
    accumulated, labels = acache.accumulated_resid(apply_ln=True, return_labels=True)
    assert labels == ["0_pre", "1_pre", "final_post"]
    torch.testing.assert_close(view.unembed(accumulated[-1]), cache[hook_name(STEP, "hook_logits", factor=3)],
                               atol=1e-4, rtol=1e-4)


def test_stack_head_results_add_up_to_each_attention_output(run):
    _, view, acache = run
    heads, labels = acache.stack_head_results(layer=-1, return_labels=True)  # [layer x head, batch, pos, d_model]
    assert labels[:5] == ["L0H0", "L0H1", "L0H2", "L0H3", "L1H0"] and heads.shape[0] == 8
    for layer in range(2):
        by_hand = torch.einsum("bphd,hdm->bphm", acache["z", layer], view.W_O[layer])
        torch.testing.assert_close(heads[4 * layer:4 * (layer + 1)], by_hand.permute(2, 0, 1, 3), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(heads[4 * layer:4 * (layer + 1)].sum(0) + view.b_O[layer], acache["attn_out", layer],
                                   atol=1e-5, rtol=1e-4)


def test_cache_of_another_factor_attributes_through_its_own_head(run, hm):
    cache, _, _ = run
    acache = cache.at_step(STEP, "syntax")
    attrs = acache.logit_attrs(acache.decompose_resid(), tokens=2)
    by_hand = cache[hook_name(STEP, "hook_logits", factor=0)][..., 2] - hm.at_step(STEP, "syntax").b_U[2]
    torch.testing.assert_close(attrs.sum(0), by_hand, atol=1e-4, rtol=1e-4)


def test_to_str_tokens_and_to_string_use_the_users_names(hm):
    view = hm.at_step(1)
    tokens = view.to_tokens(CLEAN)
    assert tokens.shape == (1, 15) and tokens.dtype == torch.long
    assert view.to_str_tokens(tokens)[:5] == ["3", "=", "a=?", "SEP", "a=?"]
    assert view.to_str_tokens(CLEAN) == view.to_str_tokens(tokens[0])
    assert view.to_string(tokens) == CLEAN
    assert hm.to_str_tokens(hm.to_tokens(CLEAN)) == view.to_str_tokens(tokens)  # the loop model's tokens too
    assert torch.equal(pack(hm.to_tokens(CLEAN), hm.vocab.sizes), tokens)
    assert view.to_single_token("?") == hm.vocab.empty
    with pytest.raises(WorkbenchError, match="not a code of the value factor"):
        view.to_single_token("a")


def test_transformer_lens_patching_runs_at_a_step_and_matches_a_hand_patch(hm):
    from transformer_lens import patching

    view = hm.at_step(1)
    clean, corrupted = view.to_tokens(CLEAN), view.to_tokens(CORRUPTED)
    _, clean_cache = view.run_with_cache(clean)
    metric = lambda logits: logits[0, -1, 3] - logits[0, -1, 5]  # noqa: E731
    with torch.no_grad():
        grid = patching.get_act_patch_resid_pre(view, corrupted, clean_cache, metric)  # [layer, pos]
    assert grid.shape == (2, 15)
    layer, pos = 1, 8
    name = hook_name(1, "hook_resid_pre", layer)

    def by_hand(resid, hook):
        resid = resid.clone()
        resid[:, pos] = clean_cache["resid_pre", layer][:, pos]
        return resid

    logits = hm.run_with_hooks(CORRUPTED, n_steps=2, fwd_hooks=[(name, by_hand)])
    torch.testing.assert_close(grid[layer, pos], metric(logits[3]), atol=1e-5, rtol=1e-4)
    heads = patching.get_act_patch_attn_head_out_all_pos(view, corrupted, clean_cache, metric)
    assert heads.shape == (2, 4)


def test_patching_helpers_refuse_a_model_in_training_mode(model, hm):
    from transformer_lens import patching

    view = hm.at_step(0)
    model.train()
    try:
        assert view.training and hm.training
        with pytest.raises(ValueError, match="evaluation mode"):
            patching.get_act_patch_resid_pre(view, view.to_tokens(CLEAN), None, lambda lg: lg.sum())
    finally:
        model.eval()
    assert not view.training and not any(m.training for m in view.modules())


def test_incl_bwd_caches_gradients_of_the_metric(hm):
    view = hm.at_step(1)
    before = [p.grad for p in hm.model.parameters()]
    _, acache = view.run_with_cache(view.to_tokens(CLEAN), incl_bwd=True, metric=lambda logits: logits[0, 4, 7])
    resid = acache["resid_post", 1].clone().requires_grad_(True)
    (F.layer_norm(resid, (32,)) @ view.W_U + view.b_U)[0, 4, 7].backward()  # the last residual's road to the logit
    torch.testing.assert_close(acache["blocks.1.hook_resid_post_grad"], resid.grad, atol=1e-5, rtol=1e-4)
    assert acache["blocks.0.attn.hook_pattern_grad"].shape == acache["pattern", 0].shape
    assert all(p.grad is g for p, g in zip(hm.model.parameters(), before))  # an analysis leaves the model's .grad alone


@pytest.mark.parametrize("name, says", [("loop.1.blocks.0.hook_resid_pre", "drop the 'loop.1.' prefix"),
                                        ("blocks.0.ln1.hook_scale", "hook the residual"),
                                        ("blocks.7.hook_resid_pre", "not a hook point")])
def test_a_name_that_is_no_hook_point_raises_one_line(hm, name, says):
    view = hm.at_step(1)
    with pytest.raises(WorkbenchError, match=says):
        view.run_with_hooks(view.to_tokens(CLEAN), fwd_hooks=[(name, lambda x, hook: None)])
    with pytest.raises(WorkbenchError, match=says):
        view.run_with_cache(view.to_tokens(CLEAN), names_filter=[name])


def test_what_a_looped_model_lacks_says_what_to_use_instead(hm, run):
    cache, view, _ = run
    assert not hasattr(view, "W_pos")
    with pytest.raises(WorkbenchError, match="relative distance"):
        view.W_pos  # noqa: B018
    with pytest.raises(WorkbenchError, match="no next-token loss"):
        view(view.to_tokens(CLEAN), return_type="loss")
    with pytest.raises(WorkbenchError, match=r"always runs steps 0..2"):
        view(view.to_tokens(CLEAN), n_steps=5)
    with pytest.raises(WorkbenchError, match=r"cache.at_step\(t\).decompose_resid"):
        cache.decompose_resid()
    with pytest.raises(WorkbenchError, match="holds steps 0..2"):
        cache.at_step(3)
    torch.manual_seed(0)
    feedforward = hooked(LoopedModel(ModelConfig(n_layers=2, n_heads=4, d_model=32, recurrence="feedforward"), TASK))
    with pytest.raises(WorkbenchError, match="feedforward model runs one step"):
        feedforward.at_step(1)
