"""One integer per position: the factored tokens as TransformerLens's ``[batch, pos]`` token ids, and their labels.

The model reads four codes per position (syntax, variable, operation, value). TransformerLens code
takes tokens as ``[batch, pos]`` integers and reads the number of positions off ``tokens.shape[-1]``
(``transformer_lens.patching`` does), so a ``[batch, pos, factor]`` tensor would be taken for 4
positions. A packed id is the four codes read as one mixed-radix number, syntax most significant:

    id = ((syntax * n_variable + variable) * n_operation + operation) * n_value + value

so packing and unpacking are exact, and ids sort like the tuples they pack.

>>> sizes = (7, 17, 4, 25)
>>> tokens = torch.tensor([[[0, 3, 3, 24], [5, 16, 3, 23]]])
>>> pack(tokens, sizes)
tensor([[  399, 10198]])
>>> torch.equal(unpack(pack(tokens, sizes), sizes), tokens)
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from jaxtyping import Int
from torch import Tensor

from workbench.errors import WorkbenchError
from workbench.task.vocab import N_SYNTAX, SYNTAX_NAMES, VARIABLE, Vocab


def n_packed(sizes: Sequence[int]) -> int:
    """How many packed ids there are: the product of the factor sizes.

    >>> n_packed((7, 17, 4, 25))
    11900
    """
    total = 1
    for n in sizes:
        total *= n
    return total


def pack(tokens: Int[Tensor, "... factor"], sizes: Sequence[int]) -> Int[Tensor, "..."]:
    """One id per position of factored ``tokens`` (see the module docstring)."""
    if tokens.shape[-1] != len(sizes):
        raise WorkbenchError(f"factored tokens end in {len(sizes)} factors, got shape {tuple(tokens.shape)}")
    ids = torch.zeros(tokens.shape[:-1], dtype=torch.long, device=tokens.device)
    for f, n in enumerate(sizes):
        ids = ids * n + tokens[..., f].long()
    return ids


def unpack(ids: Int[Tensor, "..."], sizes: Sequence[int]) -> Int[Tensor, "... factor"]:
    """The factored tokens of packed ``ids`` (the inverse of ``pack``)."""
    ids = ids.long()
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n_packed(sizes)):
        raise WorkbenchError(f"packed token ids lie in 0..{n_packed(sizes) - 1}; got {int(ids.min())}..{int(ids.max())}"
                             " (pass [batch, pos, factor] tokens as they are)")
    codes = []
    for n in reversed(sizes):
        codes.append(ids % n)
        ids = ids // n
    return torch.stack(codes[::-1], dim=-1)  # [..., factor]


class NameMemo:
    """The user's variable names of recently tokenized rows, keyed by the row's syntax and variable codes.

    Tokens hold pool indices, not names (``problems_to_graphs`` maps names onto the pool); the
    wrappers remember each row they tokenized from text so that labels of those tokens can show the
    names again. A bounded memo: the ``size`` rows made most recently.

    >>> memo = NameMemo()
    >>> row = torch.tensor([[0, 3, 3, 24]])
    >>> memo.remember(row[None], [{"price": 3}], (7, 17, 4, 25))  # a state with a value written keeps the names
    >>> sizes = (7, 17, 4, 25)
    >>> memo.names(row, sizes), memo.names(torch.tensor([[0, 3, 3, 5]]), sizes), memo.names(row + 1, sizes)
    ({3: 'price'}, {3: 'price'}, None)
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._rows: dict[bytes, dict[int, str]] = {}

    @staticmethod
    def _key(row: Tensor, sizes: Sequence[int]) -> bytes:
        """The row's syntax and variable codes: what every state of one run shares (steps write values only)."""
        return pack(row[..., :2].cpu(), sizes[:2]).numpy().tobytes()

    def remember(self, tokens: Int[Tensor, "batch pos factor"], mappings: Sequence[Mapping[str, int]],
                 sizes: Sequence[int]) -> None:
        """Remember row b's names (``mappings[b]``: name -> pool index)."""
        for row, mapping in zip(tokens, mappings):
            self._rows[self._key(row, sizes)] = {index: name for name, index in mapping.items()}
        while len(self._rows) > self.size:
            self._rows.pop(next(iter(self._rows)))

    def names(self, row: Int[Tensor, "pos factor"], sizes: Sequence[int]) -> dict[int, str] | None:
        """Pool index -> name for a remembered row, else None."""
        return self._rows.get(self._key(row, sizes))


def token_label(code: Sequence[int], vocab: Vocab, names: Mapping[int, str] | None = None) -> str:
    """A short label of one factored token (``Vocab.describe``), a pool name replaced by the user's name.

    names: pool index -> the user's name (the inverse of a ``problems_to_graphs`` mapping).

    >>> vocab = Vocab(n_names=8, n_values=23)
    >>> token_label((0, 3, 3, 24), vocab, {3: "price"}), token_label((0, 3, 3, 5), vocab), token_label((5, 8, 3, 23), vocab)
    ('price=?', 'x_3=5', '=')
    """
    label = vocab.describe(tuple(code))
    syntax, variable = int(code[0]), int(code[1])
    if names and syntax == VARIABLE and variable in names:
        label = names[variable] + label[label.index("="):] if "=" in label else names[variable]
    return label


def sequence_text(codes: Sequence[Sequence[int]], vocab: Vocab, names: Mapping[int, str] | None = None) -> str:
    """The problem text of one token sequence [pos, factor]: one ``name = expression`` line per equation.

    The model reads an equation as ``operands = name SEP``; this writes it back in the public text
    format (``workbench.task.text``). Values the state holds are left out (``token_label`` shows them).

    >>> vocab = Vocab(n_names=8, n_values=23)
    >>> na, empty = (8, 3, 23), (8, 3, 24)
    >>> seq = [(2, *na[:2], 3), (5, *na), (0, 1, 3, 3), (6, *na), (0, 1, 3, 24), (1, 8, 0, 23), (0, 1, 3, 24),
    ...        (5, *na), (0, 2, 3, 24), (6, *na)]
    >>> print(sequence_text(seq, vocab, {1: "a", 2: "b"}))
    a = 3
    b = a + a
    """
    lines, words = [], []
    for code in codes:
        syntax = int(code[0])
        if syntax >= N_SYNTAX or SYNTAX_NAMES[syntax] == "PAD":
            break
        if SYNTAX_NAMES[syntax] == "SEP":
            lines.append(words)
            words = []
            continue
        label = token_label(code, vocab, names)
        words.append(label.split("=")[0] if syntax == VARIABLE else label)
    if words:
        lines.append(words)
    out = []
    for line in lines:
        if "=" in line:
            at = line.index("=")
            out.append(f"{' '.join(line[at + 1:])} = {' '.join(line[:at])}")
        else:
            out.append(" ".join(line))
    return "\n".join(out)


__all__ = ["n_packed", "pack", "unpack", "NameMemo", "token_label", "sequence_text"]
