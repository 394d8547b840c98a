"""The looped model, top to bottom: embed the state, run the block stack, decode every factor, repeat.

    state [batch, pos, factor] --embed--> h --blocks--> LN --heads--> logits per factor
        --argmax (the discrete bottleneck)--> next state                       (one step)

The loop exists once, in ``LoopedModel.iterate``; ``run`` (inference), the TransformerLens and nnsight
wrappers and training's unrolled path are thin drivers over it. What differs between the paper's
mechanisms is chosen when the model is built, as two small strategies:

- ``recurrence``: ``Looped`` applies the same blocks at every step, until the state stops changing;
  ``FeedForward`` applies its distinct blocks once (one pass is the whole computation).
- ``latent``: ``DiscreteLatent`` re-embeds the decoded tokens (the bottleneck); ``ContinuousLatent``
  feeds the final hidden state forward, and the decoded tokens are only read out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from workbench.model.config import ModelConfig
from workbench.model.layers import NO_TAP, Block, FactorEmbed, FactorUnembed, Tap
from workbench.task.config import TaskConfig
from workbench.task.vocab import EQUALS, F_SYNTAX, PAD, VARIABLE, Vocab

#: The default step cap is this many steps per equation of the largest graph: a perfect model needs
#: depth + 1 <= equations + 1 steps; the slack lets a model that repairs its own errors finish.
STEPS_PER_EQUATION = 2
#: ... and never fewer than this (a one-equation problem still needs its confirming step).
MIN_STEP_CAP = 2


def count_equations(tokens: Int[Tensor, "batch pos factor"]) -> Int[Tensor, "batch"]:
    """Equations per graph: one ``=`` token each."""
    return (tokens[..., F_SYNTAX] == EQUALS).sum(1)


def default_step_cap(tokens: Int[Tensor, "batch pos factor"]) -> int:
    """The one default cap on a loop's steps: 2 x the equations of the largest graph, at least 2."""
    n_eq = int(count_equations(tokens).max().item()) if tokens.numel() else 0
    return max(MIN_STEP_CAP, STEPS_PER_EQUATION * n_eq)


@dataclass(frozen=True)
class Schedule:
    """How many steps a loop may run: at most ``most``; a graph whose state stops changing after step
    ``least`` is done (a looped model stops once every graph is done)."""

    most: int
    least: int = 0

    @classmethod
    def exactly(cls, n_steps: int) -> "Schedule":
        return cls(n_steps, n_steps)


class Looped:
    """Recurrence: one weight-shared stack, looped until every graph's state is a fixed point."""

    one_pass = False

    def schedule(self, wanted: Schedule) -> Schedule:
        return Schedule(max(wanted.most, wanted.least), wanted.least)


class FeedForward:
    """Recurrence: distinct blocks applied once; the single pass is the whole computation."""

    one_pass = True

    def schedule(self, wanted: Schedule) -> Schedule:
        return Schedule.exactly(1)


class DiscreteLatent:
    """Between steps only the decoded tokens cross: the next step re-embeds them (the paper's bottleneck)."""

    freezes = False  # a discrete state at a fixed point stays there by itself

    def carry(self, hidden: Tensor, previous: Tensor | None, frozen: Bool[Tensor, "rows"]) -> Tensor | None:
        return None


class ContinuousLatent:
    """Between steps the final hidden state crosses as the next step's input; decoding only reads it out.

    A graph whose decoded state repeats is frozen (its hidden state would drift on, unsupervised)."""

    freezes = True

    def carry(self, hidden: Tensor, previous: Tensor | None, frozen: Bool[Tensor, "rows"]) -> Tensor:
        if previous is None or not bool(frozen.any()):  # nothing frozen (always so when finished graphs are dropped)
            return hidden
        return torch.where(frozen[:, None, None], previous[:, :hidden.shape[1]], hidden)


@dataclass
class LoopStep:
    """One step of ``LoopedModel.iterate``: what it read and wrote, and the tally so far.

    ``rows`` are the batch rows this step ran on (all of them unless the loop drops finished graphs),
    trimmed to their longest sequence (``width``). ``state`` is the whole batch after this step; with
    ``compact`` it is the loop's own buffer, overwritten by the next step (copy what you keep).
    """

    t: int
    rows: Int[Tensor, "rows"]
    state_in: Int[Tensor, "rows width factor"]  # as the step read it (after any hook on hook_state)
    logits: list[Tensor]  # factor x [rows, width, vocab_f]
    hidden: Tensor  # [rows, width, d_model] after the final LayerNorm
    state_out: Int[Tensor, "rows width factor"]  # decoded (after any hook on hook_bottleneck)
    changed: Bool[Tensor, "rows"]
    state: Int[Tensor, "batch pos factor"]
    iterations: Int[Tensor, "batch"]  # 1 + the last step that changed each graph (steps it needed)
    converged: Bool[Tensor, "batch"]  # its last step left it unchanged (a fixed point)


@dataclass
class LoopOutput:
    """What ``LoopedModel.run`` returns (tensors on the CPU).

    iterations[b] counts the steps until graph b's state stopped changing: its state after that many
    steps is a fixed point (one more step, run to confirm it, changed nothing). For a perfect model
    and a graph of depth d it is d + 1 (step 0 writes the leaves).
    """

    final: Tensor  # [batch, pos, factor] the last state
    iterations: Tensor  # [batch]
    converged: Tensor  # [batch] bool
    states: Tensor | None  # [step, batch, pos, factor]: states[0] is the input, states[t+1] the output of step t


def defining_positions(state: Int[Tensor, "*batch pos factor"]) -> Bool[Tensor, "*batch pos"]:
    """Which positions define a variable: a VARIABLE token right after ``=`` ([batch, pos] bool).

    Read off the syntax factor alone, which every state carries unchanged from the input.
    """
    syntax = state[..., F_SYNTAX]  # [batch, pos]
    after_equals = torch.zeros_like(syntax, dtype=torch.bool)
    after_equals[..., 1:] = syntax[..., :-1] == EQUALS
    return after_equals & (syntax == VARIABLE)


class LoopedModel(nn.Module):
    """One weight-shared block stack looped over a discrete (or continuous) latent state."""

    def __init__(self, cfg: ModelConfig, task: TaskConfig) -> None:
        super().__init__()
        self.cfg, self.task = cfg, task
        self.recurrence = Looped() if cfg.looped else FeedForward()
        self.latent = ContinuousLatent() if cfg.latent == "continuous" else DiscreteLatent()
        self.vocab = Vocab.for_task(task)
        sizes = self.vocab.sizes
        self.embed = FactorEmbed(sizes, cfg.d_model)
        if cfg.role_embedding:  # row 0: every other position, row 1: a defining position; zero = no change
            self.embed_role = nn.Embedding(2, cfg.d_model)
            nn.init.zeros_(self.embed_role.weight)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_final = nn.LayerNorm(cfg.d_model)
        self.unembed = FactorUnembed(sizes, cfg.d_model)
        self.embed_dropout = nn.Dropout(cfg.dropout)
        self._prefixes = [f"blocks.{layer}." for layer in range(cfg.n_layers)]
        if cfg.embed_std is not None:
            for table in self.embed.W_E:
                nn.init.normal_(table.weight, std=cfg.embed_std)

    @property
    def device(self) -> torch.device:
        return self.ln_final.weight.device

    def encode(self, h: Float[Tensor, "batch pos d_model"], tap: Tap = NO_TAP) -> Float[Tensor, "batch pos d_model"]:
        """The block stack and final LayerNorm: [batch, pos, d_model] -> [batch, pos, d_model]."""
        h = self.embed_dropout(h)
        for block, prefix in zip(self.blocks, self._prefixes):
            h = block(h, tap, prefix)
        return tap("hook_final", self.ln_final(h))

    def embed_state(self, state: Int[Tensor, "batch pos factor"]) -> Float[Tensor, "batch pos d_model"]:
        """The discrete state's embedding: the factor tables' sum, plus the role row where enabled."""
        hidden = self.embed(state)
        if self.cfg.role_embedding:
            hidden = hidden + self.embed_role(defining_positions(state).long())
        return hidden

    def first_block(self, state: Int[Tensor, "batch pos factor"], temperature: float) -> Float[Tensor, "batch pos d_model"]:
        """The first block's output on ``state`` with its content scores divided by ``temperature`` (a
        training-time probe of how much margin the first-layer lookup has; see ``Phase.lookup_margin``)."""
        attn = self.blocks[0].attn
        kept, attn.train_temperature = attn.train_temperature, temperature
        try:
            return self.blocks[0](self.embed_dropout(self.embed_state(state)), NO_TAP, self._prefixes[0])
        finally:
            attn.train_temperature = kept

    def step(self, state: Int[Tensor, "batch pos factor"], tap: Tap = NO_TAP,
             hidden: Tensor | None = None) -> tuple[list[Tensor], Tensor]:
        """One pass of the stack: logits per factor and the final hidden state [batch, pos, d_model].

        ``hidden`` (continuous latent, steps > 0) replaces the embedded state as the input. The loop's
        own sites (``hook_state``, ``hook_bottleneck``) are tapped by ``iterate``, around this call.
        """
        h = tap("hook_embed", self.embed_state(state) if hidden is None else hidden)
        h = self.encode(h, tap)
        logits = [tap(f"hook_logits.{f}", lg) for f, lg in enumerate(self.unembed(h))]  # factor x [batch, pos, vocab_f]
        return logits, h

    @staticmethod
    def decode(logits: list[Tensor]) -> Int[Tensor, "batch pos factor"]:
        """The discrete bottleneck: argmax of every factor -> the next state [batch, pos, factor]."""
        return torch.stack([lg.argmax(-1) for lg in logits], dim=-1)

    def forward(self, state: Int[Tensor, "batch pos factor"]) -> list[Tensor]:
        """Logits per factor of one step from ``state`` [batch, pos, factor] (teacher forcing, with grad)."""
        return self.step(state)[0]

    def iterate(self, tokens: Int[Tensor, "batch pos factor"], lengths: Int[Tensor, "batch"] | None = None, *,
                schedule: Schedule | None = None, taps: Callable[[int], Tap] | None = None,
                compact: bool = False) -> Iterator[LoopStep]:
        """The loop, the one place it is written: yields every step (gradients follow the caller's mode).

        tokens: [batch, pos, factor] input states, right-padded with PAD tokens; ``lengths`` (default:
            up to the first PAD) keeps padding as padding in every state.
        schedule: steps to run (default: until no graph changes, at most ``default_step_cap``); the
            recurrence may override it (a feed-forward model makes one pass).
        taps: ``t -> Tap``, the hook points of step t (the hookable wrappers; training's capture).
        compact: drop finished graphs from the batch and trim it to the longest still running (fast
            inference); otherwise every graph runs every step with the full batch axis (hooks see the
            shapes they were given), and a continuous latent freezes a finished graph instead.
        """
        tokens = tokens.to(self.device).long()
        B, P, _ = tokens.shape
        lengths = (tokens[..., F_SYNTAX] != PAD).sum(1) if lengths is None else lengths.to(self.device)
        schedule = self.recurrence.schedule(schedule or Schedule(default_step_cap(tokens)))
        pad = torch.tensor(self.vocab.pad_token(), device=self.device)
        is_pad = (torch.arange(P, device=self.device)[None, :] >= lengths[:, None])[..., None]  # [batch, pos, 1]
        state = tokens.clone() if compact else tokens  # compact writes rows back into its own buffer
        hidden: Tensor | None = None  # what a continuous latent carries, [rows, width, d_model]
        rows = torch.arange(B, device=self.device)
        frozen = torch.zeros(B, dtype=torch.bool, device=self.device)
        iterations = torch.zeros(B, dtype=torch.long, device=self.device)
        converged = torch.zeros(B, dtype=torch.bool, device=self.device)
        for t in range(schedule.most):
            tap = NO_TAP if taps is None else taps(t)
            width = int(lengths[rows].max().item()) if compact else P
            x = state[rows, :width] if compact else state
            if tap.active("hook_state"):  # an in-place edit must not reach the caller's tokens or a kept state
                x = x.clone()
            x = tap("hook_state", x)
            logits, h = self.step(x, tap, None if hidden is None else hidden[:, :width])
            new = torch.where(is_pad[rows, :width] if compact else is_pad, pad, self.decode(logits))
            new = tap("hook_bottleneck", new)
            if self.latent.freezes and not compact:
                new = torch.where(frozen[:, None, None], x, new)
            hidden = self.latent.carry(h, hidden, frozen[rows])
            changed = (new != x).flatten(1).any(1)  # [rows]
            iterations[rows] = torch.where(changed, t + 1, iterations[rows])
            converged[rows] = ~changed
            if self.recurrence.one_pass:
                iterations.fill_(1)
                converged.fill_(True)
            if compact:
                state[rows, :width] = new
            else:
                state = new
            done = ~changed & (t + 1 > schedule.least)  # [rows]
            yield LoopStep(t, rows, x, logits, h, new, changed, state, iterations, converged)
            if compact:
                rows, hidden = rows[~done], None if hidden is None else hidden[~done]
                if len(rows) == 0:
                    return
            else:
                frozen |= done
                if bool(done.all()):
                    return

    @torch.no_grad()
    def run(self, tokens: Int[Tensor, "batch pos factor"], *, lengths: Tensor | None = None,
            max_steps: int | None = None, min_steps: int = 0, record: bool = False) -> LoopOutput:
        """Loop until every graph's state stops changing (or ``max_steps``); returns a ``LoopOutput``.

        max_steps: the cap (default ``default_step_cap``); min_steps: run at least this many steps even
        if the state is already fixed; record: keep every step's state (``states``, int16 on the CPU).
        Finished graphs drop out of the batch (``iterate(compact=True)``).
        """
        tokens = tokens.to(self.device).long()
        schedule = Schedule(default_step_cap(tokens) if max_steps is None else max_steps, min_steps)
        states = [tokens.cpu().to(torch.int16)] if record else None
        last = None
        for last in self.iterate(tokens, lengths, schedule=schedule, compact=True):
            if states is not None:
                states.append(last.state.cpu().to(torch.int16))
        if last is None:  # no step at all (max_steps = 0)
            B = tokens.shape[0]
            return LoopOutput(tokens.cpu(), torch.zeros(B, dtype=torch.long), torch.zeros(B, dtype=torch.bool),
                              None if states is None else torch.stack(states))
        return LoopOutput(last.state.cpu().clone(), last.iterations.cpu(), last.converged.cpu(),
                          None if states is None else torch.stack(states))

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
