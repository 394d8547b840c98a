"""The zoo comparison: a table and figure of every model's evaluation beside the paper's curves."""

from __future__ import annotations

import json
import shutil

import pytest

from workbench.errors import WorkbenchError
from workbench.paper import PAPER_ACCURACY
from workbench.zoo import ZOO, ZooEntry, comparison_table, load_entry, write_comparison

ROWS = [{"n_nodes": 8, "count": 4, "graph_acc": 1.0, "node_acc": 1.0, "mean_iterations": 3.0, "converged": 1.0,
         "mean_depth": 2.0, "max_depth": 3},
        {"n_nodes": 64, "count": 4, "graph_acc": 0.25, "node_acc": 0.9, "mean_iterations": 9.0, "converged": 1.0,
         "mean_depth": 8.0, "max_depth": 12}]


def evaluated(model_dir, tmp_path, name: str, steps: int, total: int):
    """A copy of the tiny model named ``name`` with an eval record and a training record."""
    folder = tmp_path / name
    shutil.copytree(model_dir / "tiny", folder)
    meta = json.loads((folder / "config.json").read_text())
    meta["name"] = name
    meta["training"] = {"steps": steps, "total_steps": total, "wall_time_s": 60.0}
    (folder / "config.json").write_text(json.dumps(meta))
    (folder / "eval.json").write_text(json.dumps({"model": name, "command": f"workbench eval --model {name}", "sizes": ROWS}))
    return folder


def test_every_zoo_model_maps_to_a_curve_of_the_paper():
    assert set(ZOO) == {"default", "no-error-correction", "continuous-latent", "end-to-end", "feedforward", "chain-of-thought"}
    assert all(label in PAPER_ACCURACY for label in ZOO.values())


def test_a_fine_tune_says_what_it_started_from():
    tuned = ZooEntry("default", ROWS, "cmd", 2, 2, ZOO["default"], init="models/default/run/base")
    assert "| 2 / 2 steps, fine-tuned from `models/default/run/base` |" in comparison_table([tuned])


def test_table_has_our_rows_then_the_matching_paper_rows_and_flags_unfinished_runs():
    done = ZooEntry("default", ROWS, "cmd", 10, 10, ZOO["default"])
    partial = ZooEntry("feedforward", ROWS, "cmd", 4, 10, ZOO["feedforward"])
    table = comparison_table([done, partial]).splitlines()
    assert table[0].startswith("| model | training | N=8 | N=16 |") and "N=128" in table[0]
    assert table[2].startswith("| **default** | 10 / 10 steps | 100.0 | – |")
    assert "(**unfinished**)" in table[3] and "| 25.0 |" in table[3]
    assert table[4].startswith("| paper: Discrete LSS + error correction |") and table[5].startswith("| paper: E2E Feedforward |")
    assert not partial.finished and done.finished and partial.accuracy_at(64) == 25.0 and partial.accuracy_at(16) is None


def test_write_comparison_writes_table_png_and_html(model_dir, tmp_path):
    a = evaluated(model_dir, tmp_path, "default", 10, 10)
    b = evaluated(model_dir, tmp_path, "feedforward", 3, 10)
    paths = write_comparison([str(a), str(b)], tmp_path / "out")
    assert [p.name for p in paths] == ["zoo.md", "zoo.png", "zoo.html"]
    text = paths[0].read_text()
    assert "![accuracy against N](zoo.png)" in text and "**feedforward** | 3 / 10 steps (**unfinished**)" in text
    assert paths[1].read_bytes().startswith(b"\x89PNG") and "feedforward (step 3)" in paths[2].read_text()
    assert "Rows marked *unfinished*" in text
    only_finished = write_comparison([str(a)], tmp_path / "done")[0].read_text()
    assert "unfinished" not in only_finished and "– marks a size not evaluated" in only_finished


def test_an_unevaluated_model_is_a_user_error_and_nothing_is_written(model_dir, tmp_path, call_cli):
    with pytest.raises(WorkbenchError, match="has no eval.json; run 'workbench eval"):
        load_entry(str(model_dir / "tiny"))
    good = evaluated(model_dir, tmp_path, "default", 1, 1)
    result = call_cli("compare", "--models", f"{good},{model_dir / 'tiny'}", "--out", str(tmp_path / "out"))
    assert result.code == 2 and result.err.count("\n") == 1 and "has no eval.json" in result.err
    assert not (tmp_path / "out").exists()


def test_compare_command_prints_the_table(model_dir, tmp_path, call_cli):
    good = evaluated(model_dir, tmp_path, "default", 1, 1)
    result = call_cli("compare", "--models", str(good), "--out", str(tmp_path / "out"))
    assert result.code == 0 and "| **default** | 1 / 1 steps |" in result.out and (tmp_path / "out" / "zoo.png").exists()


def test_a_recipe_without_a_model_is_listed_as_not_trained(model_dir, tmp_path, monkeypatch):
    root = tmp_path / "models"
    (root / "end-to-end").mkdir(parents=True)
    (root / "end-to-end" / "train.toml").write_text('base = "../default/train.toml"\n')
    shutil.copytree(evaluated(model_dir, tmp_path, "default", 2, 2), root / "default")
    monkeypatch.setenv("WORKBENCH_MODELS", str(root))
    entry = load_entry("end-to-end")
    assert entry.rows == [] and not entry.finished and entry.paper_label == "E2E Recurrent"
    paths = write_comparison(["default", "end-to-end"], tmp_path / "out")
    text = paths[0].read_text()
    assert "| **end-to-end** | **not trained yet** | – |" in text and "| paper: E2E Recurrent |" in text
    with pytest.raises(WorkbenchError, match="unknown model 'nothing'"):
        load_entry("nothing")
