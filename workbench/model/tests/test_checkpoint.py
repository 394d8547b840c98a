"""Model folders: safetensors round trips, name and path resolution, one-line errors, cards."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from workbench.errors import WorkbenchError
from workbench.model.card import EVAL_FILE, NOTES_MARK, render_card, write_card
from workbench.model.checkpoint import (CARD, CONFIG, FORMAT, WEIGHTS, available_models, load_model, models_dir,
                                        resolve_model, save_model)
from workbench.model.config import ModelConfig
from workbench.model.info import format_info, model_info
from workbench.model.looped import LoopedModel
from workbench import testing
from workbench.task.config import TaskConfig
from workbench.task.graphs import sample_graphs
from workbench.task.tokens import tokenize
from workbench.training.config import Phase, TrainConfig

TASK = TaskConfig(modulus=7, n_names=24)
TINY = ModelConfig(n_layers=1, n_heads=2, d_model=16, d_mlp=32, rel_window=8)


def tiny_model(cfg: ModelConfig = TINY, seed: int = 0) -> LoopedModel:
    return testing.tiny_model(cfg, TASK, seed=seed)


def tokens(model: LoopedModel) -> torch.Tensor:
    tb = tokenize(sample_graphs(10, 3, rng=np.random.default_rng(0), task=TASK), model.vocab)
    return torch.from_numpy(tb.tokens).long()


@pytest.fixture
def saved(tmp_path):
    model = tiny_model()
    return model, save_model(model, tmp_path / "tiny")


def one_line_error(call, *fragments: str) -> str:
    with pytest.raises(WorkbenchError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- round trip --------------------------------------------------------------------------------------

def test_save_then_load_gives_identical_weights_and_outputs(saved):
    model, folder = saved
    loaded = load_model(folder, device="cpu")
    assert loaded.cfg == model.cfg and loaded.task == model.task
    assert not loaded.training
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert torch.equal(original[key], restored[key]), key
    x = tokens(model)
    for a, b in zip(model(x), loaded(x)):
        assert torch.equal(a, b)
    assert torch.equal(model.run(x, max_steps=3).final, loaded.run(x, max_steps=3).final)


def test_saved_config_records_format_name_model_task_and_extra(tmp_path):
    folder = save_model(tiny_model(), tmp_path / "folder", name="given", extra={"note": 1})
    meta = json.loads((folder / CONFIG).read_text())
    assert meta["format"] == FORMAT and meta["name"] == "given" and meta["note"] == 1
    assert meta["model"] == TINY.to_dict() and meta["task"] == TASK.to_dict()
    loaded = load_model(folder, device="cpu")
    assert loaded.meta["name"] == "given" and loaded.meta["path"] == str(folder)


def test_model_folder_holds_no_pickle(saved, tmp_path):
    _, folder = saved
    write_card(folder)
    suffixes = {p.suffix for p in folder.iterdir()}
    assert suffixes <= {".safetensors", ".json", ".md"}
    assert {p.name for p in folder.iterdir()} == {WEIGHTS, CONFIG, CARD}
    assert not (folder / WEIGHTS).read_bytes().startswith(b"\x80")  # a pickle's protocol byte
    assert not any(tmp_path.rglob("*.pt")) and not any(tmp_path.rglob("*.pkl")) and not any(tmp_path.rglob("*.bin"))


def test_saving_again_replaces_the_files_and_keeps_others(saved):
    _, folder = saved
    (folder / "notes.txt").write_text("mine")
    other = tiny_model(seed=1)
    save_model(other, folder)
    assert (folder / "notes.txt").read_text() == "mine"
    assert not any(p.name.startswith(".") for p in folder.iterdir())  # no temporary files left behind
    loaded = load_model(folder, device="cpu")
    assert torch.equal(loaded.embed.W_E[0].weight, other.embed.W_E[0].weight)


# --- names and paths ---------------------------------------------------------------------------------

def test_load_by_name_from_the_models_directory(saved, monkeypatch):
    model, folder = saved
    monkeypatch.setenv("WORKBENCH_MODELS", str(folder.parent))
    assert models_dir() == folder.parent
    assert available_models() == ["tiny"]
    assert resolve_model("tiny") == folder
    loaded = load_model("tiny", device="cpu")
    assert loaded.meta["name"] == "tiny"
    assert torch.equal(loaded.unembed.W_U[3].weight, model.unembed.W_U[3].weight)


def test_load_by_path_string_and_path_object(saved, monkeypatch, tmp_path):
    _, folder = saved
    monkeypatch.setenv("WORKBENCH_MODELS", str(tmp_path / "elsewhere"))
    assert load_model(str(folder), device="cpu").meta["path"] == str(folder)
    assert load_model(folder, device="cpu").meta["path"] == str(folder)
    monkeypatch.chdir(folder.parent)
    assert resolve_model("tiny").resolve() == folder.resolve()  # an existing folder wins over a name


def test_default_models_dir_is_the_repository_models_folder(monkeypatch):
    monkeypatch.delenv("WORKBENCH_MODELS", raising=False)
    assert models_dir().name == "models" and (models_dir().parent / "workbench").is_dir()


# --- errors ------------------------------------------------------------------------------------------

def test_unknown_model_name_lists_the_known_models(saved, monkeypatch):
    _, folder = saved
    save_model(tiny_model(), folder.parent / "other")
    monkeypatch.setenv("WORKBENCH_MODELS", str(folder.parent))
    one_line_error(lambda: load_model("nope"), "unknown model 'nope'", "other, tiny")


def test_unknown_model_name_with_no_models_says_none(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_MODELS", str(tmp_path / "missing"))
    one_line_error(lambda: load_model("nope"), "unknown model 'nope'", "none")


def test_missing_folder_path(tmp_path):
    one_line_error(lambda: load_model(tmp_path / "not" / "here"), "does not exist")


@pytest.mark.parametrize("missing", [WEIGHTS, CONFIG])
def test_folder_without_weights_or_config(saved, missing):
    _, folder = saved
    (folder / missing).unlink()
    one_line_error(lambda: load_model(folder), f"has no {missing}")


@pytest.mark.parametrize("garbage", [b"", b"not a safetensors file at all", b"\xff" * 64, b"\x80\x04\x95pickle"])
def test_corrupt_weights(saved, garbage):
    _, folder = saved
    (folder / WEIGHTS).write_bytes(garbage)
    one_line_error(lambda: load_model(folder, device="cpu"), "corrupt checkpoint")


def test_truncated_weights(saved):
    _, folder = saved
    data = (folder / WEIGHTS).read_bytes()
    (folder / WEIGHTS).write_bytes(data[: len(data) // 2])
    one_line_error(lambda: load_model(folder, device="cpu"), "corrupt checkpoint")


@pytest.mark.parametrize("text, fragment", [
    ("{not json", "corrupt"),
    ("\xff\xfe garbage", "corrupt"),
    ("[1, 2, 3]", "not a workbench model"),
    ('{"model": {}}', "not a workbench model"),
    ('{"model": {"n_loops": 3}, "task": {}}', "unknown model config keys"),
    ('{"model": {}, "task": {"colour": 1}}', "incompatible config"),
    ('{"model": {"d_model": "big"}, "task": {}}', "incompatible config"),
    ('{"model": {"n_heads": 3, "d_model": 16}, "task": {}}', "multiple of n_heads"),
    ('{"model": {"n_heads": 0}, "task": {}}', "must be positive"),
    ('{"model": {}, "task": []}', "'task' must be a JSON object"),
    ('{"model": {}, "task": {}, "training": "x"}', "'training' must be a JSON object"),
    ('{"model": 3, "task": {}}', "'model' must be a JSON object"),
])
def test_corrupt_or_foreign_config(saved, text, fragment):
    _, folder = saved
    (folder / CONFIG).write_bytes(text.encode("latin-1"))
    one_line_error(lambda: load_model(folder, device="cpu"), fragment)


def test_weights_of_another_size_do_not_fit_the_config(saved, tmp_path):
    _, folder = saved
    bigger = save_model(tiny_model(replace(TINY, d_model=32, n_heads=4)), tmp_path / "bigger")
    shutil.copy(bigger / WEIGHTS, folder / WEIGHTS)
    one_line_error(lambda: load_model(folder, device="cpu"), "does not fit its config.json")


def test_weights_with_missing_tensors_do_not_fit_the_config(saved, tmp_path):
    _, folder = saved
    deeper = save_model(tiny_model(replace(TINY, n_layers=2)), tmp_path / "deeper")
    shutil.copy(deeper / WEIGHTS, folder / WEIGHTS)
    one_line_error(lambda: load_model(folder, device="cpu"), "does not fit")


# --- cards and info ----------------------------------------------------------------------------------

def training_record() -> dict:
    cfg = TrainConfig(name="tiny", model=TINY, task=TASK, phases=(Phase(name="warm", steps=3, nodes=(7, 8)), Phase(name="cool", steps=2, nodes=(7, 8), lr=1e-4)), eval_sizes=(8,))
    return {"config": cfg.to_dict(), "steps": 3, "tokens": 1234, "wall_time_s": 12.0, "hardware": "test cpu",
            "evals": [{"step": 3, "phase": "warm", "sizes": [{"n_nodes": 8, "graph_acc": 0.25}]}]}


EVAL = {"command": "workbench eval --model tiny", "sizes": [
    {"n_nodes": 8, "count": 4, "graph_acc": 0.5, "node_acc": 0.75, "mean_iterations": 3.0, "converged": 1.0,
     "mean_depth": 2.0, "max_depth": 3}]}


def test_card_of_a_bare_folder_has_mechanisms_task_architecture_and_a_notes_section(saved):
    _, folder = saved
    path = write_card(folder)
    card = path.read_text()
    assert path == folder / CARD
    assert card.startswith("# Model card: `tiny`")
    for fragment in ("## Mechanisms", "**recurrence**: looped", "modulus p = 7", "1 layers x 2 heads x d_model 16", NOTES_MARK):
        assert fragment in card
    assert "## Training" not in card and "## Evaluation" not in card


def test_card_with_training_and_evaluation(tmp_path):
    folder = save_model(tiny_model(), tmp_path / "trained", extra={"training": training_record()})
    (folder / EVAL_FILE).write_text(json.dumps(EVAL))
    card = write_card(folder).read_text()
    assert "## Training" in card and "tokens: 1,234" in card and "| warm | 3 | 0.001 | 7-8 |" in card
    assert "| cool | 2 | 0.0001 | 7-8 |" in card  # a phase's own rate, else the run's
    assert "### Evaluations during training" in card and "| 3 | warm | 25.0 |" in card
    assert "## Evaluation" in card and "| 8 | 4 | 50.0 | 75.0 | 3.0 | 100.0 | 2.0 / 3 |" in card


def test_card_says_where_each_stretch_of_a_run_trained_and_merges_neighbours_on_one_machine(tmp_path):
    record = {**training_record(), "stretches": [
        {"steps": [0, 100], "wall_time_s": 60.0, "hardware": None},
        {"steps": [100, 200], "wall_time_s": 30.0, "hardware": "H200 (cuda)"},
        {"steps": [200, 250], "wall_time_s": 30.0, "hardware": "H200 (cuda)"},
        {"steps": [250, 3000], "wall_time_s": 600.0, "hardware": "x86_64 (cpu)"}]}
    card = write_card(save_model(tiny_model(), tmp_path / "m", extra={"training": record})).read_text()
    assert ("- hardware, by stretch of training: steps 0-100 on a machine not recorded (1.0 min); "
            "steps 100-250 on H200 (cuda) (1.0 min); steps 250-3,000 on x86_64 (cpu) (10.0 min)") in card
    one = {**training_record(), "stretches": record["stretches"][1:3]}
    card = write_card(save_model(tiny_model(), tmp_path / "one", extra={"training": one})).read_text()
    assert "- hardware: test cpu" in card and "by stretch" not in card


def test_card_lists_further_evaluation_records_and_shows_the_plot(tmp_path):
    folder = save_model(tiny_model(), tmp_path / "trained", extra={"training": training_record()})
    (folder / EVAL_FILE).write_text(json.dumps(EVAL))
    (folder / "eval.png").write_bytes(b"\x89PNG")
    chains = {**EVAL, "command": "workbench eval --model tiny --recent 2", "sizes": [{**EVAL["sizes"][0], "n_nodes": 64}]}
    (folder / "chains.json").write_text(json.dumps(chains))
    (folder / "notes.json").write_text(json.dumps({"not": "an evaluation"}))
    card = write_card(folder).read_text()
    assert "![accuracy against N](eval.png)" in card
    assert "### `chains`" in card and "--recent 2" in card and "| 64 | 4 | 50.0 |" in card
    assert "### `notes`" not in card


@pytest.mark.parametrize("changes, fragment", [
    ({}, "sampled teacher-forced steps"),
    ({"latent": "continuous"}, "unrolled loop of depth + 1 steps"),
    ({"recurrence": "feedforward", "supervision": "end_to_end"}, "one pass of 1 distinct blocks"),
])
def test_card_says_how_each_kind_of_model_was_trained(tmp_path, changes, fragment):
    folder = save_model(tiny_model(replace(TINY, **changes)), tmp_path / "m", extra={"training": training_record()})
    assert fragment in write_card(folder).read_text()


def test_regenerating_the_card_keeps_the_notes_below_the_mark(saved):
    _, folder = saved
    card = write_card(folder).read_text()
    assert "_No notes yet._" in card
    notes = "\n\nTrained by hand; head 1 copies.\n"
    (folder / CARD).write_text(card.split(NOTES_MARK)[0] + NOTES_MARK + notes)
    (folder / EVAL_FILE).write_text(json.dumps(EVAL))
    again = write_card(folder).read_text()
    assert again.endswith(NOTES_MARK + notes)
    assert "## Evaluation" in again and "_No notes yet._" not in again
    assert render_card(folder) == again


def test_info_reports_name_size_mechanisms_and_task(saved):
    model, folder = saved
    info = model_info(load_model(folder, device="cpu"))
    assert info["name"] == "tiny" and info["parameters"] == model.n_params()
    assert info["modulus"] == 7 and info["operations"] == ["+"] and info["max_variables"] == 24
    assert info["trained_on"] is None and info["eval"] is None
    text = format_info(info)
    assert "no training record" in text and "none yet" in text


def test_info_of_a_trained_and_evaluated_model(tmp_path):
    folder = save_model(tiny_model(), tmp_path / "trained", extra={"training": training_record()})
    (folder / EVAL_FILE).write_text(json.dumps(EVAL))
    info = model_info(load_model(folder, device="cpu"))
    assert info["trained_on"]["max_nodes"] == 8 and info["trained_on"]["phases"] == ["warm"]
    assert info["eval"] == EVAL["sizes"]
    assert "curriculum  warm" in format_info(info)


def test_card_of_a_fine_tuned_model_names_the_model_it_started_from(tmp_path):
    record = training_record()
    record["config"]["init"] = "models/default/run/base-28750"
    card = write_card(save_model(tiny_model(), tmp_path / "tuned", extra={"training": record})).read_text()
    assert "fine-tuned: started from the weights of `models/default/run/base-28750`" in card
    assert "- reproduce:" not in card
