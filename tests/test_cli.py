"""The ``workbench`` command end to end: help, info, solve, generate, eval, train, and every bad input.

Successful commands and a sample of failures run in a fresh interpreter (``python -m workbench.cli``);
the full list of bad-input classes calls the same ``main`` in-process, which is the identical code
path at a fraction of the start-up cost.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from workbench.records import parse_sizes
from workbench.errors import WorkbenchError
from workbench.model.checkpoint import WEIGHTS, load_model, save_model
from workbench.model.looped import LoopedModel
from workbench.task.config import TaskConfig
from workbench.task.text import parse_problem, solve_exact

HAND_WRITTEN = """\
# names of my own, in no particular order
total = left + right   # 16 + 9
right = seven + two
two = 2
left = seven + seven + two
seven = 7
copy_of_total = total
"""
NAMES = ["total", "right", "two", "left", "seven", "copy_of_total"]


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


def assert_user_error(result, *fragments: str) -> str:
    """Exit code 2, exactly one stderr line ``error: ...`` containing ``fragments``, nothing on stdout."""
    assert result.code == 2, (result.code, result.err)
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.err and result.out == ""
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# --- help ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [[], ["info"], ["solve"], ["generate"], ["train"], ["eval"], ["robustness"], ["compare"], ["curves"]],
                         ids=["top", "info", "solve", "generate", "train", "eval", "robustness", "compare", "curves"])
def test_help_of_every_command_exits_zero(run_cli, command):
    for flag in ("--help", "-h"):
        result = run_cli(*command, flag)
        assert result.code == 0, result.err
        assert result.out.startswith("Usage: workbench") and result.err == ""


def test_console_script_is_installed(cli_env, tmp_path):
    script = Path(sys.executable).parent / "workbench"
    if not script.exists():
        pytest.skip("no console script beside this interpreter")
    done = subprocess.run([str(script), "--help"], env=cli_env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "solve" in done.stdout


# --- info ----------------------------------------------------------------------------------------------

def test_info_json_has_every_documented_key(run_cli, model_dir):
    result = run_cli("info", "--model", "tiny", "--json")
    assert result.code == 0, result.err
    info = json.loads(result.out)
    for key in ("name", "parameters", "mechanisms", "modulus", "operations", "max_variables", "max_fan_in",
                "trained_on", "eval"):
        assert key in info
    assert info["name"] == "tiny" and info["modulus"] == 23 and info["operations"] == ["+"]
    assert info["max_variables"] == 32 and info["max_fan_in"] == 3 and info["parameters"] > 0
    assert info["trained_on"] is None and info["eval"] is None
    assert info["mechanisms"]["recurrence"] == "looped"


def test_info_text_by_name_and_by_path(call_cli, model_dir):
    by_name = call_cli("info", "--model", "small_pool")
    assert by_name.code == 0
    assert "model       small_pool" in by_name.out and "max_variables 8" in by_name.out
    by_path = call_cli("info", "--model", str(model_dir / "fan2"))
    assert by_path.code == 0 and "max_fan_in 2" in by_path.out


# --- solve ---------------------------------------------------------------------------------------------

def test_solve_prints_a_value_for_every_name_in_file_order(run_cli, tmp_path):
    (tmp_path / "mine.txt").write_text(HAND_WRITTEN)
    result = run_cli("solve", "mine.txt", "--model", "tiny")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert [line.split(" = ")[0] for line in lines[:-2]] == NAMES
    assert all(line.split(" = ")[1] == "?" or 0 <= int(line.split(" = ")[1]) < 23 for line in lines[:-2])
    assert lines[-2] == "# values mod 23, operations +"  # what a sum that wraps past 22 means
    assert lines[-1].startswith("# ") and "iterations" in lines[-1]


def test_solve_json_from_stdin(run_cli):
    result = run_cli("solve", "-", "--model", "tiny", "--json", "--max-steps", "3", input=HAND_WRITTEN)
    assert result.code == 0, result.err
    answer = json.loads(result.out)
    assert set(answer) == {"values", "iterations", "converged", "complete"}
    assert answer["complete"] == all(v is not None for v in answer["values"].values())
    assert set(answer["values"]) == set(NAMES)
    assert isinstance(answer["converged"], bool) and 0 <= answer["iterations"] <= 3


def test_solve_json_from_a_file_in_process(call_cli, tmp_path):
    (tmp_path / "mine.txt").write_text(HAND_WRITTEN)
    result = call_cli("solve", "mine.txt", "--model", "tiny", "--json")
    assert result.code == 0
    answer = json.loads(result.out)
    assert set(answer["values"]) == set(NAMES) and answer["iterations"] <= 2 * len(NAMES)
    same = call_cli("solve", "-", "--model", "tiny", "--json", stdin=HAND_WRITTEN)
    assert json.loads(same.out) == answer  # the same seed maps the same names


def test_solve_jsonl_keeps_ids_and_order_with_one_line_per_input_line(call_cli, tmp_path):
    items = [{"id": "second", "problem": "b = a + a\na = 4\n"}, {"id": 7, "problem": HAND_WRITTEN},
             {"id": "first", "problem": "z = 1"}]
    (tmp_path / "batch.jsonl").write_text("".join(json.dumps(item) + "\n" for item in items))
    result = call_cli("solve", "batch.jsonl", "--model", "tiny", "--batch-size", "2")
    assert result.code == 0, result.err
    lines = [json.loads(line) for line in result.out.splitlines()]
    assert [line["id"] for line in lines] == ["second", 7, "first"]
    assert [set(line["values"]) for line in lines] == [{"a", "b"}, set(NAMES), {"z"}]
    assert all(set(line) == {"id", "values", "iterations", "converged", "complete"} for line in lines)


# --- generate ------------------------------------------------------------------------------------------

def test_generate_prints_problems_whose_ground_truth_is_exact(run_cli):
    result = run_cli("generate", "--nodes", "12", "--count", "5", "--seed", "3", "--operations", "+-*",
                     "--modulus", "11")
    assert result.code == 0, result.err
    lines = [json.loads(line) for line in result.out.splitlines()]
    assert len(lines) == 5 and [line["id"] for line in lines] == [f"3-{i}" for i in range(5)]
    task = TaskConfig(modulus=11, operations=("+", "-", "*"), n_names=128)
    for line in lines:
        problem = parse_problem(line["problem"], task)
        assert len(problem) == 12
        assert line["values"] == solve_exact(problem, 11)
        assert line["depth"] == max(problem.depth.values())


def test_generate_is_deterministic_by_seed(run_cli, tmp_path):
    args = ("generate", "--nodes", "9", "--count", "3")
    first, again, other = run_cli(*args, "--seed", "1"), run_cli(*args, "--seed", "1"), run_cli(*args, "--seed", "2")
    assert first.code == again.code == other.code == 0
    assert first.out == again.out != other.out
    assert len(first.out.splitlines()) == 3


def test_generate_out_writes_the_same_lines_and_they_solve_as_a_batch(call_cli, tmp_path):
    assert call_cli("generate", "--nodes", "10", "--count", "4", "--out", "gen.jsonl").code == 0
    assert call_cli("generate", "--nodes", "10", "--count", "4").out == (tmp_path / "gen.jsonl").read_text()
    result = call_cli("solve", "gen.jsonl", "--model", "tiny")
    assert result.code == 0
    expected = [json.loads(line) for line in (tmp_path / "gen.jsonl").read_text().splitlines()]
    got = [json.loads(line) for line in result.out.splitlines()]
    assert [g["id"] for g in got] == [e["id"] for e in expected]
    assert all(set(g["values"]) == set(e["values"]) for g, e in zip(got, expected))


# --- eval and train ------------------------------------------------------------------------------------

def test_eval_prints_a_table_and_writes_json_png_and_html(run_cli, tmp_path):
    result = run_cli("eval", "--model", "tiny", "--sizes", "8,10", "--count", "2", "--out", "results")
    assert result.code == 0, result.err
    assert "| N | graphs |" in result.out and "| 8 | 2 |" in result.out and "| 10 | 2 |" in result.out
    record = json.loads((tmp_path / "results" / "eval.json").read_text())
    assert record["model"] == "tiny" and [row["n_nodes"] for row in record["sizes"]] == [8, 10]
    assert "--sizes 8,10" in record["command"]
    assert (tmp_path / "results" / "eval.png").read_bytes().startswith(b"\x89PNG")
    assert "plotly" in (tmp_path / "results" / "eval.html").read_text()


def test_eval_without_out_or_record_leaves_the_model_folder_alone(call_cli, model_dir, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(model_dir / "tiny", folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    result = call_cli("eval", "--model", str(folder), "--sizes", "8", "--count", "2")
    assert result.code == 0, result.err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    scratch = tmp_path / "runs" / "eval" / "tiny"
    assert (scratch / "eval.json").exists() and "runs/eval/tiny/eval.json" in result.out


def test_a_recorded_evaluation_is_never_replaced_by_a_smaller_one_unasked(call_cli, model_dir, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(model_dir / "tiny", folder)
    assert call_cli("eval", "--model", str(folder), "--sizes", "8,9", "--count", "3", "--record").code == 0
    big = (folder / "eval.json").read_text()
    assert "--record" in json.loads(big)["command"]
    small = call_cli("eval", "--model", str(folder), "--sizes", "8", "--count", "2", "--record")
    assert_user_error(small, "holds a larger evaluation (6 graphs) than this one (2)")
    assert (folder / "eval.json").read_text() == big
    assert call_cli("eval", "--model", str(folder), "--sizes", "8", "--count", "2", "--record", "--replace").code == 0
    assert json.loads((folder / "eval.json").read_text())["sizes"][0]["count"] == 2
    assert_user_error(call_cli("eval", "--model", str(folder), "--record", "--out", "x"), "--record writes into")
    # an explicit --out naming the model's folder is guarded the same way
    assert_user_error(call_cli("eval", "--model", str(folder), "--out", str(folder), "--sizes", "8", "--count", "1"),
                      "holds a larger evaluation")


def test_eval_into_the_model_folder_updates_its_card(call_cli, model_dir, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(model_dir / "tiny", folder)
    result = call_cli("eval", "--model", str(folder), "--sizes", "8", "--count", "2", "--record")
    assert result.code == 0
    assert (folder / "eval.json").exists() and (folder / "eval.png").exists() and (folder / "eval.html").exists()
    assert "## Evaluation" in (folder / "card.md").read_text()
    info = json.loads(call_cli("info", "--model", str(folder), "--json").out)
    assert [row["n_nodes"] for row in info["eval"]] == [8]
    assert call_cli("eval", "--model", str(folder), "--sizes", "9", "--count", "2", "--tag", "chains", "--record").code == 0
    card = (folder / "card.md").read_text()
    assert "### `chains`" in card and "![chains](chains.png)" in card  # listed with its plot


TRAIN_TOML = """\
name = "cli-tiny"
out = "{root}/runs/{{name}}"
export = "{root}/models/{{name}}"
batch_graphs = 4
warmup_steps = 1
log_every = 2
eval_every = 100
eval_sizes = [8]
eval_count = 1
threads = 1

[model]
n_layers = 1
n_heads = 2
d_model = 16
d_mlp = 32

[task]
modulus = 7
n_names = 16

[[phases]]
name = "copy"
steps = 2
nodes = [7, 8]
fan_in = [1]
"""


def test_train_from_a_config_exports_a_model_with_a_card(run_cli, tmp_path):
    (tmp_path / "train.toml").write_text(TRAIN_TOML.format(root=tmp_path.as_posix()))
    result = run_cli("train", "--config", "train.toml")
    assert result.code == 0, result.err
    folder = tmp_path / "models" / "cli-tiny"
    assert f"exported {folder}" in result.out
    assert {"model.safetensors", "config.json", "card.md"} <= {p.name for p in folder.iterdir()}
    assert "## Training" in (folder / "card.md").read_text()
    assert "![training curves](training.png)" in (folder / "card.md").read_text()
    assert (folder / "training.png").read_bytes().startswith(b"\x89PNG") and (folder / "training.html").exists()
    meta = json.loads((folder / "config.json").read_text())
    assert meta["training"]["steps"] == 2 and meta["training"]["evals"][-1]["sizes"][0]["n_nodes"] == 8
    again = run_cli("train", "--config", "train.toml")
    assert_user_error(again, "--resume")


# --- bad input -----------------------------------------------------------------------------------------

PROBLEM_ERRORS = {
    "malformed line": ("tiny", "a = 3\nb a\n", ["line 2", "no '='"]),
    "cycle": ("tiny", "k = 1\na = b\nb = a + k\n", ["line 2", "cycle"]),
    "undefined variable": ("tiny", "a = 3\nb = a + zz\n", ["line 2", "'zz' is used but never defined"]),
    "defined twice": ("tiny", "a = 3\nb = 4\na = 5\n", ["line 3", "defined twice"]),
    "value out of range": ("tiny", "a = 3\nb = 23\n", ["line 2", "out of range", "0..22"]),
    "negative constant": ("tiny", "a = -4\n", ["line 1", "out of range"]),
    "unsupported operator": ("tiny", "a = 3\nb = a * a\n", ["line 2", "'*' is not supported"]),
    "foreign operator": ("tiny", "a = 3\nb = a / a\n", ["line 2", "'/' is not supported"]),
    "constant in expression": ("tiny", "a = 3\nb = a + 1\n", ["line 2", "constant 1 inside an expression"]),
    "too many variables": ("small_pool", "".join(f"v{i} = {i}\n" for i in range(9)), ["9 variables", "holds 8"]),
    "fan-in above the model's": ("fan2", "a = 1\nb = 2\nc = 3\nd = a + b + c\n", ["line 4", "at most 2"]),
    "empty problem": ("tiny", "# only a comment\n\n   \n", ["no equations"]),
}


@pytest.mark.parametrize("name", list(PROBLEM_ERRORS))
def test_bad_problem_file_is_one_error_line_with_its_line_number(call_cli, tmp_path, name):
    model, text, fragments = PROBLEM_ERRORS[name]
    (tmp_path / "problem.txt").write_text(text)
    before = files_under(tmp_path)
    assert_user_error(call_cli("solve", "problem.txt", "--model", model), *fragments)
    assert_user_error(call_cli("solve", "problem.txt", "--model", model, "--json"), *fragments)
    assert files_under(tmp_path) == before


def test_bad_problem_fails_the_same_way_in_a_fresh_interpreter(run_cli, tmp_path):
    model, text, fragments = PROBLEM_ERRORS["cycle"]
    before = files_under(tmp_path)
    assert_user_error(run_cli("solve", "-", "--model", model, input=text), *fragments)
    assert files_under(tmp_path) == before


def test_bad_problem_on_stdin(call_cli):
    assert_user_error(call_cli("solve", "-", "--model", "tiny", stdin="a = 3\nb = a +\n"), "line 2", "ends with the operator")


def test_missing_problem_file(call_cli):
    assert_user_error(call_cli("solve", "nothere.txt", "--model", "tiny"), "'nothere.txt' does not exist")


def test_problem_file_that_is_not_text(call_cli, tmp_path):
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00\x81")
    assert_user_error(call_cli("solve", "binary.txt", "--model", "tiny"), "not UTF-8")


@pytest.mark.parametrize("second, fragments", [
    ("{not json", ["line 2", "not JSON"]),
    ('["a list"]', ["line 2", '"id"']),
    ('{"id": "x"}', ["line 2", '"problem"']),
    ('{"problem": "a = 1"}', ["line 2", '"id"']),
    ('{"id": "x", "problem": "a = 1\\nb = c"}', ["line 2", "(id 'x')", "line 2: 'c' is used but never defined"]),
], ids=["not-json", "not-object", "no-problem", "no-id", "bad-problem"])
def test_a_bad_jsonl_line_is_answered_with_its_error_and_every_good_line_is_still_solved(call_cli, tmp_path, second, fragments):
    good = json.dumps({"id": "ok", "problem": "a = 1"})
    (tmp_path / "batch.jsonl").write_text(good + "\n" + second + "\n" + good.replace('"ok"', '"ok2"') + "\n")
    before = files_under(tmp_path)
    result = call_cli("solve", "batch.jsonl", "--model", "tiny")
    assert result.code == 2 and "Traceback" not in result.err
    errors = result.err.splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: ") and all(f in errors[0] for f in fragments)
    answers = [json.loads(line) for line in result.out.splitlines()]
    assert [a.get("id") for a in answers][::2] == ["ok", "ok2"] and len(answers) == 3
    assert "values" in answers[0] and "values" in answers[2]  # the good lines lost nothing
    assert set(answers[1]) == {"id", "error"} and errors[0] == "error: " + answers[1]["error"]
    assert files_under(tmp_path) == before


def test_empty_jsonl_batch(call_cli, tmp_path):
    (tmp_path / "batch.jsonl").write_text("\n\n")
    assert_user_error(call_cli("solve", "batch.jsonl", "--model", "tiny"), "holds no problems")


CHECKPOINT_ERRORS = {
    "missing": "has no model.safetensors",
    "corrupt": "corrupt checkpoint",
    "corrupt-config": "corrupt",
    "incompatible": "does not fit its config.json",
}


@pytest.fixture
def broken(model_dir, tmp_path):
    def make(how: str) -> Path:
        folder = tmp_path / "models" / f"broken-{how}"
        shutil.copytree(model_dir / "tiny", folder)
        if how == "missing":
            (folder / WEIGHTS).unlink()
        elif how == "corrupt":
            (folder / WEIGHTS).write_bytes(b"\x00garbage, not safetensors" * 10)
        elif how == "corrupt-config":
            (folder / "config.json").write_text("{ this is not json")
        elif how == "incompatible":
            small = load_model(folder, device="cpu")
            bigger = LoopedModel(replace(small.cfg, d_model=32, n_heads=4), small.task)
            other = save_model(bigger, tmp_path / "models" / "bigger")
            shutil.copy(other / WEIGHTS, folder / WEIGHTS)
            shutil.rmtree(other)
        return folder

    return make


@pytest.mark.parametrize("how", list(CHECKPOINT_ERRORS))
def test_bad_checkpoint_is_one_error_line_for_every_command(call_cli, broken, tmp_path, how):
    folder = broken(how)
    (tmp_path / "p.txt").write_text("a = 1\nb = a\n")
    before = files_under(tmp_path)
    assert_user_error(call_cli("info", "--model", folder), CHECKPOINT_ERRORS[how])
    assert_user_error(call_cli("solve", "p.txt", "--model", folder), CHECKPOINT_ERRORS[how])
    assert_user_error(call_cli("eval", "--model", folder, "--sizes", "8", "--count", "1", "--out", "ev"),
                      CHECKPOINT_ERRORS[how])
    assert files_under(tmp_path) == before


def test_unknown_model_name_lists_the_known_ones(call_cli, tmp_path):
    assert_user_error(call_cli("info", "--model", "nope"), "unknown model 'nope'", "fan2, small_pool, tiny")
    (tmp_path / "p.txt").write_text("a = 1\n")
    assert_user_error(call_cli("solve", "p.txt", "--model", "nope"), "unknown model 'nope'")
    assert_user_error(call_cli("eval", "--model", "nope", "--out", "ev"), "unknown model 'nope'")
    assert not (tmp_path / "ev").exists()


def test_missing_model_folder_path(call_cli, tmp_path):
    assert_user_error(call_cli("info", "--model", str(tmp_path / "no" / "such")), "does not exist")


@pytest.mark.parametrize("sizes", ["8,x", "", "5,8", "8,...,4", "...,8", "8,16,...", "8,16,...,64,80"])
def test_bad_sizes_write_nothing(call_cli, tmp_path, sizes):
    result = call_cli("eval", "--model", "tiny", "--sizes", sizes, "--count", "1", "--out", "ev")
    assert_user_error(result, "--sizes")
    assert not (tmp_path / "ev").exists()


def test_sizes_beyond_the_models_name_pool_write_nothing(call_cli, tmp_path):
    result = call_cli("eval", "--model", "small_pool", "--sizes", "8,16", "--count", "1", "--out", "ev")
    assert_user_error(result, "--sizes", "name pool of 8")
    assert not (tmp_path / "ev").exists()


def test_bad_tag_writes_nothing(call_cli, tmp_path):
    assert_user_error(call_cli("eval", "--model", "tiny", "--tag", "../up", "--out", "ev"), "--tag")
    assert not (tmp_path / "ev").exists()


@pytest.mark.parametrize("args, fragment", [
    (["solve", "p.txt", "--frobnicate"], "--frobnicate"),
    (["info", "--verbose"], "--verbose"),
    (["frobnicate"], "No such command"),
    (["solve"], "Missing argument"),
    (["solve", "p.txt", "--max-steps", "0"], "--max-steps"),
    (["generate", "--nodes", "3", "--count", "2", "--out", "gen.jsonl"], "--nodes"),
    (["generate", "--count", "2", "--out", "gen.jsonl"], "--nodes"),
    (["eval", "--count", "zero", "--out", "ev"], "--count"),
    (["train"], "--config"),
])
def test_bad_options_are_one_error_line_and_write_nothing(call_cli, tmp_path, args, fragment):
    (tmp_path / "p.txt").write_text("a = 1\n")
    before = files_under(tmp_path)
    line = assert_user_error(call_cli(*args), fragment)
    assert "--help" in line
    assert files_under(tmp_path) == before


def test_unknown_option_in_a_fresh_interpreter(run_cli, tmp_path):
    assert_user_error(run_cli("solve", "p.txt", "--frobnicate"), "No such option", "see 'workbench solve --help'")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("args, fragment", [
    (["--operations", "/"], "operations must be"),
    (["--out", "missing/folder/gen.jsonl"], "does not exist"),
])
def test_bad_generate_input_writes_nothing(call_cli, tmp_path, args, fragment):
    before = files_under(tmp_path)
    assert_user_error(call_cli("generate", "--nodes", "9", "--count", "2", *args), fragment)
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("content, fragment", [
    (None, "does not exist"),
    ("name = \n", "cannot parse"),
    ('name = "x"\n', "at least one [[phases]]"),
    ('name = "x"\nepochs = 3\n[[phases]]\nname = "a"\nsteps = 1\n', "unknown training config keys"),
    ('name = "x"\n[task]\nmodulus = 5\n[[phases]]\nname = "a"\nsteps = 1\nmodulus = 9\n', "n_values >= 9"),
    ('name = "x"\n[task]\nn_names = 16\n[[phases]]\nname = "a"\nsteps = 1\nnodes = [8, 32]\n', "n_names >= 32"),
])
def test_bad_training_config_is_one_error_line(call_cli, tmp_path, content, fragment):
    if content is not None:
        (tmp_path / "train.toml").write_text(content)
    before = files_under(tmp_path)
    assert_user_error(call_cli("train", "--config", "train.toml"), fragment)
    assert files_under(tmp_path) == before


def test_curves_redraw_from_a_run_folder_and_a_model_without_a_log_is_one_error_line(call_cli, tmp_path):
    (tmp_path / "train.toml").write_text(TRAIN_TOML.format(root=tmp_path.as_posix()))
    assert call_cli("train", "--config", "train.toml").code == 0
    folder, run = tmp_path / "models" / "cli-tiny", tmp_path / "runs" / "cli-tiny"
    (folder / "training.png").unlink()
    card = (folder / "card.md").read_text().replace("![training curves](training.png)", "")
    (folder / "card.md").write_text(card)
    before = files_under(tmp_path)
    assert_user_error(call_cli("curves", "--model", str(folder)), "no training log", "--run")  # no run/ in the folder
    assert files_under(tmp_path) == before
    result = call_cli("curves", "--model", str(folder), "--run", str(run))
    assert result.code == 0 and "training.png" in result.out
    assert "![training curves](training.png)" in (folder / "card.md").read_text()


def test_resume_without_a_checkpoint_is_one_error_line(call_cli, tmp_path):
    (tmp_path / "train.toml").write_text(TRAIN_TOML.format(root=tmp_path.as_posix()))
    assert_user_error(call_cli("train", "--config", "train.toml", "--resume"), "no checkpoint to resume")
    assert not (tmp_path / "models").exists()


# --- sizes ---------------------------------------------------------------------------------------------

def test_sizes_expand_ranges_and_pass_lists_through():
    assert parse_sizes("8,16,...,64") == [8, 16, 24, 32, 40, 48, 56, 64]
    assert parse_sizes("8, 32") == [8, 32]
    assert parse_sizes("7,8,10,12,...,16") == [7, 8, 10, 12, 14, 16]
    with pytest.raises(WorkbenchError):
        parse_sizes("6,8")


# --- a perfect model: every answer path maps values back to the right names ----------------------------

def oracle_step(model):
    """A stand-in for ``model.step`` that computes, like a perfect model, every value whose operands are known."""
    import torch

    from workbench.task import vocab as V
    from workbench.task.config import ALL_OPERATIONS
    from workbench.task.text import _APPLY

    empty, p = model.vocab.empty, model.task.modulus

    def step(state, tap=None, hidden=None):
        out = state.clone()
        for b, seq in enumerate(state.tolist()):
            values = {}  # name -> value at its defining position (the token after '=')
            equations, current = [], []
            for pos, (syn, var, op, val) in enumerate(seq):
                if syn == V.EQUALS:
                    name, value = seq[pos + 1][1], seq[pos + 1][3]
                    values[name] = value
                    equations.append((current, pos + 1))
                    current = []
                elif syn in (V.VARIABLE, V.VALUE, V.OPERATION) and not (pos and seq[pos - 1][0] == V.EQUALS):
                    current.append((syn, var, op, val))
            for tokens, rhs in equations:
                if tokens[0][0] == V.VALUE:
                    out[b, rhs, V.F_VALUE] = tokens[0][3]
                    continue
                operands = [values[t[1]] for t in tokens if t[0] == V.VARIABLE]
                ops = [ALL_OPERATIONS[t[2]] for t in tokens if t[0] == V.OPERATION]
                if empty in operands:
                    continue
                acc = operands[0]
                for o, x in zip(ops, operands[1:]):
                    acc = _APPLY[o](acc, x) % p
                out[b, rhs, V.F_VALUE] = acc
        logits = [10.0 * torch.nn.functional.one_hot(out[..., f], n).float() for f, n in enumerate(model.vocab.sizes)]
        return logits, torch.zeros(*state.shape[:2], model.cfg.d_model)

    return step


@pytest.fixture
def perfect_model(monkeypatch):
    """Every ``load_model`` in this process returns models that step like a perfect one."""
    from workbench.model import checkpoint

    real = checkpoint.load_model

    def load(*args, **kwargs):
        model = real(*args, **kwargs)
        model.step = oracle_step(model)
        return model

    monkeypatch.setattr(checkpoint, "load_model", load)


def test_solve_with_a_perfect_model_gives_exact_values_after_depth_plus_one_steps(call_cli, perfect_model):
    result = call_cli("solve", "-", "--model", "tiny", "--json", stdin=HAND_WRITTEN)
    assert result.code == 0
    answer = json.loads(result.out)
    problem = parse_problem(HAND_WRITTEN)
    assert answer["values"] == solve_exact(problem, 23)
    assert answer["iterations"] == max(problem.depth.values()) + 1 and answer["converged"]
    text = call_cli("solve", "-", "--model", "tiny", "--seed", "5", stdin=HAND_WRITTEN)
    assert text.out.splitlines()[:-2] == [f"{name} = {solve_exact(problem, 23)[name]}" for name in NAMES]
    assert text.out.splitlines()[-1] == "# 4 iterations, converged"
    assert answer["complete"] and text.err == ""


def test_solve_flags_an_incomplete_answer_in_text_json_and_stderr(call_cli, perfect_model):
    """A run that stops with EMPTY slots is not 'solved': two steps cannot fill a depth-3 chain."""
    chain = "a = 1\nb = a\nc = b\nd = c\n"
    text = call_cli("solve", "-", "--model", "tiny", "--max-steps", "2", stdin=chain)
    assert text.code == 0
    assert text.out.splitlines()[-1].endswith("INCOMPLETE: 2 variables unsolved")
    assert text.err.splitlines() == ["warning: stopped at the step cap with 2 of 4 variables unsolved: c, d"]
    as_json = json.loads(call_cli("solve", "-", "--model", "tiny", "--max-steps", "2", "--json", stdin=chain).out)
    assert as_json["complete"] is False and as_json["values"]["d"] is None


def test_solve_batch_with_a_perfect_model_matches_the_generated_ground_truth(call_cli, tmp_path, perfect_model):
    assert call_cli("generate", "--nodes", "14", "--count", "6", "--seed", "9", "--out", "gen.jsonl").code == 0
    result = call_cli("solve", "gen.jsonl", "--model", "tiny", "--batch-size", "4")
    assert result.code == 0
    expected = [json.loads(line) for line in (tmp_path / "gen.jsonl").read_text().splitlines()]
    got = [json.loads(line) for line in result.out.splitlines()]
    assert [g["id"] for g in got] == [e["id"] for e in expected]
    for g, e in zip(got, expected):
        assert g["values"] == e["values"] and g["iterations"] == e["depth"] + 1 and g["converged"]


def test_eval_of_a_perfect_model_solves_everything(call_cli, tmp_path, perfect_model):
    result = call_cli("eval", "--model", "tiny", "--sizes", "8,12", "--count", "3", "--out", "ev")
    assert result.code == 0
    rows = json.loads((tmp_path / "ev" / "eval.json").read_text())["sizes"]
    assert [(r["graph_acc"], r["node_acc"], r["converged"]) for r in rows] == [(1.0, 1.0, 1.0)] * 2
    assert all(r["mean_iterations"] == pytest.approx(r["mean_depth"] + 1) for r in rows)
    assert "| 8 | 3 | 100.0 | 100.0 |" in result.out


# --- robustness and graph families -----------------------------------------------------------------------

def test_eval_of_one_family_writes_its_own_record(call_cli, tmp_path):
    result = call_cli("eval", "--model", "tiny", "--family", "hub", "--sizes", "16", "--count", "2", "--out", "ev")
    assert result.code == 0, result.err
    record = json.loads((tmp_path / "ev" / "eval-hub.json").read_text())
    assert record["command"].endswith("--family hub") and record["sizes"][0]["n_nodes"] == 16
    assert not (tmp_path / "ev" / "eval.json").exists()  # the uniform record is never replaced by a family's


def test_robustness_writes_one_record_with_every_family_asked_for(call_cli, tmp_path):
    (tmp_path / "rb").mkdir()
    result = call_cli("robustness", "--model", "tiny", "--families", "hub,hub-chain,deep", "--sizes", "12,16",
                      "--count", "2", "--out", "rb")
    assert result.code == 0, result.err
    record = json.loads((tmp_path / "rb" / "robustness.json").read_text())
    assert list(record["families"]) == ["hub", "hub-chain", "deep"]
    assert all([r["n_nodes"] for r in rows] == [12, 16] for rows in record["families"].values())
    assert "| hub | fan-out |" in result.out and "| hub-chain | fan-out and depth |" in result.out


@pytest.mark.parametrize("args, fragment", [
    (["robustness", "--model", "tiny", "--families", "hubs"], "unknown graph family 'hubs'"),
    (["robustness", "--model", "tiny", "--families", " , "], "--families is empty"),
    (["robustness", "--model", "tiny", "--sizes", "12", "--record", "--out", "rb"], "--record writes into"),
    (["eval", "--model", "tiny", "--family", "hub", "--recent", "2"], "shape the uniform family only"),
    (["eval", "--model", "tiny", "--family", "wide"], "unknown graph family 'wide'"),
])
def test_bad_robustness_and_family_input_is_one_line(call_cli, args, fragment):
    assert_user_error(call_cli(*args), fragment)


def test_the_card_shows_the_robustness_table(tmp_path):
    from workbench.model.card import render_card, write_robustness_record

    from workbench.model.config import ModelConfig

    folder = tmp_path / "m"
    save_model(LoopedModel(ModelConfig(n_layers=1, n_heads=2, d_model=16), TaskConfig()), folder)
    rows = [{"n_nodes": n, "count": 4, "graph_acc": a, "node_acc": 0.5} for n, a in ((32, 1.0), (64, 0.25))]
    write_robustness_record(folder, "m", "workbench robustness --model m", {"uniform": rows, "hub": rows[:1]})
    card = render_card(folder)
    assert "## Robustness" in card and "| family | stresses | N=32 | N=64 |" in card
    assert "| hub | fan-out | 100.0 (50.0) | – |" in card and "| uniform | size (the paper's law) | 100.0 (50.0) | 25.0 (50.0) |" in card


def test_app_on_a_port_already_in_use_is_one_line_and_exit_2(run_cli):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("app", "--model", "tiny", "--port", str(port))
    assert result.code == 2 and result.out == ""
    assert result.err.splitlines() == [f"error: port {port} on 127.0.0.1 is already in use; pass --port with a free port "
                                       "or stop the program that holds it"]


def test_app_without_an_installed_app_is_one_line_and_exit_2(call_cli, monkeypatch):
    """``workbench app`` finds the app through the ``workbench.apps`` entry points, never by file path."""
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "distributions", lambda: iter(()))
    result = call_cli("app", "--model", "tiny")
    assert result.code == 2 and result.out == ""
    assert result.err.splitlines() == ["error: no app is installed (entry point group 'workbench.apps'); "
                                       "run pip install -e . in a clone of the repository"]
