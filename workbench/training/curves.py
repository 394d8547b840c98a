"""A run's training curves as files beside its model: ``training.png`` (for the card) and
``training.html`` (interactive), drawn from the run folder's ``log.jsonl`` and any ``failed-*.jsonl``
branches kept there as findings."""

from __future__ import annotations

import json
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.model.card import FAILED_GLOB, TRAINING_HTML, TRAINING_PNG
from workbench.plots.training import Events, save_training_png, training_figure

LOG = "log.jsonl"


def read_log(path: str | Path) -> Events:
    """The events of one JSONL training log, in file order."""
    path = Path(path)
    events = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise WorkbenchError(f"{path}:{i} is not a JSON line ({exc.msg}); fix or delete that line") from None
    return events


def run_logs(run_dir: str | Path) -> dict[str, Events]:
    """The run's main log first (named ``main``), then each failed branch (named after its file)."""
    run_dir = Path(run_dir)
    logs = {"main": read_log(run_dir / LOG)} if (run_dir / LOG).exists() else {}
    for path in sorted(run_dir.glob(FAILED_GLOB)):
        logs[path.stem] = read_log(path)
    return logs


def write_training_curves(model_folder: str | Path, run_dir: str | Path | None = None) -> list[Path]:
    """Write ``training.png`` and ``training.html`` into ``model_folder`` from ``run_dir`` (default: the
    folder's ``run/``); returns the files written, none when the run left no log."""
    model_folder = Path(model_folder)
    logs = run_logs(run_dir if run_dir is not None else model_folder / "run")
    if "main" not in logs:
        return []
    title = f"Training curves: {model_folder.name}"
    png, html = model_folder / TRAINING_PNG, model_folder / TRAINING_HTML
    save_training_png(logs, png, title=title)
    training_figure(logs, title=title).write_html(html, include_plotlyjs="cdn")
    return [png, html]
