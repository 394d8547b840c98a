"""The training loop: curriculum phases, one objective per training mode, logging, evaluation.

``train`` reads top to bottom: ``start`` (devices, model, resume or init), then one ``train_step`` per
step (the mode's objective from ``workbench.training.objectives``), ``log_window`` / ``evaluate`` /
``Run.save`` on their schedules (``workbench.training.checkpointing``), and ``export`` at the end.
"""

from __future__ import annotations

import fnmatch

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from workbench.device import default_device
from workbench.errors import WorkbenchError
from workbench.model.looped import LoopedModel
from workbench.training.batches import sample_phase
from workbench.training.checkpointing import Run, export, hardware, load_init_weights, trim_log
from workbench.training.config import TrainConfig
from workbench.training.objectives import Shard, Unroll, objective_for

EvaluateFn = Callable[[LoopedModel, TrainConfig], dict]
#: the metrics the progress bar shows (all of them go to the log)
BAR_METRICS = ("loss", "frontier_acc", "fan2_acc", "fan3_acc")


def set_lookup_temperature(model: LoopedModel, temperature: float) -> None:
    """The first block's training-time content temperature (``Phase.lookup_temperature``); later blocks keep 1."""
    for i, block in enumerate(model.blocks):
        block.attn.train_temperature = temperature if i == 0 else 1.0


@dataclass(frozen=True)
class Distributed:
    """Where this process sits in a ``torchrun`` job (rank 0 of 1 when run plainly)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Distributed":
        """Join the process group that ``torchrun`` describes (gloo on CPU, NCCL on GPUs), if any."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def replicas_identical(model: nn.Module) -> bool:
    """Whether every rank holds bit-identical weights (all-gather of the flattened parameters)."""
    import torch.distributed as dist

    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    return all(torch.equal(g, gathered[0]) for g in gathered)


@dataclass
class Session:
    """What one process trains with: the run (weights, optimizer, progress), the wrapped network,
    the mode's objective and this process's shard of every batch."""

    run: Run
    net: nn.Module
    device: torch.device
    dist: Distributed

    @property
    def shard(self) -> Shard:
        # Every rank draws the same global batch from the same RNG stream and keeps its own slice: the
        # data order does not depend on the number of processes and a checkpoint's RNG state fits all ranks.
        n = self.run.cfg.batch_graphs
        return Shard(slice(self.dist.rank * n, (self.dist.rank + 1) * n), self.dist.world)

    @property
    def log_path(self) -> Path:
        return self.run.cfg.out_dir / "log.jsonl"

    def log(self, event: dict) -> None:
        with self.log_path.open("a") as f:
            f.write(json.dumps(event) + "\n")


def start(cfg: TrainConfig, *, resume: bool, export_only: bool, device: torch.device | None) -> Session:
    """Pick the device, build the model and optimizer, and resume, or start fresh (from ``init``'s weights)."""
    dist_env = Distributed.from_env()
    if device is None:
        device = default_device()
        if device.type == "cuda" and dist_env.world > 1:
            device = torch.device("cuda", dist_env.local_rank)
    torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // dist_env.world))
    torch.manual_seed(cfg.seed)  # the same seed everywhere: every rank starts from the same weights
    model = LoopedModel(cfg.model, cfg.task).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    run = Run(cfg, model, opt)
    log_path = cfg.out_dir / "log.jsonl"
    if resume:
        run.load()
        if dist_env.main:  # one writer under torchrun
            trim_log(log_path, run.step)
    elif export_only:
        raise WorkbenchError("--export-only needs --resume: it exports the run's last checkpoint")
    elif run.folder.exists() or run.previous.exists():
        raise WorkbenchError(f"run folder {cfg.out_dir} already holds a checkpoint; pass --resume to continue it or change 'name'/'out'")
    else:
        if cfg.init is not None:
            load_init_weights(model, cfg.init)
        if dist_env.main and log_path.exists():  # a run killed before its first checkpoint: start a new log
            os.replace(log_path, log_path.with_suffix(".stale.jsonl"))
    net: nn.Module = Unroll(model)
    if dist_env.world > 1 and not export_only:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    return Session(run, net, device, dist_env)


def train_step(session: Session, objective) -> tuple[dict[str, float], int]:
    """One optimizer step of the current phase; returns its logged values and the tokens it read."""
    run, cfg, model = session.run, session.run.cfg, session.run.model
    phase = cfg.phase_at(run.step)
    model.train()
    set_lookup_temperature(model, phase.lookup_temperature)
    for group in run.opt.param_groups:
        group["lr"] = cfg.lr_at(run.step)
    tb = sample_phase(phase, cfg.task, cfg.batch_graphs * session.dist.world, run.rng)
    step = objective.loss(session.net, model, tb, phase, cfg, run.rng, session.device, session.shard)
    run.opt.zero_grad(set_to_none=True)
    step.loss.backward()
    if phase.train_only:  # the others get no gradient: the optimizer skips them (no update, no weight decay)
        kept = 0
        for name, param in model.named_parameters():
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in phase.train_only):
                kept += 1
            else:
                param.grad = None
        if not kept:
            raise WorkbenchError(f"phase {phase.name!r}: train_only {list(phase.train_only)} names no parameter of this model")
    run.opt.step()
    return {"loss": float(step.loss.detach()), **step.metrics}, step.n_tokens


def log_window(session: Session, window: list[dict[str, float]], bar: tqdm) -> None:
    """Log the mean of every metric over the steps since the last log line (and show a few on the bar)."""
    run, cfg = session.run, session.run.cfg
    keys = dict.fromkeys(k for w in window for k in w)  # every metric seen, in first-seen order
    mean = {k: float(np.mean([w[k] for w in window if k in w])) for k in keys}
    bar.set_postfix({k: f"{v:.3f}" for k, v in mean.items() if k in BAR_METRICS})
    session.log({"event": "train", "step": run.step, "phase": cfg.phase_at(run.step - 1).name, "tokens": run.tokens,
                 "wall_time_s": round(run.wall_time, 1), "lr": cfg.lr_at(run.step - 1), **mean})


def evaluate(session: Session, evaluate_fn: EvaluateFn, bar: tqdm) -> None:
    """Run the config's evaluation now; its time counts as training time, its result goes to the log."""
    run = session.run
    t0 = time.perf_counter()
    result = {"step": run.step, "phase": run.cfg.phase_at(run.step - 1).name, **evaluate_fn(run.model, run.cfg)}
    run.wall_time += time.perf_counter() - t0
    run.evals.append(result)
    session.log({"event": "eval", **result})
    bar.write(f"step {run.step} eval: {json.dumps(result)}")


def check_replicas(session: Session) -> None:
    """After data-parallel training every rank must hold the same weights; logged, and an error if not."""
    identical = replicas_identical(session.run.model)
    if session.dist.main:
        session.log({"event": "replicas", "step": session.run.step, "world_size": session.dist.world, "identical": identical})
    if not identical:
        raise RuntimeError("data-parallel replicas diverged: their weights differ after training")


def due(step: int, every: int, total: int) -> bool:
    return step % every == 0 or step == total


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True, device: torch.device | None = None,
          evaluate_fn: EvaluateFn | None = None, export_only: bool = False) -> Path | None:
    """Train ``cfg`` from scratch (or from its last checkpoint with ``resume``); export when done.

    ``export_only`` exports the last checkpoint as it stands, without training (a run that spans
    several sittings ships its latest model this way). Returns the exported model folder (None when
    the config exports nothing).
    """
    session = start(cfg, resume=resume, export_only=export_only, device=device)
    run = session.run
    if export_only:
        if cfg.export_dir is None:
            raise WorkbenchError(f"config {cfg.name!r} sets no 'export' folder")
        return export(run)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    objective = objective_for(run.model)
    bar = tqdm(total=cfg.total_steps, initial=run.step, disable=not (progress and session.dist.main),
               desc=f"train {cfg.name}", dynamic_ncols=True)
    window: list[dict[str, float]] = []
    run.begin_stretch(hardware(session.device, session.dist.world))
    while run.step < cfg.total_steps:
        began = time.perf_counter()
        values, n_tokens = train_step(session, objective)
        run.step += 1
        run.tokens += n_tokens
        run.wall_time += time.perf_counter() - began
        window.append(values)
        bar.update(1)
        if not session.dist.main:
            continue
        if due(run.step, cfg.log_every, cfg.total_steps):
            log_window(session, window, bar)
            window = []
        if evaluate_fn is not None and due(run.step, cfg.eval_every, cfg.total_steps):
            evaluate(session, evaluate_fn, bar)
        if due(run.step, cfg.checkpoint_every, cfg.total_steps):
            run.save()
    bar.close()
    if session.dist.world > 1:
        check_replicas(session)
        if not session.dist.main:
            return None
    return export(run) if cfg.export_dir else None
