"""``Trajectory``: one batched run of the loop, decoded per node (values, changes, when each node is right)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from workbench.hooks.tl_wrapper import HookedOutput
from workbench.task.tokens import TokenBatch
from workbench.task.vocab import F_VALUE


@dataclass
class Trajectory:
    """One batched run, decoded per node. Shapes: [step + 1, batch, node] for values (0 = input)."""

    tokens: TokenBatch = field(repr=False)
    states: Tensor  # [step + 1, batch, pos, factor]: states[t] is what step t read, states[-1] the last output
    values: Tensor  # [step + 1, batch, node] VALUE code at each node's defining position, -1 for padding
    truth: Tensor  # [batch, node] true values, -1 for padding
    iterations: Tensor  # [batch] 1 + the last step that changed the graph's state
    converged: Tensor  # [batch] bool: the last step changed nothing

    @property
    def n_steps(self) -> int:
        return self.states.shape[0] - 1

    @property
    def node_mask(self) -> Bool[Tensor, "batch node"]:
        return self.truth >= 0

    @property
    def depth(self) -> Int[Tensor, "batch node"]:  # -1 for padding
        return torch.from_numpy(self.tokens.graphs.depth).long()

    @property
    def changed(self) -> Bool[Tensor, "step batch node"]:
        """[step, batch, node]: step t changed the node's value."""
        return (self.values[1:] != self.values[:-1]) & self.node_mask

    @property
    def correct(self) -> Bool[Tensor, "state batch node"]:
        """[step + 1, batch, node]: the node holds its true value (0 = input)."""
        return (self.values == self.truth) & self.node_mask

    @property
    def first_correct(self) -> Int[Tensor, "batch node"]:
        """[batch, node]: the first step whose output holds the true value; -1 if none does."""
        out = self.correct[1:]
        first = out.to(torch.uint8).argmax(0)
        return torch.where(out.any(0), first, -1)

    @property
    def settled(self) -> Int[Tensor, "batch node"]:
        """[batch, node]: the step from which every output holds the true value; -1 if the last is wrong.

        For a perfect model both this and ``first_correct`` equal the node's depth.
        """
        wrong = ~self.correct[1:] & self.node_mask
        steps = torch.arange(self.n_steps)[:, None, None]
        last_wrong = torch.where(wrong, steps, -1).amax(0)
        return torch.where(wrong[-1] | ~self.node_mask, -1, last_wrong + 1)

    @property
    def solved(self) -> Bool[Tensor, "batch"]:
        """[batch]: every node holds its true value at the end."""
        return (self.correct[-1] | ~self.node_mask).all(-1)

    def node_accuracy(self) -> Float[Tensor, "state"]:
        """[step + 1]: fraction of all nodes holding their true value, after each step."""
        return self.correct.sum((1, 2)) / self.node_mask.sum().clamp(min=1)


def node_values(states: Int[Tensor, "*step batch pos factor"], rhs_pos: np.ndarray | Tensor) -> Int[Tensor, "*step batch node"]:
    """VALUE codes at every node's defining position: [..., batch, pos, factor] -> [..., batch, node] (-1 padding)."""
    rhs = torch.as_tensor(rhs_pos).long()
    idx = rhs.clamp(min=0).expand(*states.shape[:-3], *rhs.shape)  # [..., batch, node]
    vals = states[..., F_VALUE].gather(-1, idx)
    return torch.where(rhs >= 0, vals, -1)


def decode_run(out: HookedOutput, tb: TokenBatch) -> Trajectory:
    """The ``Trajectory`` of a ``HookedLooped`` output (``return_type="output"``) on the token batch ``tb``."""
    return decode_states(out.states.cpu(), tb, out.iterations.cpu(), out.converged.cpu())


def decode_states(states: Int[Tensor, "state batch pos factor"], tb: TokenBatch, iterations: Int[Tensor, "batch"],
                  converged: Bool[Tensor, "batch"]) -> Trajectory:
    """The ``Trajectory`` of a run's states on ``tb``: how a run kept elsewhere (the app's cache) becomes one
    again, decoded exactly as ``decode_run`` decodes a fresh run."""
    return Trajectory(tb, states, node_values(states, tb.rhs_pos), torch.from_numpy(node_truth(tb)).long(), iterations, converged)


def node_truth(tb: TokenBatch) -> np.ndarray:  # [batch, node]
    """Each node's true value, -1 where a graph has fewer nodes: what a ``Trajectory``'s ``truth`` holds."""
    return np.where(tb.graphs.valid, tb.graphs.value, -1)


__all__ = ["Trajectory", "node_values", "node_truth", "decode_run", "decode_states"]
