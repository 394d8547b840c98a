"""Model folders: ``model.safetensors`` + ``config.json`` (+ ``card.md``). No pickle anywhere.

``load_model("default" | name | path)`` resolves a bare name inside the models directory (the repo's
``models/``, or ``$WORKBENCH_MODELS``) and anything with a slash or an existing folder as a path.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from workbench.device import default_device
from workbench.errors import WorkbenchError
from workbench.model.config import ModelConfig
from workbench.model.looped import LoopedModel
from workbench.task.config import TaskConfig

FORMAT = "workbench-model/1"
WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "card.md"


def models_dir() -> Path:
    """Where named models live: ``$WORKBENCH_MODELS`` or the repository's ``models/``."""
    env = os.environ.get("WORKBENCH_MODELS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "models"


def available_models() -> list[str]:
    """Names of the model folders in ``models_dir()``."""
    root = models_dir()
    return sorted(p.name for p in root.iterdir() if (p / CONFIG).exists()) if root.is_dir() else []


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """The folder of a model given by name (``default``) or path; WorkbenchError if there is none."""
    text = str(name_or_path)
    path = Path(text)
    if not path.is_dir() and os.sep not in text and "/" not in text:
        path = models_dir() / text
        if not path.is_dir():
            known = ", ".join(available_models()) or "none"
            raise WorkbenchError(f"unknown model '{text}': known models are {known}; or give the path of a model folder")
    if not path.is_dir():
        raise WorkbenchError(f"model folder '{text}' does not exist; give a model name ({', '.join(available_models())}) or a folder path")
    for needed in (WEIGHTS, CONFIG):
        if not (path / needed).is_file():
            raise WorkbenchError(f"model folder '{path}' has no {needed}; a model folder holds {WEIGHTS} and {CONFIG}")
    return path


def read_config(folder: Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a model folder, checked for the keys every model needs."""
    try:
        meta = json.loads((folder / CONFIG).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WorkbenchError(f"corrupt {folder / CONFIG}: {exc}; restore the file or retrain the model") from None
    if not isinstance(meta, dict) or "model" not in meta or "task" not in meta:
        raise WorkbenchError(f"{folder / CONFIG} lacks the 'model' and 'task' sections; it is not a workbench model")
    for section in ("model", "task", "training", "evaluation"):
        if section in meta and not isinstance(meta[section], dict):
            raise WorkbenchError(f"{folder / CONFIG}: '{section}' must be a JSON object, got {type(meta[section]).__name__}; "
                                 "restore the file from the model's repository or retrain the model")
    return meta


def build_model(meta: dict[str, Any]) -> LoopedModel:
    """An untrained model from a config dict with 'model' and 'task' sections."""
    return LoopedModel(ModelConfig.from_dict(meta["model"]), TaskConfig.from_dict(meta["task"]))


def load_model(name_or_path: str | os.PathLike = "default", *, device: str | torch.device | None = None) -> LoopedModel:
    """Load a trained model in eval mode on ``device`` (default: cuda when available, else CPU).

    The model carries its folder's metadata as ``model.meta`` (name, training, evaluation).
    """
    folder = resolve_model(name_or_path)
    meta = read_config(folder)
    if meta.get("kind") == "chain-of-thought":  # the CoT baseline (workbench.cot): another network, same folder layout
        from workbench.cot.model import load_cot

        return load_cot(folder, meta, device=device)
    try:
        model = build_model(meta)
    except (TypeError, KeyError) as exc:
        raise WorkbenchError(f"incompatible config in {folder / CONFIG}: {exc}") from None
    try:
        weights = load_file(str(folder / WEIGHTS))
    except Exception as exc:  # safetensors raises its own error types for truncated or foreign files
        raise WorkbenchError(f"corrupt checkpoint {folder / WEIGHTS} ({type(exc).__name__}: {exc}); restore or retrain it") from None
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "shape mismatch"
        raise WorkbenchError(f"checkpoint {folder / WEIGHTS} does not fit its config.json ({first}); the files come from different models") from None
    model.meta = {**meta, "name": meta.get("name", folder.name), "path": str(folder)}
    return model.to(device if device is not None else default_device()).eval()


def save_model(model: LoopedModel, folder: str | os.PathLike, *, name: str | None = None,
               extra: dict[str, Any] | None = None, card: str | None = None) -> Path:
    """Write ``model`` into a model folder; each file is replaced atomically, other files are kept."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "name": name or folder.name, "model": model.cfg.to_dict(),
            "task": model.task.to_dict(), **(extra or {})}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    write_text_atomic(folder / CONFIG, json.dumps(meta, indent=2) + "\n")
    if card is not None:
        write_text_atomic(folder / CARD, card)
    return folder


class atomic_path:
    """Context manager giving a temporary path beside ``target``, moved onto it only on success."""

    def __init__(self, target: Path) -> None:
        self.target = Path(target)

    def __enter__(self) -> Path:
        fd, name = tempfile.mkstemp(prefix=f".{self.target.name}.", dir=self.target.parent)
        os.close(fd)
        self.tmp = Path(name)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.replace(self.tmp, self.target)
        else:
            self.tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file so that readers see the old content or the new, never a half."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def replace_dir(src: Path, dst: Path, *, keep: Path | None = None) -> None:
    """Move folder ``src`` onto ``dst`` so that ``dst`` is always whole (old or new), never half-written.

    ``keep``: where the replaced ``dst`` goes instead of being deleted (a training run keeps its
    previous checkpoint there, so one damaged later can be recovered). A kill between the renames
    leaves ``dst`` missing and the last whole copy in ``keep`` (or ``dst.old``).
    """
    old = keep if keep is not None else dst.with_name(dst.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    if keep is None and old.exists():
        shutil.rmtree(old)
