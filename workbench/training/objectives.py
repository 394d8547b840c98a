"""What one training step optimizes, one strategy per training mode, both over ``LoopedModel.iterate``.

- ``TeacherForced`` (the discrete looped model): one step from a sampled teacher state (corrupted for
  error correction), scored against the next teacher state. The bottleneck's argmax stops gradients
  between steps anyway, so one step is all the signal there is.
- ``Unrolled`` (continuous latent, end-to-end, feed-forward): depth + 1 steps from the input with
  gradients through the loop (``unroll_cap`` at most); algorithmic supervision scores every step
  against its teacher state, end-to-end only the last against the solved state.

Both can add the curriculum's operand-lookup auxiliary loss (``Phase.operand_lookup``), asked only of
what the mode's supervision may know.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from workbench.model.layers import NO_TAP, Tap
from workbench.model.looped import LoopedModel, Schedule
from workbench.task.tokens import TokenBatch
from workbench.task.vocab import F_VALUE
from workbench.training.batches import StepBatch, operand_values, teacher_forced_batch
from workbench.training.config import Phase, TrainConfig

#: the hook site after the first block, where the operand-lookup auxiliary loss reads the residual stream
LOOKUP_SITE = "blocks.0.hook_resid_post"


def factor_loss(logits: list[Tensor], targets: Int[Tensor, "row pos factor"], valid: Bool[Tensor, "row pos"],
                rhs: Bool[Tensor, "row pos"], value_weight: float) -> Tensor:
    """Mean cross-entropy of every factor over non-padding positions, plus ``value_weight`` x the
    value cross-entropy at defining (RHS) positions, where the computation happens (they are a small
    fraction of all positions, so an unweighted mean hardly sees them)."""
    loss = sum(F.cross_entropy(lg[valid], targets[..., f][valid]) for f, lg in enumerate(logits))
    if value_weight and rhs.any():
        loss = loss + value_weight * F.cross_entropy(logits[F_VALUE][rhs], targets[..., F_VALUE][rhs])
    return loss


def frontier_metrics(logits: list[Tensor], batch: StepBatch) -> dict[str, float]:
    """Value accuracy where new values are written (the frontier), overall and by fan-in."""
    pred = logits[F_VALUE].argmax(-1)
    right = pred == batch.targets[..., F_VALUE]
    out = {"token_acc": float(torch.stack([lg.argmax(-1) for lg in logits], -1).eq(batch.targets).all(-1)[batch.valid].float().mean())}
    if batch.frontier.any():
        out["frontier_acc"] = float(right[batch.frontier].float().mean())
    return out | accuracy_by_fan_in(right, batch.frontier, batch.fan_in)


def accuracy_by_fan_in(right: Bool[Tensor, "row pos"], where: Bool[Tensor, "row pos"], fan: Int[Tensor, "row pos"],
                       fans: tuple[int, ...] = (1, 2, 3)) -> dict[str, float]:
    """``fan{k}_acc``: the share of ``right`` among the positions ``where`` whose node has k parents (only the
    fan-ins present); fan-in 0 is named ``leaf_acc``."""
    out = {}
    for k in fans:
        sel = where & (fan == k)
        if sel.any():
            out["leaf_acc" if k == 0 else f"fan{k}_acc"] = float(right[sel].float().mean())
    return out


def final_value_metrics(logits: list[Tensor], target: Int[Tensor, "row pos factor"], rhs: Bool[Tensor, "row pos"],
                        fan: Int[Tensor, "row pos"]) -> dict[str, float]:
    """Value accuracy of the last step at defining positions, overall, of leaves and by fan-in (``fan1_acc``...).

    The unrolled models have no frontier of their own; reporting their accuracy by the node's number of
    parents as the teacher-forced metrics do is what shows where a baseline is stuck (a model that has
    not formed the name lookup gets leaves right and one-parent copies at chance).
    """
    right = logits[F_VALUE].argmax(-1) == target[..., F_VALUE]
    acc = float(right[rhs].float().mean())
    return {"token_acc": acc, "frontier_acc": acc} | accuracy_by_fan_in(right, rhs, fan, (0, 1, 2, 3))


class CaptureTap(Tap):
    """Keeps the activation of one hook site at every step (a training-time tap; no hook machinery)."""

    def __init__(self, site: str, into: list[Tensor]) -> None:
        self.site, self.into = site, into

    def __call__(self, name: str, x: Tensor) -> Tensor:
        if name == self.site:
            self.into.append(x)
        return x


class Unroll(nn.Module):
    """``n_steps`` of the loop from a state, gradients through it; one module call per training step.

    Every training mode goes through this one call (a teacher-forced step is ``n_steps=1``), so that
    ``DistributedDataParallel`` can wrap it and synchronise gradients once per step.
    """

    def __init__(self, model: LoopedModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, state: Int[Tensor, "batch pos factor"], n_steps: int = 1, capture: str | None = None,
                margin: float | None = None):
        """Per-step logits; with ``capture`` (a site such as ``LOOKUP_SITE``) also that site's
        activation at every step: ``(per_step, captured)``. With ``margin`` (one step only) the captured
        activation is the first block's output from a second pass of that block at content temperature
        ``margin`` (``Phase.lookup_margin``), inside this one call so data-parallel training syncs it too."""
        if margin is not None:
            return self.forward(state, n_steps), [self.model.first_block(state, margin)]
        captured: list[Tensor] = []
        tap = CaptureTap(capture, captured) if capture else NO_TAP
        per_step = [step.logits for step in self.model.iterate(state, schedule=Schedule.exactly(n_steps),
                                                                taps=lambda t: tap)]
        return (per_step, captured) if capture else per_step


def operand_lookup_loss(model: LoopedModel, resid: Float[Tensor, "row pos d_model"],
                        operand_value: Int[Tensor, "row pos"]) -> Tensor:
    """Cross-entropy of the model's own value head, read after the first block at operand occurrences,
    against the value sitting at each operand's defining slot (EMPTY when not yet computed; -1: no operand)."""
    where = operand_value >= 0
    if not where.any():
        return resid.new_zeros(())
    logits = model.unembed.W_U[F_VALUE](model.ln_final(resid[where]))
    return F.cross_entropy(logits, operand_value[where])


#: a first-layer head "looks names up" when its batch-mean attention from operand occurrences onto the defining slot exceeds this
LOOKUP_HEAD_MASS = 0.5
#: the temperature ``lookup_attention`` asks the margin at when the phase sets no ``lookup_margin``
DEFAULT_LOOKUP_MARGIN = 2.0


def lookup_attention_loss(model: LoopedModel, state: Int[Tensor, "row pos factor"], operand_def: Int[Tensor, "row pos"],
                          temperature: float) -> tuple[Tensor, int]:
    """-log attention on the defining slot, at every operand occurrence, of every first-layer lookup head,
    with the scores divided by ``temperature``; and how many heads counted as lookup heads.

    A head counts when its batch-mean attention on the defining slot (at temperature 1, no gradient) is above
    ``LOOKUP_HEAD_MASS``: the heads the model already uses for the lookup are asked to keep it with a margin,
    none is told to become one. With no such head the best one is asked.
    """
    where = operand_def >= 0
    if not where.any():
        return state.new_zeros((), dtype=torch.float32), 0
    block = model.blocks[0]
    scores = block.attn.scores(block.ln1(model.embed_dropout(model.embed_state(state))))  # [row, head, query, key]
    rows, pos = where.nonzero(as_tuple=True)
    picked = scores[rows, :, pos, :]  # [occurrence, head, key]
    target = operand_def[rows, pos][:, None, None].expand(-1, picked.shape[1], 1)  # [occurrence, head, 1]
    with torch.no_grad():
        mass = torch.softmax(picked, -1).gather(-1, target)[..., 0].mean(0)  # [head]
        heads = mass > LOOKUP_HEAD_MASS
        if not heads.any():
            heads = mass == mass.max()
    logp = torch.log_softmax(picked[:, heads] / temperature, -1).gather(-1, target[:, heads])  # [occurrence, head, 1]
    return -logp.mean(), int(heads.sum())


@dataclass
class StepLoss:
    """One training step's loss (to backpropagate), its metrics (to log) and the tokens it read."""

    loss: Tensor
    metrics: dict[str, float]
    n_tokens: int


@dataclass(frozen=True)
class Shard:
    """This process's slice of the global batch (graphs ``rows``) when data-parallel; all of it otherwise."""

    rows: slice
    world: int = 1


class TeacherForced:
    """The discrete looped model's objective: one teacher-forced (and maybe corrupted) step."""

    def loss(self, net: nn.Module, model: LoopedModel, tb: TokenBatch, phase: Phase, cfg: TrainConfig,
             rng: np.random.Generator, device: torch.device, shard: Shard) -> StepLoss:
        prob = phase.corruption_prob if phase.corruption_prob is not None else model.cfg.corruption_prob
        batch = teacher_forced_batch(tb, steps_per_graph=cfg.steps_per_graph, cfg=model.cfg, corruption_prob=prob,
                                     modulus=phase.modulus or cfg.task.modulus, rng=rng, device=device)
        n_tokens = batch.n_tokens
        if shard.world > 1:
            rows = slice(shard.rows.start * cfg.steps_per_graph, shard.rows.stop * cfg.steps_per_graph)
            batch = StepBatch(*(getattr(batch, f)[rows] for f in ("inputs", "targets", "valid", "frontier", "fan_in")),
                              n_tokens=int(batch.valid[rows].sum()), operand_value=batch.operand_value[rows],
                              operand_def=batch.operand_def[rows])
        lookup = None
        if phase.operand_lookup > 0:
            steps_out, captured = net(batch.inputs, 1, LOOKUP_SITE, phase.lookup_margin)
            logits = steps_out[0]
            lookup = operand_lookup_loss(model, captured[0], batch.operand_value)
        else:
            logits = net(batch.inputs, 1)[0]
        loss = factor_loss(logits, batch.targets, batch.valid, batch.fan_in >= 0, cfg.value_weight)
        with torch.no_grad():
            metrics = frontier_metrics(logits, batch)
        if lookup is not None:
            loss = loss + phase.operand_lookup * lookup
            metrics["lookup_loss"] = float(lookup.detach())
        if phase.lookup_attention > 0:
            margin = phase.lookup_margin or DEFAULT_LOOKUP_MARGIN
            routing, n_heads = lookup_attention_loss(model, batch.inputs, batch.operand_def, margin)
            loss = loss + phase.lookup_attention * routing
            metrics["lookup_attention_loss"], metrics["lookup_heads"] = float(routing.detach()), float(n_heads)
        return StepLoss(loss, metrics, n_tokens)


class Unrolled:
    """Continuous-latent, end-to-end and feed-forward models: backpropagation through the unrolled loop."""

    def loss(self, net: nn.Module, model: LoopedModel, tb: TokenBatch, phase: Phase, cfg: TrainConfig,
             rng: np.random.Generator, device: torch.device, shard: Shard) -> StepLoss:
        local = tb.select(shard.rows) if shard.world > 1 else tb
        loss, metrics = unrolled_loss(net, model, local, cfg, device, phase.operand_lookup)
        return StepLoss(loss, metrics, int(tb.length.sum()))


def objective_for(model: LoopedModel) -> TeacherForced | Unrolled:
    """The training mode a model's mechanisms call for (chosen once, when training starts)."""
    return Unrolled() if model.cfg.latent == "continuous" or not model.cfg.looped else TeacherForced()


def unrolled_loss(net: nn.Module, model: LoopedModel, tb: TokenBatch, cfg: TrainConfig, device: torch.device,
                  operand_lookup: float = 0.0) -> tuple[Tensor, dict]:
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
        per_step, captured = net(as_t(tb.state(-1)), n_steps, LOOKUP_SITE)
    else:
        per_step = net(as_t(tb.state(-1)), n_steps)
    final_target = as_t(tb.solved() if n_steps > depth or not model.cfg.looped else tb.state(n_steps - 1))
    if not stepwise:
        total = factor_loss(per_step[-1], final_target, valid, rhs, cfg.value_weight)
    else:
        total = sum(factor_loss(lg, as_t(tb.state(t)), valid, rhs, cfg.value_weight) for t, lg in enumerate(per_step)) / n_steps
    metrics = final_value_metrics(per_step[-1], final_target, rhs, as_t(tb.fan_in))
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
