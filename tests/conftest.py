"""Shared fixtures of the end-to-end tests: a folder of tiny random models and ways to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from workbench.model.checkpoint import save_model
from workbench.model.config import ModelConfig
from workbench.model.looped import LoopedModel
from workbench.task.config import TaskConfig

TINY = ModelConfig(n_layers=1, n_heads=2, d_model=16, d_mlp=32, rel_window=8)
#: name -> task of the models in the ``model_dir`` fixture (all share the TINY architecture)
TASKS = {
    "tiny": TaskConfig(modulus=23, operations=("+",), n_names=32),
    "small_pool": TaskConfig(modulus=23, operations=("+",), n_names=8),
    "fan2": TaskConfig(modulus=23, operations=("+",), n_names=32, max_fan_in=2),
}


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A models directory holding ``tiny``, ``small_pool`` (8 names) and ``fan2`` (fan-in <= 2), untrained."""
    root = tmp_path_factory.mktemp("models")
    for name, task in TASKS.items():
        torch.manual_seed(0)
        save_model(LoopedModel(TINY, task), root / name)
    return root


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli_env(model_dir) -> dict[str, str]:
    """Environment of a CLI subprocess: named models from ``model_dir``, on the CPU, one thread."""
    env = dict(os.environ)
    env.update(WORKBENCH_MODELS=str(model_dir), WORKBENCH_DEVICE="cpu", OMP_NUM_THREADS="1")
    return env


@pytest.fixture
def run_cli(cli_env, tmp_path):
    """``run_cli(*args, input=None, cwd=tmp_path)``: the CLI in a fresh interpreter (``python -m workbench.cli``)."""

    def run(*args: str, input: str | None = None, cwd: Path | None = None) -> Result:
        done = subprocess.run([sys.executable, "-m", "workbench.cli", *map(str, args)], cwd=cwd or tmp_path,
                              env=cli_env, input=input, capture_output=True, text=True, timeout=300)
        return Result(done.returncode, done.stdout, done.stderr)

    return run


@pytest.fixture
def call_cli(model_dir, tmp_path, monkeypatch, capsys):
    """``call_cli(*args, stdin=None)``: the CLI's ``main`` in this process (fast; same code path as the script)."""
    from workbench.cli import main
    from workbench.testing import in_process_cli

    monkeypatch.setenv("WORKBENCH_MODELS", str(model_dir))
    monkeypatch.setenv("WORKBENCH_DEVICE", "cpu")
    monkeypatch.chdir(tmp_path)
    call = in_process_cli(main, monkeypatch, capsys)
    return lambda *args, stdin=None: Result(*call(*args, stdin=stdin))
