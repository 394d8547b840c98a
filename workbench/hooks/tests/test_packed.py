"""Packed token ids and token labels: exact round trips, and the user's names back."""

from __future__ import annotations

import pytest
import torch

from workbench.errors import WorkbenchError
from workbench.hooks import hooked
from workbench.hooks.packed import NameMemo, n_packed, pack, sequence_text, unpack
from workbench.task.text import format_problem, parse_problem

from .conftest import TASK

BUDGET = "total = price + tax\nprice = 17\ntax = 9\nnet = total + fee\nfee = 3\n"


def test_pack_and_unpack_are_inverse_over_every_code(model):
    sizes = model.vocab.sizes
    every = torch.stack(torch.meshgrid(*[torch.arange(n) for n in sizes], indexing="ij"), -1).reshape(-1, 4)
    ids = pack(every, sizes)
    assert torch.equal(ids, torch.arange(n_packed(sizes)))  # mixed radix: ids sort like the tuples
    assert torch.equal(unpack(ids, sizes), every)


def test_unpack_refuses_ids_out_of_range(model):
    with pytest.raises(WorkbenchError, match="packed token ids lie in"):
        unpack(torch.tensor([n_packed(model.vocab.sizes)]), model.vocab.sizes)


def test_to_string_writes_the_problem_back_in_the_text_format(hm):
    tokens = hm.to_tokens(BUDGET)
    assert hm.to_string(tokens) + "\n" == format_problem(parse_problem(BUDGET, TASK))
    labels = hm.to_str_tokens(tokens)
    assert "price=?" in labels and "x_" not in " ".join(labels)


def test_names_are_remembered_per_row_and_other_rows_show_pool_names(model):
    hm = hooked(model, n_steps=1)
    tokens = hm.to_tokens([BUDGET, "a = 1\nb = a"])
    assert hm.to_str_tokens(tokens)[1][:3] == ["1", "=", "a=?"]
    fresh = hooked(model, n_steps=1)  # a wrapper that tokenized nothing knows only pool names
    assert fresh.to_str_tokens(tokens[1:])[2].startswith("x_")
    memo = NameMemo(size=1)
    memo.remember(tokens, [{"p": 0}, {"q": 0}], model.vocab.sizes)
    assert memo.names(tokens[0], model.vocab.sizes) is None and memo.names(tokens[1], model.vocab.sizes) == {0: "q"}
    assert sequence_text(tokens[1].tolist(), model.vocab).startswith("x_")
