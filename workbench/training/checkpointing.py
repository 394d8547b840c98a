"""Checkpoints of a training run: atomic saves with the previous one kept, resume, init weights, export.

A run lives in ``out/`` (``runs/<name>`` by default): ``checkpoint/`` (weights, optimizer, RNG and
progress; replaced atomically, so a run killed at any moment resumes from its last checkpoint, and
the one before it is kept in ``checkpoint.prev/``) and ``log.jsonl`` (one line per log or eval event).
At the end the model is exported as a model folder.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from workbench.errors import WorkbenchError
from workbench.model.checkpoint import WEIGHTS, replace_dir, resolve_model, save_model, write_text_atomic
from workbench.model.config import ModelConfig
from workbench.model.looped import LoopedModel
from workbench.training.config import TrainConfig
from workbench.training.curves import write_training_curves

CHECKPOINT = "checkpoint"
PREVIOUS = "checkpoint.prev"  # the checkpoint before the last, kept to recover from a damaged one
STATE_KEYS = frozenset({"step", "tokens", "wall_time_s", "evals", "rng", "optimizer", "config"})


def optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (safetensors) and JSON."""
    sd = opt.state_dict()
    named = {f"state.{i}.{k}": v.detach().cpu() for i, st in sd["state"].items() for k, v in st.items() if torch.is_tensor(v)}
    scalars = [k for k, v in named.items() if v.ndim == 0]  # safetensors stores them as [1]; restored as scalars
    tensors = {k: v.reshape(-1) if v.ndim == 0 else v for k, v in named.items()}
    return tensors, {"param_groups": sd["param_groups"], "scalar_shapes": scalars}


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    scalars = set(meta["scalar_shapes"])
    for key, value in tensors.items():
        _, i, name = key.split(".", 2)
        state.setdefault(int(i), {})[name] = value.reshape(()) if key in scalars else value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


TRAINING_ONLY_KEYS = ("dropout", "corruption_prob", "corruption_fraction", "corruption_strategy")


def same_weights_layout(saved: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether a checkpoint of config ``saved`` can resume as ``new``: everything but the settings
    that act only during training (dropout, error-correction corruption) must agree."""
    # through the dataclass, so that a key added later with its default matches a checkpoint without it
    strip = lambda d: {k: v for k, v in ModelConfig.from_dict(d).to_dict().items() if k not in TRAINING_ONLY_KEYS}  # noqa: E731
    return strip(saved) == strip(new)


def hardware(device: torch.device, world: int = 1) -> str:
    """One line naming the machine that computes on ``device``: a run that spans sittings resumes on
    whatever machine it gets, and its speed is only comparable between stretches on the same one."""
    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)} (cuda)"
    else:
        where = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} of {os.cpu_count()} cores (cpu)"
    return where + (f" x {world} processes" if world > 1 else "") + f", torch {torch.__version__}"


class Run:
    """A training run's mutable state; ``save`` and ``load`` make it resumable.

    ``stretches`` records each uninterrupted stretch of training (its steps, wall time and machine),
    so that a run trained over several sittings, partly on a GPU, says where each step ran.
    """

    def __init__(self, cfg: TrainConfig, model: LoopedModel, opt: torch.optim.Optimizer) -> None:
        self.cfg, self.model, self.opt = cfg, model, opt
        self.step = 0
        self.tokens = 0
        self.wall_time = 0.0
        self.rng = np.random.default_rng(cfg.seed)
        self.evals: list[dict[str, Any]] = []
        self.stretches: list[dict[str, Any]] = []  # closed stretches, as loaded from the checkpoint
        self._open: dict[str, Any] | None = None  # the stretch this process is training
        self._open_wall0 = 0.0

    def begin_stretch(self, machine: str) -> None:
        """Start recording a stretch of training on ``machine`` from the current step. Steps from a
        checkpoint written before stretches were recorded become one stretch of unknown hardware."""
        if not self.stretches and self.step > 0:
            self.stretches.append({"steps": [0, self.step], "wall_time_s": round(self.wall_time, 1), "hardware": None})
        self._open = {"steps": [self.step, self.step], "wall_time_s": 0.0, "hardware": machine}
        self._open_wall0 = self.wall_time

    def all_stretches(self) -> list[dict[str, Any]]:
        """The stretches so far, the open one brought up to the current step (dropped if empty)."""
        out = [dict(st) for st in self.stretches]
        if self._open is not None and self.step > self._open["steps"][0]:
            out.append({**self._open, "steps": [self._open["steps"][0], self.step],
                        "wall_time_s": round(self.wall_time - self._open_wall0, 1)})
        return out

    @property
    def folder(self) -> Path:
        return self.cfg.out_dir / CHECKPOINT

    def save(self) -> None:
        tmp = self.cfg.out_dir / f".{CHECKPOINT}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}, str(tmp / "model.safetensors"))
        tensors, opt_meta = optimizer_state(self.opt)
        tensors["rng.torch"] = torch.get_rng_state()
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        state = {"step": self.step, "tokens": self.tokens, "wall_time_s": self.wall_time, "evals": self.evals,
                 "rng": self.rng.bit_generator.state, "optimizer": opt_meta, "config": self.cfg.to_dict(),
                 "stretches": self.all_stretches()}
        (tmp / "state.json").write_text(json.dumps(state))
        replace_dir(tmp, self.folder, keep=self.previous)

    @property
    def previous(self) -> Path:
        return self.cfg.out_dir / PREVIOUS

    def damaged(self, path: Path, reason: str) -> WorkbenchError:
        """The one-line error for a checkpoint file that cannot be read, with the way to recover."""
        prev = self.previous / "state.json"
        try:
            step = json.loads(prev.read_text())["step"]
            fix = (f"the previous checkpoint (step {step}) is kept in '{self.previous}': "
                   f"run `rm -r {self.folder} && cp -r {self.previous} {self.folder}` and resume again")
        except (OSError, ValueError, KeyError, TypeError):
            fix = f"no earlier checkpoint is kept; remove '{self.cfg.out_dir}' and start the run again without --resume"
        return WorkbenchError(f"checkpoint file '{path}' is damaged ({reason}); {fix}")

    def load(self) -> None:
        if not (self.folder / "state.json").exists():
            old = self.folder.with_name(CHECKPOINT + ".old")
            if (old / "state.json").exists():  # killed between the two renames of replace_dir
                os.replace(old, self.folder)
            elif (self.previous / "state.json").exists() and not self.folder.exists():  # the same, keeping one
                shutil.copytree(self.previous, self.folder)
            elif self.folder.exists():
                raise self.damaged(self.folder / "state.json", "missing")
            else:
                raise WorkbenchError(f"no checkpoint to resume in {self.folder}; start without --resume")
        path = self.folder / "state.json"
        try:
            state = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise self.damaged(path, f"not JSON: {type(exc).__name__}") from None
        if not isinstance(state, dict) or not STATE_KEYS <= state.keys() or not isinstance(state["config"], dict):
            raise self.damaged(path, "fields missing")
        saved = state["config"]
        try:
            same = same_weights_layout(saved["model"], self.cfg.model.to_dict()) and saved["task"] == self.cfg.task.to_dict()
        except (KeyError, TypeError, AttributeError, WorkbenchError):
            raise self.damaged(path, "its config is unreadable") from None
        if not same:
            raise WorkbenchError(f"the checkpoint in {self.folder} was trained with another model or task config; resume with the config it was started with")
        tensors = {}
        for name in ("model.safetensors", "optimizer.safetensors"):
            try:
                tensors[name] = load_file(str(self.folder / name))
            except FileNotFoundError:
                raise self.damaged(self.folder / name, "missing") from None
            except Exception as exc:  # safetensors raises its own types for truncated files
                raise self.damaged(self.folder / name, f"unreadable: {type(exc).__name__}") from None
        try:
            self.model.load_state_dict(tensors["model.safetensors"])
        except RuntimeError:
            raise self.damaged(self.folder / "model.safetensors", "tensors missing or misshapen") from None
        opt_tensors = tensors["optimizer.safetensors"]
        try:
            torch.set_rng_state(opt_tensors.pop("rng.torch"))
            restore_optimizer(self.opt, opt_tensors, state["optimizer"])
        except (KeyError, ValueError, RuntimeError, TypeError, AttributeError):
            raise self.damaged(self.folder / "optimizer.safetensors", "tensors missing or misshapen") from None
        self.step, self.tokens, self.wall_time = state["step"], state["tokens"], state["wall_time_s"]
        self.evals = state["evals"]
        self.stretches = state.get("stretches", [])  # absent from checkpoints older than the record
        self.rng.bit_generator.state = state["rng"]


def load_init_weights(model: LoopedModel, init: str) -> list[str]:
    """Copy the weights of model ``init`` (name or folder) into ``model``; returns the parameters it lacked.

    A missing parameter keeps its initial value (a mechanism the new config adds, zero at start);
    an unexpected or misshapen one is an error, since the two models would then compute different things.
    """
    path = resolve_model(init) / WEIGHTS
    try:
        weights = load_file(str(path))
    except Exception as exc:  # safetensors raises its own types for truncated or foreign files
        raise WorkbenchError(f"cannot read the init weights {path} ({type(exc).__name__}); give another 'init' model") from None
    own = model.state_dict()
    extra = sorted(set(weights) - set(own))
    misfit = sorted(k for k in set(weights) & set(own) if weights[k].shape != own[k].shape)
    if extra or misfit:
        raise WorkbenchError(f"init model {init!r} does not fit this config: "
                             f"{'unexpected ' + ', '.join(extra[:3]) if extra else 'other shapes for ' + ', '.join(misfit[:3])}; "
                             "use the model and task settings it was trained with")
    model.load_state_dict(weights, strict=False)
    return sorted(set(own) - set(weights))


def trim_log(path: Path, step: int) -> None:
    """Drop the events logged after ``step``: a run killed between two checkpoints logged steps that
    resuming from the earlier one redoes, and the log must not hold them twice."""
    if not path.exists():
        return
    lines = path.read_text(errors="replace").splitlines(keepends=True)
    kept = [line for line in lines if (event := _event(line)) is not None and event.get("step", 0) <= step]
    if len(kept) < len(lines) or (kept and not kept[-1].endswith("\n")):
        write_text_atomic(path, "".join(line if line.endswith("\n") else line + "\n" for line in kept))


def _event(line: str) -> dict | None:
    """One log line's event, or None for a line a kill cut in half."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def export(run: Run) -> Path:
    """Write the trained model as a model folder with its training record in ``config.json``."""
    cfg = run.cfg
    phase = cfg.phase_at(max(run.step - 1, 0))
    training = {"config": cfg.to_dict(), "steps": run.step, "total_steps": cfg.total_steps,
                "finished": run.step >= cfg.total_steps, "last_phase": phase.name, "tokens": run.tokens,
                "wall_time_s": round(run.wall_time, 1), "evals": run.evals, "stretches": run.all_stretches(),
                "hardware": hardware(next(run.model.parameters()).device)}
    folder = save_model(run.model.cpu(), cfg.export_dir, name=cfg.name, extra={"training": training})
    write_training_curves(folder, cfg.out_dir)
    return folder
