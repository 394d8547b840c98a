"""The probes/ scripts end to end on the tiny model in a tmp dir: results page, JSON, plots, errors, determinism."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from workbench.analysis.report import ANALYSES, SCRIPTS
from workbench.analysis.results import SCHEMA, load_result

PROBES = Path(__file__).resolve().parents[3] / "probes"


def script(name: str):
    """A probes/ script as a module (its click ``command`` and ``main``)."""
    spec = importlib.util.spec_from_file_location(f"probes_{name}", PROBES / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def call(module, args, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        module.main(module.command, [str(a) for a in args])
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def test_reproduce_runs_every_script_and_writes_the_page(model_dir, tmp_path, capsys):
    doc = tmp_path / "docs" / "results.md"
    code, out, err = call(script("reproduce_paper.py"), ["--models", model_dir / "tiny", "--quick", "--out",
                                                          tmp_path / "res", "--doc", doc, "--quiet"], capsys)
    assert code == 0, err
    folder = tmp_path / "res" / "tiny"
    for analysis in ANALYSES:
        result = load_result(folder / f"{analysis}.json")
        assert result["schema"] == SCHEMA and result["analysis"] == analysis
        assert result["model"]["n_layers"] == 2 and result["params"]["seed"] == 0
        assert (folder / f"{analysis}.html").is_file() and result["figures"]
        for fig in result["figures"]:
            assert (folder / fig["png"]).stat().st_size > 1000
            assert (doc.parent / "results" / "tiny" / fig["png"]).is_file()
    page = doc.read_text()
    assert "The paper's findings beside ours" in page and "results/tiny/probes.accuracy.png" in page
    assert all(f"probes/{SCRIPTS[a]}" in page for a in ANALYSES)
    # the page again from the stored JSONs, nothing rerun
    code, _, err = call(script("reproduce_paper.py"), ["--models", model_dir / "tiny", "--reuse", "--out",
                                                        tmp_path / "res", "--doc", doc, "--quiet"], capsys)
    assert code == 0, err


def test_a_script_is_deterministic(model_dir, tmp_path, capsys):
    args = ["--model", model_dir / "tiny", "--count", "4", "--nodes", "8", "--steps", "2", "--quiet", "--no-plots"]
    runs = []
    for out in ("a", "b"):
        code, _, err = call(script("attention_routing.py"), args + ["--out", tmp_path / out], capsys)
        assert code == 0, err
        runs.append(json.loads((tmp_path / out / "routing.json").read_text())["results"])
    assert runs[0] == runs[1]


@pytest.mark.parametrize("name, args, words", [
    ("linear_probes.py", ["--model", "no_such_model"], "unknown model"),
    ("linear_probes.py", ["--tasks", "colour@rhs", "--count", "4", "--nodes", "8"], "unknown probing tasks"),
    ("head_attribution.py", ["--fan-ins", "one"], "--fan-ins"),
    ("error_correction.py", ["--sizes", "8,x"], "--sizes"),
    ("mlp_analysis.py", ["--layer", "5", "--count", "2", "--nodes", "8"], "layer must be"),
    ("bottleneck_lens.py", ["--nodes", "200"], "more names"),
    ("reproduce_paper.py", ["--only", "astrology"], "unknown analyses"),
])
def test_bad_input_is_one_line_on_stderr_and_exit_2(model_dir, tmp_path, capsys, name, args, words):
    if "--model" not in args and name != "reproduce_paper.py":
        args = ["--model", model_dir / "tiny"] + args
    if name == "reproduce_paper.py":
        args = ["--models", model_dir / "tiny"] + args
    code, out, err = call(script(name), args + ["--out", tmp_path, "--quiet"], capsys)
    assert code == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and words in err
    assert not list(tmp_path.glob("*.json"))


# --- the independent check ------------------------------------------------------------------------------

def test_independent_problems_follow_the_task_law_and_their_truth_is_right():
    import random

    check = script("independent_check.py")
    text, truth, depth = check.make_problem(24, random.Random(0), None, 23)
    lines = [line.split(" = ") for line in text.splitlines()]
    assert len(lines) == 24 == len(truth) and sum(rhs.isdigit() for _, rhs in lines) == check.LEAVES
    defined = dict(lines)
    for name, rhs in lines:  # every right-hand side evaluates to the recorded value
        parts = rhs.split(" + ")
        assert 1 <= len(parts) <= 3 and len(set(parts)) == len(parts)
        expect = int(rhs) if rhs.isdigit() else sum(truth[p] for p in parts) % 23
        assert truth[name] == expect and all(p in defined for p in parts if not rhs.isdigit())
    _, _, chain_depth = check.make_problem(40, random.Random(0), 1, 23)
    assert chain_depth == 40 - check.LEAVES and depth < chain_depth  # recent=1: one long chain


def test_independent_check_scores_through_workbench_solve_and_records_it(model_dir, tmp_path, capsys, monkeypatch):
    import shutil

    monkeypatch.setenv("WORKBENCH_DEVICE", "cpu")
    folder = tmp_path / "tiny"
    shutil.copytree(model_dir / "tiny", folder)
    check = script("independent_check.py")
    code, out, err = call(check, ["--model", folder, "--sizes", "8,10", "--count", "3", "--tag", "indep"], capsys)
    assert code == 0, err
    record = json.loads((folder / "indep.json").read_text())
    assert [r["n_nodes"] for r in record["sizes"]] == [8, 10] and all(r["count"] == 3 for r in record["sizes"])
    assert all(0 <= r["graph_acc"] <= r["node_acc"] <= 1 for r in record["sizes"]) and "--sizes 8,10" in record["command"]
    assert "### `indep`" in (folder / "card.md").read_text() and "| 8 | 3 |" in out


def test_independent_check_bad_tag_is_one_line_and_writes_nothing(model_dir, tmp_path, capsys):
    check = script("independent_check.py")
    code, _, err = call(check, ["--model", model_dir / "tiny", "--tag", "../x"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--tag" in err
    assert not (model_dir / "x.json").exists()


def test_independent_hub_and_chain_problems_stress_fan_out_and_records_carry_each_name_seed(model_dir, tmp_path, capsys, monkeypatch):
    import collections
    import random
    import shutil

    check = script("independent_check.py")
    text, truth, depth = check.make_problem(128, random.Random(3), None, 23, "hub")
    reads = collections.Counter(p.strip() for line in text.splitlines() for p in line.split("=")[1].split("+")
                                if not p.strip().isdigit())
    assert 30 <= reads.most_common(2)[1][1] and reads.most_common(1)[0][1] <= 60  # two hubs, 30-60 readers each
    text, truth, depth = check.make_problem(64, random.Random(4), None, 23, "chain")
    w = collections.Counter(line.split("+")[-1].strip() for line in text.splitlines() if "+" in line).most_common(1)[0][0]
    assert depth == 62 and sum(line.endswith(f"+ {w}") for line in text.splitlines()) == 62
    monkeypatch.setenv("WORKBENCH_DEVICE", "cpu")
    folder = tmp_path / "tiny"
    shutil.copytree(model_dir / "tiny", folder)
    code, out, err = call(check, ["--model", folder, "--sizes", "12", "--count", "2", "--family", "chain",
                                  "--name-seeds", "0,1,2", "--tag", "chains"], capsys)
    assert code == 0, err
    rows = json.loads((folder / "chains.json").read_text())["sizes"]
    assert [r["name_seed"] for r in rows] == [0, 1, 2] and all(0 <= r["complete"] <= 1 for r in rows)
    assert "| name seed |" in out and "% complete" in out
    code, _, err = call(check, ["--model", folder, "--name-seeds", "a,b"], capsys)
    assert code == 2 and "--name-seeds" in err


#: a script option's name -> the analysis parameter it sets, where they differ
OPTION_TO_PARAMETER = {"nodes": "n_nodes", "steps": "n_steps", "probe_kind": "kind"}
COMMON_OPTIONS = {"model_name", "out", "seed", "threads", "quiet", "no_plots"}


def as_value(text: str, like):
    """A comma-separated option value read like the analysis default ``like`` (a sequence)."""
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    return tuple(int(p) if p.lstrip("-").isdigit() else p for p in parts) if isinstance(like, (tuple, list)) else text


@pytest.mark.parametrize("analysis", sorted(SCRIPTS))
def test_every_script_option_defaults_to_its_analysis_default(analysis):
    """One place for each default: a probes/ script's options default to its analysis' ``run`` (or the probe's)."""
    import inspect

    import workbench.analysis
    from workbench.analysis.probes import LinearProbe

    sources = [getattr(workbench.analysis, analysis).run] + [LinearProbe] * (analysis == "probes")
    defaults = {}
    for fn in reversed(sources):
        defaults.update({n: p.default for n, p in inspect.signature(fn).parameters.items()
                         if p.default is not inspect.Parameter.empty})
    command = script(SCRIPTS[analysis]).command
    own = [p for p in command.params if p.name not in COMMON_OPTIONS]
    assert own, f"{SCRIPTS[analysis]} has no options of its own"
    for option in own:
        name = OPTION_TO_PARAMETER.get(option.name, option.name)
        assert name in defaults, f"{SCRIPTS[analysis]} --{option.name} sets no parameter of {analysis}.run"
        expected = defaults[name]
        got = as_value(option.default, expected) if isinstance(option.default, str) else option.default
        assert got == tuple(expected) if isinstance(expected, (tuple, list)) else got == expected, \
            f"{SCRIPTS[analysis]} --{option.name} defaults to {option.default!r}, {analysis}.run's {name} to {expected!r}"
