"""The model zoo side by side: every model's ``eval.json`` next to the paper's curves, as a table and a figure.

``workbench compare`` writes ``zoo.md`` (the table, with each model's training status, so an
under-trained ablation is never mistaken for a finished one), ``zoo.png`` and ``zoo.html``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError
from workbench.model.card import EVAL_FILE
from workbench.model.checkpoint import CONFIG, models_dir, read_config, resolve_model
from workbench.paper import PAPER_ACCURACY, PAPER_SIZES

#: our zoo and the paper's row each one corresponds to (None: no curve in the paper's figure)
ZOO: dict[str, str | None] = {
    "default": "Discrete LSS + error correction",
    "no-error-correction": "Discrete LSS",
    "continuous-latent": "Continuous LSS",
    "end-to-end": "E2E Recurrent",
    "feedforward": "E2E Feedforward",
    "chain-of-thought": "Chain-of-Thought",
}


@dataclass(frozen=True)
class ZooEntry:
    """One model's evaluation and training status."""

    name: str
    rows: list[dict[str, Any]]      # eval.json "sizes"
    command: str                     # the eval command that produced them
    steps: int | None                # training steps done (None: no training record)
    total_steps: int | None          # steps the recipe asks for
    paper_label: str | None
    init: str | None = None          # the model a fine-tune started from (its steps come on top)

    @property
    def finished(self) -> bool:
        return self.steps is not None and self.total_steps is not None and self.steps >= self.total_steps

    def accuracy_at(self, n: int) -> float | None:
        """% of graphs fully solved at size n (None where not evaluated)."""
        hit = [r for r in self.rows if r["n_nodes"] == n]
        return 100 * hit[0]["graph_acc"] if hit else None


def pending_entry(name: str) -> ZooEntry | None:
    """A zoo member whose recipe is in ``models/<name>/train.toml`` but which has not been trained yet."""
    folder = models_dir() / name
    if "/" in name or not (folder / "train.toml").is_file() or (folder / CONFIG).is_file():
        return None
    return ZooEntry(name=name, rows=[], command=f"workbench train --config models/{name}/train.toml", steps=0,
                    total_steps=None, paper_label=ZOO.get(name))


def load_entry(name: str) -> ZooEntry:
    """A model folder's evaluation and training record; a clear error when it has not been evaluated.

    A zoo member that is only a recipe so far (``train.toml``, no model) is listed as not trained."""
    pending = pending_entry(name)
    if pending is not None:
        return pending
    folder = resolve_model(name)
    ev_path = folder / EVAL_FILE
    if not ev_path.is_file():
        raise WorkbenchError(f"model {name!r} has no {EVAL_FILE}; run 'workbench eval --model {name}' first")
    meta = read_config(folder)
    try:
        ev = json.loads(ev_path.read_text())
        rows = list(ev["sizes"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise WorkbenchError(f"unreadable evaluation in {folder} ({exc}); rerun 'workbench eval --model {name}'") from None
    training = meta.get("training") or {}
    model_name = meta.get("name", folder.name)
    return ZooEntry(name=model_name, rows=rows, command=ev.get("command", "workbench eval"),
                    steps=training.get("steps"), total_steps=training.get("total_steps"), paper_label=ZOO.get(model_name),
                    init=(training.get("config") or {}).get("init"))


def comparison_table(entries: list[ZooEntry]) -> str:
    """Markdown: one row per model (ours, then the paper's matching curves), one column per N."""
    sizes = sorted({r["n_nodes"] for e in entries for r in e.rows} | set(PAPER_SIZES))
    head = "| model | training | " + " | ".join(f"N={n}" for n in sizes) + " |"
    lines = [head, "|---|---|" + "---|" * len(sizes)]
    fmt = lambda v: "–" if v is None else f"{v:.1f}"  # noqa: E731
    for e in entries:
        status = (f"{e.steps:,} / {e.total_steps:,} steps" if e.steps is not None and e.total_steps
                  else "**not trained yet**" if e.steps == 0 else "no record")
        if e.steps is not None and e.total_steps and not e.finished:
            status += " (**unfinished**)"
        if e.init:  # a fine-tune: its steps come on top of the model it started from
            status += f", fine-tuned from `{e.init}`"
        lines.append(f"| **{e.name}** | {status} | " + " | ".join(fmt(e.accuracy_at(n)) for n in sizes) + " |")
    for label in dict.fromkeys(e.paper_label for e in entries if e.paper_label):
        paper = dict(zip(PAPER_SIZES, PAPER_ACCURACY[label]))
        lines.append(f"| paper: {label} | 156k GPU steps | " + " | ".join(fmt(paper.get(n)) for n in sizes) + " |")
    return "\n".join(lines)


def write_comparison(names: list[str], out: str | Path) -> list[Path]:
    """Write ``zoo.md``, ``zoo.png`` and ``zoo.html`` into ``out``; returns their paths."""
    from workbench.model.checkpoint import write_text_atomic
    from workbench.plots.generalization import accuracy_figure, save_accuracy_png

    entries = [load_entry(n) for n in names]  # every model is checked before anything is written
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paper = tuple(dict.fromkeys(e.paper_label for e in entries if e.paper_label))
    curves = {(e.name if e.finished else f"{e.name} (step {e.steps:,})"): e.rows for e in entries if e.rows}
    counts = sorted({r["count"] for e in entries for r in e.rows}) or [0]
    text = ["# The zoo: % of graphs fully solved against graph size N", "",
            "Each model was trained on graphs of N <= 32 (depth <= 6) and evaluated free-running until its "
            "state stops changing (no oracle step count), on fresh graphs of uncapped depth "
            f"({' or '.join(map(str, counts))} per N; the paper used 1,024); – marks a size not evaluated. "
            + ("Rows marked *unfinished* have not yet had the full method's step budget and are not a fair "
               "comparison yet. " if any(e.total_steps and not e.finished for e in entries) else "")
            + "Regenerate with "
            f"`workbench compare --models {','.join(names)} --out {out.as_posix()}`.", "",
            "![accuracy against N](zoo.png)", "", comparison_table(entries), "",
            "Evaluation commands:", "", *[f"- `{e.command}`" for e in entries if e.rows], ""]
    write_text_atomic(out / "zoo.md", "\n".join(text))
    save_accuracy_png(curves, out / "zoo.png", paper=paper)
    accuracy_figure(curves, paper=paper).write_html(out / "zoo.html", include_plotlyjs="cdn")
    return [out / "zoo.md", out / "zoo.png", out / "zoo.html"]
