"""What the test suites share: one tiny seeded model builder and the one-thread rule.

Tiny models gain nothing from intra-op threads, and on a busy machine (a training run beside the
suite, or the other xdist worker) threads fight: every test runs with one torch and one BLAS thread
(the root ``conftest.py`` applies ``one_thread`` to the whole suite).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import torch
from threadpoolctl import threadpool_limits

from workbench.model.config import ModelConfig
from workbench.model.looped import LoopedModel
from workbench.task.config import TaskConfig

#: the smallest model that still has every part: two layers (a composition), two heads, an MLP
TINY = ModelConfig(n_layers=2, n_heads=2, d_model=16, d_mlp=32, rel_window=8)
TINY_TASK = TaskConfig(modulus=7, n_names=40)


def tiny_model(cfg: ModelConfig = TINY, task: TaskConfig = TINY_TASK, *, seed: int = 0, **changes) -> LoopedModel:
    """A seeded random ``LoopedModel`` in eval mode; ``changes`` amend ``cfg`` (``n_heads=4``, ``latent=...``).

    >>> tiny_model(n_layers=1).cfg.n_layers, tiny_model().training
    (1, False)
    """
    torch.manual_seed(seed)
    return LoopedModel(replace(cfg, **changes) if changes else cfg, task).eval()


def in_process_cli(main: Callable, monkeypatch, capsys) -> Callable[..., tuple[int, str, str]]:
    """``call(*args, stdin=None) -> (exit code, stdout, stderr)``: a click command's ``main`` (the ``workbench``
    command's, given by the test: the library never imports the command) in this process, from pytest's
    ``monkeypatch`` and ``capsys``; fast, and the same code path as the script."""
    import io
    import sys

    import pytest

    def call(*args, stdin: str | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in args])
        captured = capsys.readouterr()
        return int(exit_info.value.code or 0), captured.out, captured.err

    return call


@contextmanager
def one_thread() -> Iterator[None]:
    """One torch thread and one BLAS thread inside; the previous torch setting restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)
