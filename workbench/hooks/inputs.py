"""What the hookable model accepts as input: problem text, parsed problems, graphs, token batches or tensors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np
import torch
from torch import Tensor

from workbench.errors import WorkbenchError
from workbench.task.config import TaskConfig
from workbench.task.graphs import Graphs
from workbench.task.text import Problem, parse_problem, problems_to_graphs
from workbench.task.tokens import TokenBatch, tokenize
from workbench.task.vocab import F_SYNTAX, PAD, Vocab

#: one problem (text or parsed), a list of them, a ``Graphs`` batch or a ``TokenBatch``
Problems = Union[str, Problem, Sequence[Union[str, Problem]], Graphs, TokenBatch]


def to_token_batch(problems: Problems, task: TaskConfig, *, pad_to: int | None = None, seed: int = 0) -> TokenBatch:
    """A ``TokenBatch`` of ``problems`` (text or parsed, one or a list), right-padded to the longest or ``pad_to``.

    Text is parsed against ``task``; names map onto the model's pool by ``seed`` (see ``problems_to_graphs``).
    """
    vocab = Vocab.for_task(task)
    if isinstance(problems, TokenBatch):
        return problems if pad_to is None else pad_token_batch(problems, pad_to)
    if isinstance(problems, Graphs):
        return tokenize(problems, vocab, pad_to=pad_to)
    if isinstance(problems, (str, Problem)):
        problems = [problems]
    if not len(problems):
        raise WorkbenchError("no problems given; give a problem's text, a parsed problem or a list of them")
    parsed = [parse_problem(p, task) if isinstance(p, str) else p for p in problems]
    bad = next((p for p in parsed if not isinstance(p, Problem)), None)
    if bad is not None:
        raise WorkbenchError(f"cannot read a problem from a {type(bad).__name__}; give text, a Problem, Graphs or a TokenBatch")
    graphs, _ = problems_to_graphs(parsed, task, seed=seed)
    return tokenize(graphs, vocab, pad_to=pad_to)


def user_names(problems: Problems, task: TaskConfig, *, seed: int = 0) -> list[dict[str, int]]:
    """Per problem, the user's names and the pool index each maps to (``problems_to_graphs``); empty unless
    ``problems`` is text or parsed problems (graphs and token batches carry pool names only)."""
    items = [problems] if isinstance(problems, (str, Problem)) else problems
    if not isinstance(items, (list, tuple)) or not items or not all(isinstance(p, (str, Problem)) for p in items):
        return []
    parsed = [parse_problem(p, task) if isinstance(p, str) else p for p in items]
    return problems_to_graphs(parsed, task, seed=seed)[1]


def pad_token_batch(tb: TokenBatch, length: int) -> TokenBatch:
    """``tb`` right-padded (with PAD tokens) to ``length`` positions; unchanged if already that long."""
    extra = length - tb.max_len
    if extra < 0:
        raise WorkbenchError(f"cannot pad a batch of length {tb.max_len} down to {length}")
    if extra == 0:
        return tb
    pad_tok = np.broadcast_to(np.asarray(tb.vocab.pad_token(), dtype=tb.tokens.dtype), (tb.batch, extra, 4))
    tokens = np.concatenate([tb.tokens, pad_tok], axis=1)
    grow = lambda a, fill: np.concatenate([a, np.full((tb.batch, extra), fill, dtype=a.dtype)], axis=1)  # noqa: E731
    return TokenBatch(tokens, grow(tb.target_value, tb.vocab.value_na), grow(tb.depth, -1), grow(tb.node, -1),
                      tb.rhs_pos, tb.operand_pos, tb.length, tb.graphs, tb.vocab)


def as_tensor_input(x, task: TaskConfig, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
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
    tb = to_token_batch(x, task)
    return torch.from_numpy(tb.tokens).long(), torch.from_numpy(tb.length).long()


__all__ = ["Problems", "to_token_batch", "user_names", "pad_token_batch", "as_tensor_input"]
