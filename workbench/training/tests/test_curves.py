"""Training curves: the figure's panels and branches, the files beside a model, the card section, bad logs."""

from __future__ import annotations

import json

import pytest

from workbench.errors import WorkbenchError
from workbench.model.card import render_card
from workbench.plots.training import eval_series, phase_starts, series, training_figure
from workbench.training.curves import read_log, run_logs, write_training_curves
from workbench.training.tests.test_training import CPU, tiny_config
from workbench.training.loop import train


def log(phases: list[str], start: int = 10, every: int = 10) -> list[dict]:
    events = []
    for i, phase in enumerate(phases):
        step = start + i * every
        events.append({"event": "train", "step": step, "phase": phase, "loss": 1.0 / step, "lookup_loss": 0.5 / step,
                       "frontier_acc": min(1.0, step / 100), "fan2_acc": 0.5})
        if step % 20 == 0:
            events.append({"event": "eval", "step": step, "phase": phase,
                           "sizes": [{"n_nodes": 16, "graph_acc": step / 100}, {"n_nodes": 32, "graph_acc": step / 200}]})
    return events


def test_series_phases_and_evaluations_are_read_in_step_order():
    events = log(["copy", "copy", "add", "add", "add"])
    assert series(events, "loss")[0] == [10, 20, 30, 40, 50]
    assert series(events, "fan3_acc") == ([], [])
    assert phase_starts(events) == [(10, "copy"), (30, "add")]
    assert eval_series(events) == {16: ([20, 40], [20.0, 40.0]), 32: ([20, 40], [10.0, 20.0])}


def test_figure_shows_every_metric_of_the_main_run_and_only_headlines_of_a_branch():
    fig = training_figure({"main": log(["copy", "add", "add"]), "failed-x": log(["add", "add"], start=20)})
    names = [t.name for t in fig.data]
    assert names == ["main: loss", "main: lookup_loss", "main: frontier_acc", "main: fan2_acc", "main: N=16", "main: N=32",
                     "failed-x: loss", "failed-x: frontier_acc", "failed-x: N=16", "failed-x: N=32"]
    assert fig.data[-1].line.dash == "dash" and fig.data[0].line.dash is None
    assert [a.text for a in fig.layout.annotations if a.text in ("copy", "add")] == ["copy", "add"]
    assert fig.layout.yaxis.type == "log"


def test_curves_files_sit_beside_the_model_and_the_card_shows_them(tmp_path):
    cfg = tiny_config(tmp_path, eval_every=3)
    folder = train(cfg, progress=False, device=CPU)  # export draws the curves from the run's log
    assert (folder / "training.png").read_bytes().startswith(b"\x89PNG")
    assert "Training curves: tiny" in (folder / "training.html").read_text()
    card = render_card(folder)
    assert "### Training curves" in card and "![training curves](training.png)" in card and "failed" not in card
    (folder / "run").mkdir()
    (folder / "run" / "log.jsonl").write_text((cfg.out_dir / "log.jsonl").read_text())
    (folder / "run" / "failed-early.jsonl").write_text(json.dumps(log(["add"])[0]) + "\n")
    assert list(run_logs(folder / "run")) == ["main", "failed-early"]
    assert write_training_curves(folder) == [folder / "training.png", folder / "training.html"]
    assert "dashed curves are failed branches" in render_card(folder)


def test_a_folder_without_a_log_draws_nothing(tmp_path):
    assert write_training_curves(tmp_path) == [] and not any(tmp_path.iterdir())


def test_a_bad_log_line_is_a_one_line_error_naming_it(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps({"event": "train", "step": 1}) + "\n\n{oops\n")
    with pytest.raises(WorkbenchError, match=r"log.jsonl:3 is not a JSON line .*fix or delete") as err:
        read_log(path)
    assert "\n" not in str(err.value)
