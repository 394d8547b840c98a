"""The training loop: curriculum phases, teacher-forced steps, atomic checkpoints, resume, export.

A run lives in ``out/`` (``runs/<name>`` by default): ``checkpoint/`` (weights, optimizer, RNG and
progress; replaced atomically, so a run killed at any moment resumes from its last checkpoint) and
``log.jsonl`` (one line per log or eval event). At the end the model is exported as a model folder.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from workbench.device import default_device
from workbench.errors import WorkbenchError
from workbench.model.checkpoint import replace_dir, resolve_model, save_model, write_text_atomic, WEIGHTS
from workbench.model.config import ModelConfig
from workbench.model.layers import NO_TAP, Tap
from workbench.model.looped import LoopedModel
from workbench.task.tokens import TokenBatch
from workbench.task.vocab import F_VALUE
from workbench.training.batches import StepBatch, operand_values, sample_phase, teacher_forced_batch
from workbench.training.config import TrainConfig
from workbench.training.curves import write_training_curves

CHECKPOINT = "checkpoint"
PREVIOUS = "checkpoint.prev"  # the checkpoint before the last, kept to recover from a damaged one
STATE_KEYS = frozenset({"step", "tokens", "wall_time_s", "evals", "rng", "optimizer", "config"})


def factor_loss(logits: list[torch.Tensor], targets: torch.Tensor, valid: torch.Tensor,
                rhs: torch.Tensor, value_weight: float) -> torch.Tensor:
    """Mean cross-entropy of every factor over non-padding positions, plus ``value_weight`` x the
    value cross-entropy at defining (RHS) positions, where the computation happens (they are a small
    fraction of all positions, so an unweighted mean hardly sees them)."""
    loss = sum(F.cross_entropy(lg[valid], targets[..., f][valid]) for f, lg in enumerate(logits))
    if value_weight and rhs.any():
        loss = loss + value_weight * F.cross_entropy(logits[F_VALUE][rhs], targets[..., F_VALUE][rhs])
    return loss


def frontier_metrics(logits: list[torch.Tensor], batch: StepBatch) -> dict[str, float]:
    """Value accuracy where new values are written (the frontier), overall and by fan-in."""
    pred = logits[F_VALUE].argmax(-1)
    right = pred == batch.targets[..., F_VALUE]
    out = {"token_acc": float(torch.stack([lg.argmax(-1) for lg in logits], -1).eq(batch.targets).all(-1)[batch.valid].float().mean())}
    if batch.frontier.any():
        out["frontier_acc"] = float(right[batch.frontier].float().mean())
    for k in (1, 2, 3):
        sel = batch.frontier & (batch.fan_in == k)
        if sel.any():
            out[f"fan{k}_acc"] = float(right[sel].float().mean())
    return out


class Unroll(nn.Module):
    """``n_steps`` of the model from a state, gradients through the loop; one call per training step.

    Every training mode goes through this one module call (a teacher-forced step is ``n_steps=1``), so
    that ``DistributedDataParallel`` can wrap it and synchronise gradients once per step.
    """

    def __init__(self, model: LoopedModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, state: torch.Tensor, n_steps: int = 1, capture: str | None = None):
        """Per-step logits; with ``capture`` (a site name such as ``blocks.0.hook_resid_post``) also
        that site's activation at every step: ``(per_step, captured)``."""
        per_step, hidden, captured = [], None, []
        tap = CaptureTap(capture, captured) if capture else NO_TAP
        for t in range(n_steps):
            logits, h = self.model.step(state, tap, hidden=hidden)
            if self.model.cfg.latent == "continuous":
                hidden = h
            elif t + 1 < n_steps:
                state = self.model.decode(logits).detach()
            per_step.append(logits)
        return (per_step, captured) if capture else per_step


class CaptureTap(Tap):
    """Keeps the activation of one hook site (a training-time tap; no hook machinery involved)."""

    def __init__(self, site: str, into: list[torch.Tensor]) -> None:
        self.site, self.into = site, into

    def __call__(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if name == self.site:
            self.into.append(x)
        return x


def operand_lookup_loss(model: LoopedModel, resid: torch.Tensor, operand_value: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the model's own value head, read after the first block at operand occurrences,
    against the value sitting at each operand's defining slot (EMPTY when not yet computed)."""
    where = operand_value >= 0
    if not where.any():
        return resid.new_zeros(())
    logits = model.unembed.W_U[F_VALUE](model.ln_final(resid[where]))
    return F.cross_entropy(logits, operand_value[where])


def unrolled_loss(net: nn.Module, model: LoopedModel, tb: TokenBatch, cfg: TrainConfig, device: torch.device,
                  operand_lookup: float = 0.0) -> tuple[torch.Tensor, dict]:
    """Loss with backpropagation through the loop: continuous-latent and feedforward models.

    Looped continuous models run depth+1 steps (capped at ``unroll_cap``) from the input state;
    algorithmic supervision scores every step against its teacher state, end-to-end only the last
    against the solved state. A feedforward model makes one pass and is scored against the solved state.

    ``operand_lookup`` > 0 adds the default's auxiliary loss (the content lookup name -> value after
    the first block) so that an ablation differs from the full method in its one mechanism, not in
    the curriculum. Algorithmic supervision asks it at every step against the teacher state the step
    starts from, exactly as teacher forcing does. Models without intermediate supervision (end-to-end,
    feedforward) get it only on the first step, for operands whose value the input shows (the
    constants of leaves): asking more would hand them the intermediate states they go without.
    """
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=torch.long)  # noqa: E731
    valid = as_t(np.arange(tb.max_len)[None, :] < tb.length[:, None]).bool()
    rhs = as_t(tb.is_rhs).bool()
    depth = int(tb.max_depth.max())
    n_steps = 1 if not model.cfg.looped else min(depth + 1, cfg.unroll_cap)
    stepwise = model.cfg.supervision != "end_to_end" and model.cfg.looped
    if operand_lookup > 0:
        per_step, captured = net(as_t(tb.state(-1)), n_steps, "blocks.0.hook_resid_post")
    else:
        per_step = net(as_t(tb.state(-1)), n_steps)
    final_target = as_t(tb.solved() if n_steps > depth or not model.cfg.looped else tb.state(n_steps - 1))
    if not stepwise:
        total = factor_loss(per_step[-1], final_target, valid, rhs, cfg.value_weight)
    else:
        total = sum(factor_loss(lg, as_t(tb.state(t)), valid, rhs, cfg.value_weight) for t, lg in enumerate(per_step)) / n_steps
    right = (per_step[-1][F_VALUE].argmax(-1) == final_target[..., F_VALUE])[rhs]
    metrics = {"token_acc": float(right.float().mean()), "frontier_acc": float(right.float().mean())}
    if operand_lookup > 0:
        if stepwise:
            lookup = sum(operand_lookup_loss(model, resid, as_t(operand_values(tb, tb.state(t - 1))))
                         for t, resid in enumerate(captured)) / len(captured)
        else:
            shown = operand_values(tb, tb.state(0))  # state 0 holds exactly the leaves, whose constants the input shows
            shown = np.where(shown == tb.vocab.empty, -1, shown)  # inner nodes: nothing to ask for
            lookup = operand_lookup_loss(model, captured[0], as_t(shown))
        total = total + operand_lookup * lookup
        metrics["lookup_loss"] = float(lookup.detach())
    return total, metrics


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


def set_lookup_temperature(model: LoopedModel, temperature: float) -> None:
    """The first block's training-time content temperature (``Phase.lookup_temperature``); later blocks keep 1."""
    for i, block in enumerate(model.blocks):
        block.attn.train_temperature = temperature if i == 0 else 1.0


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up to the phase's rate, then constant."""
    base = cfg.phase_at(step).lr or cfg.lr
    return base * min(1.0, (step + 1) / max(1, cfg.warmup_steps))


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


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True, device: torch.device | None = None,
          evaluate_fn: Callable[[LoopedModel, TrainConfig], dict] | None = None, export_only: bool = False) -> Path | None:
    """Train ``cfg`` from scratch (or from its last checkpoint with ``resume``); export when done.

    ``export_only`` exports the last checkpoint as it stands, without training (a run that spans
    several sittings ships its latest model this way). Returns the exported model folder (None when
    the config exports nothing).
    """
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
    if export_only:
        if cfg.export_dir is None:
            raise WorkbenchError(f"config {cfg.name!r} sets no 'export' folder")
        return export(run)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=cfg.total_steps, initial=run.step, disable=not (progress and dist_env.main),
               desc=f"train {cfg.name}", dynamic_ncols=True)
    window: list[dict[str, float]] = []
    unrolled = model.cfg.latent == "continuous" or not model.cfg.looped
    net: nn.Module = Unroll(model)
    if dist_env.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    # Every rank draws the same global batch from the same RNG stream and keeps its own slice: the
    # data order does not depend on the number of processes and a checkpoint's RNG state fits all ranks.
    mine = slice(dist_env.rank * cfg.batch_graphs, (dist_env.rank + 1) * cfg.batch_graphs)
    run.begin_stretch(hardware(device, dist_env.world))
    while run.step < cfg.total_steps:
        start = time.perf_counter()
        phase = cfg.phase_at(run.step)
        model.train()
        set_lookup_temperature(model, phase.lookup_temperature)
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, run.step)
        tb = sample_phase(phase, cfg.task, cfg.batch_graphs * dist_env.world, run.rng)
        if unrolled:
            local = tb.select(mine) if dist_env.world > 1 else tb
            loss, metrics = unrolled_loss(net, model, local, cfg, device, phase.operand_lookup)
            n_tokens = int(tb.length.sum())
        else:
            prob = phase.corruption_prob if phase.corruption_prob is not None else model.cfg.corruption_prob
            batch = teacher_forced_batch(tb, steps_per_graph=cfg.steps_per_graph, cfg=model.cfg, corruption_prob=prob,
                                         modulus=phase.modulus or cfg.task.modulus, rng=run.rng, device=device)
            n_tokens = batch.n_tokens
            if dist_env.world > 1:
                rows = slice(mine.start * cfg.steps_per_graph, mine.stop * cfg.steps_per_graph)
                batch = StepBatch(*(getattr(batch, f)[rows] for f in ("inputs", "targets", "valid", "frontier", "fan_in")),
                                  n_tokens=int(batch.valid[rows].sum()), operand_value=batch.operand_value[rows])
            if phase.operand_lookup > 0:
                steps_out, captured = net(batch.inputs, 1, "blocks.0.hook_resid_post")
                logits = steps_out[0]
                lookup = operand_lookup_loss(model, captured[0], batch.operand_value)
            else:
                logits = net(batch.inputs, 1)[0]
            loss = factor_loss(logits, batch.targets, batch.valid, batch.fan_in >= 0, cfg.value_weight)
            if phase.operand_lookup > 0:
                loss = loss + phase.operand_lookup * lookup
            with torch.no_grad():
                metrics = frontier_metrics(logits, batch)
                if phase.operand_lookup > 0:
                    metrics["lookup_loss"] = float(lookup)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run.step += 1
        run.tokens += n_tokens
        run.wall_time += time.perf_counter() - start
        window.append({"loss": float(loss.detach()), **metrics})
        bar.update(1)
        if not dist_env.main:
            continue
        if run.step % cfg.log_every == 0 or run.step == cfg.total_steps:
            keys = dict.fromkeys(k for w in window for k in w)  # every metric seen, in first-seen order
            mean = {k: float(np.mean([w[k] for w in window if k in w])) for k in keys}
            window = []
            bar.set_postfix({k: f"{v:.3f}" for k, v in mean.items() if k in ("loss", "frontier_acc", "fan2_acc", "fan3_acc")})
            with log_path.open("a") as f:
                f.write(json.dumps({"event": "train", "step": run.step, "phase": phase.name, "tokens": run.tokens,
                                    "wall_time_s": round(run.wall_time, 1), "lr": learning_rate(cfg, run.step - 1), **mean}) + "\n")
        if evaluate_fn is not None and (run.step % cfg.eval_every == 0 or run.step == cfg.total_steps):
            t0 = time.perf_counter()
            result = {"step": run.step, "phase": phase.name, **evaluate_fn(model, cfg)}
            run.wall_time += time.perf_counter() - t0
            run.evals.append(result)
            with log_path.open("a") as f:
                f.write(json.dumps({"event": "eval", **result}) + "\n")
            bar.write(f"step {run.step} eval: {json.dumps(result)}")
        if run.step % cfg.checkpoint_every == 0 or run.step == cfg.total_steps:
            run.save()
    bar.close()
    if dist_env.world > 1:
        identical = replicas_identical(model)
        if dist_env.main:
            with log_path.open("a") as f:
                f.write(json.dumps({"event": "replicas", "step": run.step, "world_size": dist_env.world, "identical": identical}) + "\n")
        if not identical:
            raise RuntimeError("data-parallel replicas diverged: their weights differ after training")
        if not dist_env.main:
            return None
    return export(run) if cfg.export_dir else None


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
