"""The chain-of-thought model: shapes, TransformerLens and nnsight access, folders on disk."""

from __future__ import annotations

import json

import nnsight
import pytest
import torch

from workbench.cot.model import CotConfig, CotModel, load_cot, save_cot
from workbench.errors import WorkbenchError
from workbench.task.config import TaskConfig

TINY = CotConfig(n_layers=2, n_heads=2, d_model=16, n_ctx=64)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CotModel(TINY, TaskConfig()).eval()


def tokens(batch=3, pos=11, vocab=160):
    return torch.randint(0, vocab, (batch, pos), generator=torch.Generator().manual_seed(1))


def test_forward_gives_next_word_logits_per_position(model):
    assert model(tokens()).shape == (3, 11, model.vocab.size)


def test_forward_is_causal(model):
    x = tokens()
    y = x.clone()
    y[:, 6:] = 0
    torch.testing.assert_close(model(x)[:, :6], model(y)[:, :6])


def test_run_with_cache_matches_forward_and_names_sites_as_transformer_lens(model):
    x = tokens()
    logits, cache = model.tl.run_with_cache(x)
    torch.testing.assert_close(logits, model(x))
    assert cache["blocks.1.attn.hook_pattern"].shape == (3, TINY.n_heads, 11, 11)
    assert cache["blocks.0.hook_resid_pre"].shape == (3, 11, TINY.d_model)
    assert torch.triu(cache["blocks.0.attn.hook_pattern"][0, 0], diagonal=1).abs().max() == 0  # causal


def test_run_with_hooks_can_ablate_a_layer(model):
    x = tokens()
    zero = lambda act, hook: torch.zeros_like(act)  # noqa: E731
    ablated = model.tl.run_with_hooks(x, fwd_hooks=[("blocks.1.hook_mlp_out", zero)])
    assert not torch.allclose(ablated, model(x))


def test_nnsight_traces_the_same_forward(model):
    x = tokens()
    nm = nnsight.NNsight(model.tl)
    with nm.trace(x):
        resid = nm.blocks[1].hook_resid_pre.output.save()
        out = nm.output.save()
    torch.testing.assert_close(out, model(x))
    assert resid.shape == (3, 11, TINY.d_model)


def test_save_and_load_round_trip_the_weights_and_mark_the_kind(model, tmp_path):
    folder = save_cot(model, tmp_path / "cot", extra={"training": {"steps": 0}})
    meta = json.loads((folder / "config.json").read_text())
    assert meta["kind"] == "chain-of-thought" and meta["model"] == TINY.to_dict() and meta["training"] == {"steps": 0}
    loaded = load_cot(folder, device="cpu")
    torch.testing.assert_close(loaded(tokens()), model(tokens()))
    assert loaded.meta["name"] == "cot" and not loaded.training


def test_loading_a_folder_of_another_kind_or_damaged_is_one_line(model, tmp_path):
    folder = save_cot(model, tmp_path / "cot")
    meta = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**meta, "kind": "looped"}))
    with pytest.raises(WorkbenchError, match="not a chain-of-thought model"):
        load_cot(folder)
    (folder / "config.json").write_text(json.dumps(meta))
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(WorkbenchError, match="corrupt checkpoint") as err:
        load_cot(folder)
    assert "\n" not in str(err.value)


def test_no_positions_means_a_frozen_zero_position_table():
    m = CotModel(CotConfig(n_layers=1, n_heads=2, d_model=16, n_ctx=32, positions="none"), TaskConfig())
    pos = m.net.pos.weight
    assert not pos.requires_grad and pos.abs().max() == 0
    _, cache = m.tl.run_with_cache(tokens(pos=5))
    assert cache["hook_pos_embed"].abs().max() == 0


def test_bad_configs_and_too_long_inputs_are_one_line_errors(model):
    with pytest.raises(WorkbenchError, match="not a multiple"):
        CotConfig(d_model=10, n_heads=3)
    with pytest.raises(WorkbenchError, match="positions must be one of"):
        CotConfig(positions="alibi")
    with pytest.raises(WorkbenchError, match="unknown chain-of-thought model keys"):
        CotConfig.from_dict({"layers": 2})
    with pytest.raises(WorkbenchError, match="exceeds this model's n_ctx 64"):
        model(tokens(pos=65))


@pytest.mark.parametrize("positions", ["rotary", "none"])
def test_transformer_lens_view_shares_the_parameters_and_computes_the_same_logits(positions):
    m = CotModel(CotConfig(n_layers=2, n_heads=2, d_model=16, n_ctx=32, positions=positions), TaskConfig()).eval()
    x = tokens(pos=20)
    torch.testing.assert_close(m.tl(x), m(x), atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        m.net.layers[1].mlp.fc_out.bias.add_(1.0)  # a change to the plain network shows in the hooked one
    torch.testing.assert_close(m.tl(x), m(x), atol=1e-5, rtol=1e-5)
    assert {p.data_ptr() for p in m.tl.parameters()} <= {p.data_ptr() for p in m.parameters()}
    assert not any(k.startswith("_tl") or k.startswith("tl.") for k in m.state_dict())
