"""The one encoder from problems to tokens, shared by ``solve``, the hookable wrappers and the app.

Text is parsed against the model's task, the user's names are mapped onto the model's pool by ``seed``
(``problems_to_graphs``) and the graphs are tokenized, right-padded to the longest or to ``pad_to``.
``Graphs`` and ``TokenBatch`` inputs pass through (they carry pool names only, so no name maps).

>>> from workbench.task.config import TaskConfig
>>> tb, (names,) = encode("a = 3\\nb = a + a", TaskConfig())
>>> tb.batch, sorted(names)
(1, ['a', 'b'])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np

from workbench.errors import WorkbenchError
from workbench.task.config import TaskConfig
from workbench.task.graphs import Graphs
from workbench.task.text import Problem, parse_problem, problems_to_graphs
from workbench.task.tokens import TokenBatch, tokenize
from workbench.task.vocab import Vocab

#: one problem (text or parsed), a list of them, a ``Graphs`` batch or a ``TokenBatch``
Problems = Union[str, Problem, Sequence[Union[str, Problem]], Graphs, TokenBatch]
#: per problem, each user name -> the pool index it maps to
NameMaps = list[dict[str, int]]


def read_problems(problems: str | Problem | Sequence[str | Problem], task: TaskConfig) -> list[Problem]:
    """``problems`` (text or parsed, one or a list) as parsed problems checked against ``task``."""
    items = [problems] if isinstance(problems, (str, Problem)) else problems
    if not isinstance(items, (list, tuple)):
        items = [items]  # reported below as the kind of thing it is
    if not items:
        raise WorkbenchError("no problems given; give a problem's text, a parsed problem or a list of them")
    parsed = [parse_problem(p, task) if isinstance(p, str) else p for p in items]
    bad = next((p for p in parsed if not isinstance(p, Problem)), None)
    if bad is not None:
        raise WorkbenchError(f"cannot read a problem from a {type(bad).__name__}; give text, a Problem, Graphs or a TokenBatch")
    return parsed


def encode(problems: Problems, task: TaskConfig, *, seed: int = 0,
           pad_to: int | None = None) -> tuple[TokenBatch, NameMaps]:
    """``(TokenBatch, name maps)`` of ``problems``: tokens right-padded to the longest or ``pad_to``.

    The name maps (one per problem, user name -> pool index) are empty for ``Graphs`` and ``TokenBatch``.
    """
    vocab = Vocab.for_task(task)
    if isinstance(problems, TokenBatch):
        return (problems if pad_to is None else pad_token_batch(problems, pad_to)), []
    if isinstance(problems, Graphs):
        return tokenize(problems, vocab, pad_to=pad_to), []
    graphs, names = problems_to_graphs(read_problems(problems, task), task, seed=seed)
    return tokenize(graphs, vocab, pad_to=pad_to), names


def pad_token_batch(tb: TokenBatch, length: int) -> TokenBatch:
    """``tb`` right-padded (with PAD tokens) to ``length`` positions; unchanged if already that long."""
    extra = length - tb.max_len
    if extra < 0:
        raise WorkbenchError(f"cannot pad a batch of length {tb.max_len} down to {length}")
    if extra == 0:
        return tb
    pad_tok = np.broadcast_to(np.asarray(tb.vocab.pad_token(), dtype=tb.tokens.dtype), (tb.batch, extra, 4))
    tokens = np.concatenate([tb.tokens, pad_tok], axis=1)  # [batch, pos + extra, factor]
    grow = lambda a, fill: np.concatenate([a, np.full((tb.batch, extra), fill, dtype=a.dtype)], axis=1)  # noqa: E731
    return TokenBatch(tokens, grow(tb.target_value, tb.vocab.value_na), grow(tb.depth, -1), grow(tb.node, -1),
                      tb.rhs_pos, tb.operand_pos, tb.length, tb.graphs, tb.vocab)


__all__ = ["Problems", "NameMaps", "encode", "read_problems", "pad_token_batch"]
