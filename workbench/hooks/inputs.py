"""What the hookable model accepts as input: problem text, parsed problems, graphs, token batches or tensors.

Problems become tokens through the one encoder, ``workbench.task.encoding.encode``; this module only
adapts its answer to the wrappers (a token batch, name maps, or ``(tokens, lengths)`` tensors).
"""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor

from workbench.errors import WorkbenchError
from workbench.task.config import TaskConfig
from workbench.task.encoding import Problems, encode, pad_token_batch
from workbench.task.vocab import F_SYNTAX, PAD


def as_tensor_input(x, task: TaskConfig, lengths: Tensor | None = None) -> tuple[Int[Tensor, "batch pos factor"], Int[Tensor, "batch"]]:
    """``(tokens [batch, pos, factor] long, lengths [batch])`` from any accepted input."""
    if isinstance(x, Tensor):
        tokens = x.long()
        if tokens.ndim == 2:
            tokens = tokens[None]  # one sequence -> [1, pos, factor]
        if tokens.ndim != 3 or tokens.shape[-1] != 4:
            raise WorkbenchError(f"tokens must be [batch, pos, 4 factors], got shape {tuple(x.shape)}")
        if lengths is None:
            lengths = (tokens[..., F_SYNTAX] != PAD).sum(1)
        return tokens, lengths
    tb, _ = encode(x, task)
    return torch.from_numpy(tb.tokens).long(), torch.from_numpy(tb.length).long()


__all__ = ["Problems", "pad_token_batch", "as_tensor_input"]
