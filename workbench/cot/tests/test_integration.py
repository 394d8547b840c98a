"""The chain-of-thought model through the workbench's shared doors: load_model, solve, and the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from workbench.cli import main
from workbench.testing import in_process_cli
from workbench.cot.model import CotConfig, CotModel, save_cot
from workbench.model.checkpoint import load_model
from workbench.solving import Solution, solve
from workbench.task.config import TaskConfig

PROBLEM = "a = 3\nb = a + a\nc = b\n"


@pytest.fixture
def workbench(monkeypatch, capsys):
    """``workbench(*args, stdin=None) -> (exit code, stdout, stderr)``: the CLI's ``main`` in this process."""
    monkeypatch.setenv("WORKBENCH_DEVICE", "cpu")
    return in_process_cli(main, monkeypatch, capsys)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    torch.manual_seed(0)
    return save_cot(CotModel(CotConfig(n_layers=1, n_heads=2, d_model=16, n_ctx=128), TaskConfig()),
                    tmp_path_factory.mktemp("models") / "cot")


def test_load_model_opens_a_chain_of_thought_folder_and_solve_answers_through_it(folder):
    model = load_model(folder, device="cpu")
    assert model.kind == "chain-of-thought" and model.meta["name"] == "cot"
    sol = solve(model, PROBLEM)
    assert isinstance(sol, Solution) and list(sol.values) == ["a", "b", "c"]
    assert len(solve(model, [PROBLEM, PROBLEM], batch_size=1)) == 2


def test_cli_solve_answers_with_the_json_contract(folder, workbench):
    code, out, err = workbench("solve", "-", "--model", folder, "--json", stdin=PROBLEM)
    assert code == 0, err
    answer = json.loads(out.strip().splitlines()[-1])
    assert set(answer) == {"values", "iterations", "converged", "complete"} and set(answer["values"]) == {"a", "b", "c"}
    code, out, err = workbench("solve", "-", "--model", folder, stdin="a = 3\nb = a / 2\n")
    assert code == 2 and out == "" and err.startswith("error: ") and len(err.splitlines()) == 1


def test_cli_train_runs_a_chain_of_thought_config(tmp_path, workbench):
    config = tmp_path / "cot.toml"
    config.write_text(f'''kind = "chain-of-thought"
name = "cot-cli"
out = "{(tmp_path / 'run').as_posix()}"
export = "{(tmp_path / 'model').as_posix()}"
batch_graphs = 2
log_every = 1
eval_every = 2
eval_sizes = [8]
eval_count = 2
checkpoint_every = 2
model = {{ n_layers = 1, n_heads = 2, d_model = 16, n_ctx = 256 }}
phases = [{{ name = "a", steps = 2, nodes = [7, 9] }}]
''')
    code, out, err = workbench("train", "--config", config, "--threads", "1")
    assert code == 0, err
    assert "exported" in out and (tmp_path / "model" / "model.safetensors").exists()
    assert load_model(tmp_path / "model", device="cpu").meta["training"]["steps"] == 2
    code, out, err = workbench("train", "--config", config, "--threads", "1")
    assert code == 2 and "already holds a checkpoint" in err and len(err.splitlines()) == 1


def test_cli_info_and_eval_describe_and_score_a_chain_of_thought_model(folder, workbench, tmp_path):
    code, out, err = workbench("info", "--model", folder, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["mechanisms"]["kind"] == "chain-of-thought" and info["architecture"]["n_ctx"] == 128
    code, out, err = workbench("eval", "--model", folder, "--sizes", "8", "--count", "3", "--out", tmp_path / "ev")
    assert code == 0, err
    record = json.loads((tmp_path / "ev" / "eval.json").read_text())
    (row,) = record["sizes"]
    assert row["n_nodes"] == 8 and row["count"] == 3 and 0.0 <= row["graph_acc"] <= row["node_acc"] + 1e-9 <= 1.0 + 1e-9
    assert row["mean_iterations"] > 0  # trace words generated
