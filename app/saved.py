"""What the app shows from files saved beside the models: evaluations, robustness tables, training logs, probe results.

Every reader turns an unreadable file into a missing entry or a one-line note, never a traceback.
"""

from __future__ import annotations

import json
from typing import Any

from app import state
from workbench.errors import WorkbenchError

MAX_PROBE_BYTES = 5_000_000  # a probe results file larger than this is not shown


def model_evaluations() -> dict[str, list[dict]]:
    """{label: rows} of every model's accuracy against N: its eval.json, else its last training-time evaluation."""
    from workbench.model.checkpoint import models_dir, read_config

    curves: dict[str, list[dict]] = {}
    for name in state.model_names():
        folder = models_dir() / name
        try:
            record = json.loads((folder / "eval.json").read_text()) if (folder / "eval.json").is_file() else None
            if record and isinstance(record.get("sizes"), list) and record["sizes"]:
                curves[name] = record["sizes"]
                continue
            evals = read_config(folder).get("training", {}).get("evals") or []
            if evals and evals[-1].get("sizes"):
                curves[f"{name} (training eval at step {evals[-1].get('step', '?')})"] = evals[-1]["sizes"]
        except (OSError, ValueError, WorkbenchError, AttributeError):
            continue  # an unreadable file shows as a missing model, never as a traceback
    return curves


def model_robustness(model: str) -> dict[str, list[dict]]:
    """{family: rows} from ``models/<model>/robustness.json`` (``workbench robustness``); {} when absent or unreadable."""
    from workbench.model.card import read_robustness

    try:
        record = read_robustness(state.model_folder(model))
    except WorkbenchError:  # no such model
        return {}
    return record["families"] if record else {}


def training_logs(model: str) -> dict[str, list[dict]]:
    """The model's training log (``main``) and failed branches from ``models/<model>/run/``; {} when none."""
    from workbench.training.curves import run_logs

    return run_logs(state.model_folder(model) / "run")


def saved_head_effects(model: str) -> dict[tuple[int, int], tuple[str, float]]:
    """``(layer, head) -> (verdict, accuracy drop)`` of every head with a role in the model's saved
    ``probes/routing.json`` (the causal check of ``workbench.analysis.routing``); empty when not run."""
    for name, data in probe_results(model):
        if name != "routing.json" or not isinstance(data, dict):
            continue
        roles = (data.get("results") or {}).get("roles") or []
        return {(r["layer"], r["head"]): (r["verdict"], float(r.get("ablation_drop") or 0.0))
                for r in roles if isinstance(r, dict) and "verdict" in r and "layer" in r and "head" in r}
    return {}


def probe_results(model: str) -> list[tuple[str, Any]]:
    """``[(file name, parsed JSON or an error line)]`` of every ``*.json`` under ``models/<model>/probes/``."""
    folder = state.model_folder(model) / "probes"
    out: list[tuple[str, Any]] = []
    for path in sorted(folder.rglob("*.json")) if folder.is_dir() else []:
        rel = str(path.relative_to(folder))
        if path.stat().st_size > MAX_PROBE_BYTES:
            out.append((rel, f"skipped: larger than {MAX_PROBE_BYTES // 1_000_000} MB"))
            continue
        try:
            out.append((rel, json.loads(path.read_text())))
        except (OSError, ValueError) as exc:
            out.append((rel, f"unreadable: {type(exc).__name__}"))
    return out


__all__ = ["model_evaluations", "model_robustness", "training_logs", "saved_head_effects", "probe_results", "MAX_PROBE_BYTES"]
