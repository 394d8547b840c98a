"""The looped model, top to bottom: embed the state, run the block stack, decode every factor, repeat.

    state [batch, pos, factor] --embed--> h --blocks--> LN --heads--> logits per factor
        --argmax (the discrete bottleneck)--> next state                       (one step)

``looped`` models apply the same blocks at every step; ``feedforward`` models apply their distinct
blocks once. A ``continuous`` latent skips the decode and feeds the final hidden state forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from workbench.model.config import ModelConfig
from workbench.model.layers import NO_TAP, Block, FactorEmbed, FactorUnembed, Tap
from workbench.task.config import TaskConfig
from workbench.task.vocab import EQUALS, F_SYNTAX, PAD, VARIABLE, Vocab


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


def defining_positions(state: Tensor) -> Tensor:
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

    def encode(self, h: Tensor, tap: Tap = NO_TAP) -> Tensor:
        """The block stack and final LayerNorm: [batch, pos, d_model] -> [batch, pos, d_model]."""
        h = self.embed_dropout(h)
        for block, prefix in zip(self.blocks, self._prefixes):
            h = block(h, tap, prefix)
        return tap("hook_final", self.ln_final(h))

    def step(self, state: Tensor, tap: Tap = NO_TAP, hidden: Tensor | None = None) -> tuple[list[Tensor], Tensor]:
        """One loop step: logits per factor and the final hidden state.

        ``hidden`` (continuous latent, steps > 0) replaces the embedded state as the input.
        """
        state = tap("hook_state", state)  # [batch, pos, factor]
        if hidden is None:
            hidden = self.embed(state)
            if self.cfg.role_embedding:
                hidden = hidden + self.embed_role(defining_positions(state).long())
        h = tap("hook_embed", hidden)
        h = self.encode(h, tap)
        logits = [tap(f"hook_logits.{f}", lg) for f, lg in enumerate(self.unembed(h))]  # factor x [batch, pos, vocab_f]
        return logits, h

    @staticmethod
    def decode(logits: list[Tensor]) -> Tensor:
        """The discrete bottleneck: argmax of every factor -> the next state [batch, pos, factor]."""
        return torch.stack([lg.argmax(-1) for lg in logits], dim=-1)

    def forward(self, state: Tensor) -> list[Tensor]:
        """Logits per factor of one step from ``state`` [batch, pos, factor] (teacher forcing, with grad)."""
        return self.step(state)[0]

    @torch.no_grad()
    def run(self, tokens: Tensor, *, lengths: Tensor | None = None, max_steps: int | None = None,
            min_steps: int = 0, record: bool = False, tap_for_step=None) -> LoopOutput:
        """Loop until every graph's state stops changing (or ``max_steps``); returns a ``LoopOutput``.

        tokens: [batch, pos, factor] input states (right-padded with PAD tokens).
        lengths: [batch] unpadded lengths (default: up to the first PAD).
        max_steps: the cap; default 2 x the number of equations of the largest graph (>= 2).
        min_steps: run at least this many steps even if the state is already fixed.
        record: keep every step's state (``states``), for trajectories and the app.
        tap_for_step: ``t -> Tap`` giving each step its hook points (the hookable wrapper).
        Finished graphs drop out of the batch; each step runs on the still-changing ones only,
        trimmed to their longest sequence.
        """
        tokens = tokens.to(self.device).long()
        B, P, _ = tokens.shape
        if lengths is None:
            lengths = (tokens[..., F_SYNTAX] != PAD).sum(1)
        lengths = lengths.to(self.device)
        if max_steps is None:
            n_eq = (tokens[..., F_SYNTAX] == EQUALS).sum(1).max().item()  # one '=' per equation
            max_steps = max(2, 2 * int(n_eq))
        if not self.cfg.looped:
            max_steps = min_steps = 1
        pad = torch.tensor(self.vocab.pad_token(), device=self.device)
        is_pad = torch.arange(P, device=self.device)[None, :] >= lengths[:, None]  # [batch, pos]
        state = tokens.clone()
        hidden = None
        iterations = torch.full((B,), max_steps, dtype=torch.long, device=self.device)
        converged = torch.zeros(B, dtype=torch.bool, device=self.device)
        active = torch.arange(B, device=self.device)
        states = [state.cpu().to(torch.int16)] if record else None
        for t in range(max_steps):
            tap = tap_for_step(t) if tap_for_step is not None else NO_TAP
            width = int(lengths[active].max().item())
            sub = state[active, :width]
            logits, h = self.step(sub, tap, None if hidden is None else hidden[:, :width])
            new = self.decode(logits)  # [active, width, factor]
            new = torch.where(is_pad[active, :width, None], pad, new)
            same = (new == sub).all(-1).all(-1)  # [active]
            if self.cfg.latent == "continuous" and self.cfg.looped:
                hidden = h
            state[active, :width] = new
            if states is not None:
                states.append(state.cpu().to(torch.int16))
            done = same & (t + 1 > min_steps)
            if not self.cfg.looped:
                done = torch.ones_like(same)
                iterations[active] = 1
                converged[active] = True
            else:
                iterations[active[done]] = t
                converged[active[done]] = True
            keep = ~done
            active = active[keep]
            if hidden is not None:
                hidden = hidden[keep]
            if len(active) == 0:
                break
        stacked = torch.stack(states) if states is not None else None
        return LoopOutput(state.cpu(), iterations.cpu(), converged.cpu(), stacked)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
