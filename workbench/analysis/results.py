"""Analysis results on disk: one JSON per analysis and model, with its PNG and HTML plots beside it.

Layout: ``models/<name>/probes/<analysis>.json`` (or ``--out``), ``<analysis>.<figure>.png`` per
figure and ``<analysis>.html`` with all of them (interactive). The JSON envelope (schema
``workbench-analysis/1``) is the same for every analysis:

    {
      "schema": "workbench-analysis/1",
      "analysis": "probes" | "lens" | "routing" | "attribution" | "mlp" | "codebook" | "correction" | "patching",
      "title": str,
      "model": {"name", "path", "n_layers", "n_heads", "d_model", "modulus", "mechanisms",
                "training": {"steps", "total_steps", "finished", "phase", "phase_info": {"fan_in", "nodes",
                             "modulus"} | null, "phases": [names]}},
      "params": {...},          # every option of the run, the seed included: rerunning them gives the same results
      "runtime_s": float,
      "summary": {label: number or str},  # headline numbers as people read them (the app shows these)
      "fields": {name: value},  # the same numbers by field name (``summary.summary_of`` reads them; older files lack it)
      "results": {...},         # the analysis' arrays as nested lists (axes named in each module's docstring)
      "figures": [{"stem", "title", "png"}], "html": "<analysis>.html"
    }

NaN becomes null; floats are rounded to 5 significant digits.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError

SCHEMA = "workbench-analysis/1"
#: result["analysis"] -> the module of ``workbench.analysis`` whose ``figures(result)`` draws it
BUILDERS = {name: name for name in ("probes", "lens", "routing", "attribution", "mlp", "codebook", "correction", "patching")}


def jsonable(x: Any) -> Any:
    """``x`` with numpy arrays, tensors and scalars as plain Python; NaN and inf as None.

    >>> jsonable({"a": np.array([1.0, np.nan]), "b": (np.int64(2), 0.123456789)})
    {'a': [1.0, None], 'b': [2, 0.12346]}
    """
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        if not math.isfinite(v):
            return None
        return float(f"{v:.5g}")
    return x


def model_summary(model) -> dict:
    """What the results page needs to know about a model: name, size, mechanisms, how far it trained."""
    meta = getattr(model, "meta", {}) or {}
    training = meta.get("training", {}) or {}
    phases = (training.get("config") or {}).get("phases") or []
    phase = next((p for p in phases if p.get("name") == training.get("last_phase")), None)
    return {"name": meta.get("name", "unnamed"), "path": meta.get("path"), "n_layers": model.cfg.n_layers,
            "n_heads": model.cfg.n_heads, "d_model": model.cfg.d_model, "modulus": model.task.modulus,
            "mechanisms": model.cfg.mechanisms,
            "training": {"steps": training.get("steps"), "total_steps": training.get("total_steps"),
                         "finished": training.get("finished"), "phase": training.get("last_phase"),
                         "phase_info": None if phase is None else {k: phase.get(k) for k in ("fan_in", "nodes", "modulus")},
                         "phases": [p.get("name") for p in phases]}}


def make_result(analysis: str, title: str, model, params: dict, results: dict, summary,
                runtime_s: float) -> dict:
    """The JSON envelope of one analysis run; a typed ``summary`` (``workbench.analysis.summary.Summary``) is
    written twice: ``"summary"`` its labels, ``"fields"`` its fields."""
    fields = None
    if hasattr(summary, "labels") and hasattr(summary, "fields"):
        summary, fields = summary.labels(), summary.fields()
    envelope = {"schema": SCHEMA, "analysis": analysis, "title": title, "model": model_summary(model),
                "params": params, "runtime_s": runtime_s, "summary": summary, "results": results}
    if fields is not None:
        envelope["fields"] = fields
    return jsonable(envelope)


def output_dir(model, out: str | Path | None) -> Path:
    """``out``, or the model folder's ``probes/``."""
    if out is not None:
        return Path(out)
    path = (getattr(model, "meta", {}) or {}).get("path")
    if path is None:
        raise WorkbenchError("this model has no folder; give --out")
    return Path(path) / "probes"


def save_result(result: dict, folder: str | Path, *, plots: bool = True) -> Path:
    """Write ``<analysis>.json`` (and its PNGs and HTML) into ``folder``; returns the JSON path."""
    from workbench.model.checkpoint import write_text_atomic
    from workbench.plots.analysis import save_png, write_html

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = result["analysis"]
    result = dict(result)
    if plots:
        figs = figures_for(result)
        result["figures"] = [{"stem": f.stem, "title": f.title, "png": f"{name}.{f.stem}.png"} for f in figs]
        result["html"] = f"{name}.html"
        for f in figs:
            save_png(f, folder / f"{name}.{f.stem}.png")
        model = result["model"]["name"]
        write_html(figs, folder / f"{name}.html", title=f"{result['title']} — model {model}",
                   intro=_intro(result))
    path = folder / f"{name}.json"
    write_text_atomic(path, json.dumps(result, indent=1) + "\n")
    return path


def figures_for(result: dict) -> list:
    """The figures (``workbench.plots.analysis.Figure`` specs) of an analysis result, from its JSON alone.

    >>> figures_for({"analysis": "not-an-analysis"})
    []
    """
    name = BUILDERS.get(result.get("analysis", ""))
    if name is None:
        return []
    import workbench.analysis

    return getattr(workbench.analysis, name).figures(result)


def _intro(result: dict) -> str:
    tr = result["model"]["training"]
    status = ("fully trained" if tr.get("finished") else
              f"PARTIALLY trained: step {tr.get('steps')} of {tr.get('total_steps')}, phase '{tr.get('phase')}'")
    summary = ", ".join(f"{k} = {v}" for k, v in result.get("summary", {}).items())
    return f"Model {result['model']['name']} ({status}). {summary}"


def load_result(path: str | Path) -> dict:
    """A result JSON, checked for the envelope."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WorkbenchError(f"cannot read analysis result {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise WorkbenchError(f"{path} is not a workbench analysis result (schema {SCHEMA})")
    return data


def as_array(x: Any) -> np.ndarray:
    """A nested list from a result (None for missing) as a float array with NaN.

    >>> as_array([[1, None], [2, 3]]).tolist()
    [[1.0, nan], [2.0, 3.0]]
    """
    return np.array(x, dtype=float)


__all__ = ["SCHEMA", "BUILDERS", "jsonable", "model_summary", "make_result", "output_dir", "save_result", "load_result", "as_array",
           "figures_for"]
