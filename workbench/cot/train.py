"""Training the chain-of-thought baseline: next-word cross-entropy on solution traces, curriculum over N.

A config is a TOML file with ``kind = "chain-of-thought"`` (``models/chain-of-thought/train.toml``). Every step
draws fresh graphs from the paper's law (sizes uniform in the phase's ``nodes`` range, depth capped), builds their
sequences and trains on the trace words only (the problem is context, not target). A run lives in ``out``:
``checkpoint/`` (weights, AdamW state and RNG as safetensors, progress in ``state.json``; replaced atomically,
the previous one kept in ``checkpoint.prev/``) and ``log.jsonl`` (the events of ``workbench.training.loop``:
``train`` every ``log_every`` steps, ``eval`` with ``workbench eval``'s size records). The end exports a model folder.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from workbench.cot.model import KIND, CotConfig, CotModel, save_cot
from workbench.cot.trace import build_traces, END
from workbench.errors import WorkbenchError
from workbench.task.config import TaskConfig
from workbench.task.graphs import sample_graphs
from workbench.training.config import PhasedRun

CHECKPOINT, PREVIOUS = "checkpoint", "checkpoint.prev"


@dataclass(frozen=True, kw_only=True)
class CotPhase:
    """One curriculum stage: graph sizes uniform in ``nodes`` [lo, hi], parent counts from ``fan_in``, depth below ``depth_cap``."""

    name: str
    steps: int
    nodes: tuple[int, int] = (8, 32)
    fan_in: tuple[int, ...] = (1, 2, 3)
    depth_cap: int | None = 6
    lr: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "fan_in", tuple(self.fan_in))
        if self.steps < 1 or len(self.nodes) != 2 or not 6 < self.nodes[0] <= self.nodes[1]:
            raise WorkbenchError(f"phase {self.name!r}: steps must be positive and nodes a range [lo, hi] with 6 < lo <= hi")
        if not self.fan_in or any(k not in (1, 2, 3) for k in self.fan_in):
            raise WorkbenchError(f"phase {self.name!r}: fan_in entries must be 1, 2 or 3")


@dataclass(frozen=True, kw_only=True)
class CotTrainConfig(PhasedRun):
    """A chain-of-thought training run (AdamW, linear warm-up then constant, gradient clipping by norm)."""

    MODEL: ClassVar[type] = CotConfig
    PHASE: ClassVar[type] = CotPhase
    LABEL: ClassVar[str] = "chain-of-thought training"

    kind: str = KIND
    model: CotConfig = field(default_factory=CotConfig)
    phases: tuple[CotPhase, ...] = ()
    grad_clip: float | None = 1.0

    def __post_init__(self) -> None:
        if self.kind != KIND:
            raise WorkbenchError(f"a chain-of-thought config has kind = {KIND!r}, got {self.kind!r}")
        super().__post_init__()
        for p in self.phases:
            if p.nodes[1] > self.task.n_names or max(p.fan_in) > self.task.max_fan_in:
                raise WorkbenchError(f"phase {p.name!r}: graphs must fit the task (at most {self.task.n_names} nodes, "
                                     f"fan-in at most {self.task.max_fan_in})")
        if any(not 7 <= n <= self.task.n_names for n in self.eval_sizes):
            raise WorkbenchError(f"eval_sizes {list(self.eval_sizes)}: every size must lie in 7..{self.task.n_names}")
        self.check_counts()


def is_cot_config(path: str | Path) -> bool:
    """Whether a training config file (with its ``base`` chain) says ``kind = "chain-of-thought"``."""
    from workbench.training.config import read_config_file

    return read_config_file(Path(path)).get("kind") == KIND


def load_cot_config(path: str | Path) -> CotTrainConfig:
    from workbench.training.config import read_config_file

    return CotTrainConfig.from_dict(read_config_file(Path(path)))


def sample_batch(phase: CotPhase, task: TaskConfig, batch: int, rng: np.random.Generator):
    """Fresh graphs of the phase's law and their sequences (problem, ``<cot>``, trace, EOS)."""
    from workbench.cot.trace import CotVocab

    sizes = rng.integers(phase.nodes[0], phase.nodes[1] + 1, size=batch)
    graphs = sample_graphs(sizes, batch, rng=rng, task=task, fan_in=phase.fan_in, depth_cap=phase.depth_cap)
    return build_traces(graphs, CotVocab.for_task(task))


def trace_loss(model: CotModel, traces, device: torch.device) -> tuple[torch.Tensor, dict[str, float], int]:
    """Next-word cross-entropy over the trace words (EOS included; the problem is context only), with
    token accuracy, result-value accuracy (the word before each ``;``) and whole-trace accuracy, teacher-forced."""
    width = int(traces.length.max())
    tokens = torch.from_numpy(traces.tokens[:, :width]).to(device)
    mask = torch.from_numpy(traces.trace_mask[:, 1:width]).to(device)  # [batch, pos-1]: targets in the trace
    logits = model(tokens[:, :-1])  # [batch, pos-1, vocab]
    target = tokens[:, 1:]
    loss = F.cross_entropy(logits[mask], target[mask])
    with torch.no_grad():
        right = (logits.argmax(-1) == target) | ~mask
        nxt = torch.cat([target[:, 1:], torch.zeros_like(target[:, :1])], 1)
        result = mask & (nxt == END) & (target != END)
        metrics = {"token_acc": float(right[mask].float().mean()), "value_acc": float(right[result].float().mean()),
                   "trace_acc": float(right.all(1).float().mean())}
    return loss, metrics, int(mask.sum())


class CotRun:
    """A run's mutable state (model, optimizer, progress, data RNG), saved and resumed atomically."""

    def __init__(self, cfg: CotTrainConfig, model: CotModel, opt: torch.optim.Optimizer) -> None:
        self.cfg, self.model, self.opt = cfg, model, opt
        self.step = self.tokens = 0
        self.wall_time = 0.0
        self.rng = np.random.default_rng(cfg.seed)
        self.evals: list[dict[str, Any]] = []
        self.stretches: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None

    @property
    def folder(self) -> Path:
        return self.cfg.out_dir / CHECKPOINT

    def begin_stretch(self, machine: str) -> None:
        self._open = {"from": self.step, "wall0": self.wall_time, "hardware": machine}

    def all_stretches(self) -> list[dict[str, Any]]:
        out = list(self.stretches)
        if self._open is not None and self.step > self._open["from"]:
            out.append({"steps": [self._open["from"], self.step], "wall_time_s": round(self.wall_time - self._open["wall0"], 1),
                        "hardware": self._open["hardware"]})
        return out

    def save(self) -> None:
        from safetensors.torch import save_file

        from workbench.model.checkpoint import replace_dir
        from workbench.training.checkpointing import optimizer_state

        tmp = self.cfg.out_dir / f".{CHECKPOINT}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        save_file(self.model.weights(), str(tmp / "model.safetensors"))
        tensors, opt_meta = optimizer_state(self.opt)
        tensors["rng.torch"] = torch.get_rng_state()
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        state = {"kind": KIND, "step": self.step, "tokens": self.tokens, "wall_time_s": self.wall_time, "evals": self.evals,
                 "rng": self.rng.bit_generator.state, "optimizer": opt_meta, "config": self.cfg.to_dict(),
                 "stretches": self.all_stretches()}
        (tmp / "state.json").write_text(json.dumps(state))
        replace_dir(tmp, self.folder, keep=self.cfg.out_dir / PREVIOUS)

    def load(self) -> None:
        from safetensors.torch import load_file

        from workbench.training.checkpointing import restore_optimizer

        path = self.folder / "state.json"
        if not path.exists():
            raise WorkbenchError(f"no checkpoint to resume in {self.folder}; start without --resume")
        try:
            state = json.loads(path.read_text())
            saved = state["config"]
            same = saved["model"] == self.cfg.model.to_dict() and saved["task"] == self.cfg.task.to_dict()
        except (ValueError, KeyError, TypeError) as exc:
            raise WorkbenchError(f"checkpoint {path} is damaged ({type(exc).__name__}); copy {self.cfg.out_dir / PREVIOUS} "
                                 f"onto {self.folder} and resume again") from None
        if not same:
            raise WorkbenchError(f"the checkpoint in {self.folder} was trained with another model or task config; "
                                 "resume with the config it was started with")
        try:
            self.model.load_weights(load_file(str(self.folder / "model.safetensors")))
            tensors = load_file(str(self.folder / "optimizer.safetensors"))
            torch.set_rng_state(tensors.pop("rng.torch"))
            restore_optimizer(self.opt, tensors, state["optimizer"])
        except Exception as exc:  # safetensors and load_state_dict raise their own types
            raise WorkbenchError(f"checkpoint files in {self.folder} are damaged ({type(exc).__name__}); copy "
                                 f"{self.cfg.out_dir / PREVIOUS} onto {self.folder} and resume again") from None
        self.step, self.tokens, self.wall_time = state["step"], state["tokens"], state["wall_time_s"]
        self.evals, self.stretches = state["evals"], state.get("stretches", [])
        self.rng.bit_generator.state = state["rng"]


def export(run: CotRun) -> Path:
    """The trained model as a model folder, its training record in ``config.json``, curves beside it."""
    from workbench.training.checkpointing import hardware
    from workbench.training.curves import write_training_curves

    cfg = run.cfg
    training = {"config": cfg.to_dict(), "steps": run.step, "total_steps": cfg.total_steps,
                "finished": run.step >= cfg.total_steps, "last_phase": cfg.phase_at(max(run.step - 1, 0)).name,
                "tokens": run.tokens, "wall_time_s": round(run.wall_time, 1), "evals": run.evals,
                "stretches": run.all_stretches(), "hardware": hardware(run.model.device)}
    folder = save_cot(run.model, cfg.export_dir, name=cfg.name, extra={"training": training})
    write_training_curves(folder, cfg.out_dir)
    return folder


def evaluate_now(run: CotRun) -> dict[str, Any]:
    from workbench.cot.solve import evaluate_sizes

    results = evaluate_sizes(run.model, run.cfg.eval_sizes, run.cfg.eval_count, seed=run.cfg.seed + 1)
    return {"sizes": [r.to_dict() for r in results]}


def train(cfg: CotTrainConfig, *, resume: bool = False, progress: bool = True, device: torch.device | None = None,
          export_only: bool = False) -> Path | None:
    """Train ``cfg`` (from its last checkpoint with ``resume``) and export the model; returns the model folder."""
    from workbench.device import default_device
    from workbench.training.checkpointing import hardware, trim_log

    device = device or default_device()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.set_num_threads(cfg.threads or (os.cpu_count() or 1))
    torch.manual_seed(cfg.seed)
    model = CotModel(cfg.model, cfg.task).to(device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    run = CotRun(cfg, model, opt)
    log_path = cfg.out_dir / "log.jsonl"
    if resume:
        run.load()
        trim_log(log_path, run.step)
    elif export_only:
        raise WorkbenchError("--export-only needs --resume: it exports the run's last checkpoint")
    elif run.folder.exists():
        raise WorkbenchError(f"run folder {cfg.out_dir} already holds a checkpoint; pass --resume to continue it or change 'name'/'out'")
    if export_only:
        if cfg.export_dir is None:
            raise WorkbenchError(f"config {cfg.name!r} sets no 'export' folder")
        return export(run)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)

    def log(event: dict) -> None:
        with log_path.open("a") as f:
            f.write(json.dumps(event) + "\n")

    bar = tqdm(total=cfg.total_steps, initial=run.step, disable=not progress, desc=f"train {cfg.name}", dynamic_ncols=True)
    run.begin_stretch(hardware(device))
    window: list[dict[str, float]] = []
    while run.step < cfg.total_steps:
        began = time.perf_counter()
        phase = cfg.phase_at(run.step)
        model.train()
        for group in opt.param_groups:
            group["lr"] = cfg.lr_at(run.step)
        traces = sample_batch(phase, cfg.task, cfg.batch_graphs, run.rng)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):  # bf16 matmuls on a GPU
            loss, metrics, n_tokens = trace_loss(model, traces, device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        run.step += 1
        run.tokens += n_tokens
        run.wall_time += time.perf_counter() - began
        window.append({"loss": float(loss.detach()), **metrics})
        bar.update(1)
        last = run.step == cfg.total_steps
        if run.step % cfg.log_every == 0 or last:
            mean = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
            bar.set_postfix({k: f"{v:.3f}" for k, v in mean.items() if k in ("loss", "token_acc", "value_acc")})
            log({"event": "train", "step": run.step, "phase": phase.name, "tokens": run.tokens,
                 "wall_time_s": round(run.wall_time, 1), "lr": cfg.lr_at(run.step - 1), **mean})
            window = []
        if run.step % cfg.eval_every == 0 or last:
            t0 = time.perf_counter()
            result = {"step": run.step, "phase": phase.name, **evaluate_now(run)}
            run.wall_time += time.perf_counter() - t0
            run.evals.append(result)
            log({"event": "eval", **result})
            bar.write(f"step {run.step} eval: " + ", ".join(f"N={r['n_nodes']}: {100 * r['graph_acc']:.1f}%" for r in result["sizes"]))
        if run.step % cfg.checkpoint_every == 0 or last:
            run.save()
    bar.close()
    return export(run) if cfg.export_dir else None


def with_threads(cfg: CotTrainConfig, threads: int | None) -> CotTrainConfig:
    return cfg if threads is None else replace(cfg, threads=threads)


__all__ = ["CotPhase", "CotTrainConfig", "CotRun", "train", "trace_loss", "sample_batch", "load_cot_config",
           "is_cot_config", "export", "with_threads"]
