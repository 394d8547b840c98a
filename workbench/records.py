"""Evaluation records: the graph sizes a command takes, where a record is written, and what may replace what.

A documented command must never overwrite a shipped model's results by accident: records go to
``runs/eval/<model>/`` unless ``--record`` (the model's own folder) or ``--out``, and a record over more
graphs is replaced only with ``--replace``. Shared by the ``workbench`` command and the probe scripts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from workbench.errors import WorkbenchError


def parse_sizes(text: str) -> list[int]:
    """``8,16,...,128`` -> [8, 16, 24, ..., 128]; plain lists like ``8,32`` pass through."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        if "..." in parts:
            i = parts.index("...")
            if i < 2 or i != len(parts) - 2:
                raise ValueError
            a, b, end = int(parts[i - 2]), int(parts[i - 1]), int(parts[i + 1])
            if b <= a:
                raise ValueError
            sizes = [int(p) for p in parts[: i - 2]] + list(range(a, end + 1, b - a))
        else:
            sizes = [int(p) for p in parts]
    except ValueError:
        raise WorkbenchError(f"--sizes {text!r} is not a list of sizes; write e.g. 8,16,32 or 8,16,...,128") from None
    if not sizes or min(sizes) < 7:
        raise WorkbenchError(f"--sizes {text!r}: every size must be at least 7 (6 leaves plus one node)")
    return sizes


def check_tag(tag: str, *, reserved: tuple[str, ...] = ("config",)) -> str:
    """A record's file stem in a model folder: plain characters, never one of the folder's own files."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", tag) or tag in reserved:
        taken = f" other than {' and '.join(reserved)}" if reserved else ""
        raise WorkbenchError(f"--tag {tag!r} must be a plain file stem (letters, digits, . _ -){taken}")
    return tag


SCRATCH = Path("runs") / "eval"  # where evaluations go unless recorded into a model folder (git-ignored)


def output_folder(model, out: str | None, record: bool) -> tuple[Path, bool]:
    """Where an evaluation writes, and whether that is the model's own folder (whose card then lists it).

    A documented command must never overwrite a shipped model's results by accident: the model's
    folder is written only with ``--record`` (or an explicit ``--out`` naming it). The commands call
    ``check_destination`` first, before loading the model.
    """
    own = Path(model.meta["path"])
    folder = own if record else Path(out) if out else SCRATCH / model.meta["name"]
    folder.mkdir(parents=True, exist_ok=True)
    return folder, folder.resolve() == own.resolve()


def check_destination(out: str | None, record: bool) -> None:
    """--record and --out name two different places: refuse both at once, before any work."""
    if record and out:
        raise WorkbenchError("--record writes into the model's own folder; drop --out, or drop --record to write to --out")


def graphs_in_record(path: Path) -> int:
    """How many graphs an evaluation record holds (0 if there is none or it cannot be read)."""
    try:
        data = json.loads(path.read_text())
        groups = [data["sizes"]] if "sizes" in data else list(data["families"].values())
        return sum(int(row["count"]) for rows in groups for row in rows)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return 0


def refuse_smaller(path: Path, graphs: int, replace: bool) -> None:
    """Refuse to replace a record with one over fewer graphs, unless ``--replace`` says to."""
    held = graphs_in_record(path)
    if held > graphs and not replace:
        raise WorkbenchError(f"{path} holds a larger evaluation ({held} graphs) than this one ({graphs}); "
                             "write it elsewhere (--out DIR or --tag NAME), or pass --replace to overwrite it")


__all__ = ["parse_sizes", "check_tag", "SCRATCH", "output_folder", "check_destination", "graphs_in_record", "refuse_smaller"]
