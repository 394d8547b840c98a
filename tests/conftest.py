"""Shared fixtures of the end-to-end tests: a folder of tiny random models and ways to run the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from workbench.model.checkpoint import save_model
from workbench.model.config import ModelConfig
from workbench.model.looped import LoopedModel
from workbench.task.config import TaskConfig

#: a JSON-lines file the browser tests append their cold-path timings to (``record_timing``); made by the
#: controlling process before xdist starts its workers, which inherit the variable, and printed at the end
TIMINGS_ENV = "WORKBENCH_TEST_TIMINGS"


def pytest_configure(config) -> None:
    if not hasattr(config, "workerinput") and not os.environ.get(TIMINGS_ENV):
        fd, path = tempfile.mkstemp(prefix="workbench-timings-", suffix=".jsonl")
        os.close(fd)
        os.environ[TIMINGS_ENV] = path


def record_timing(what: str, seconds: float, target: float | None = None) -> None:
    """Report a timing in the run's summary (the app's cold paths: measured in a real browser, not asserted)."""
    path = os.environ.get(TIMINGS_ENV)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"what": what, "seconds": seconds, "target": target}) + "\n")


@pytest.fixture(scope="session")
def timings():
    """``record_timing``, for tests that report how long something took."""
    return record_timing


def pytest_terminal_summary(terminalreporter, config) -> None:
    if hasattr(config, "workerinput"):
        return
    path = Path(os.environ.get(TIMINGS_ENV, ""))
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    if rows:
        terminalreporter.section("timings (reported, not asserted)")
        for row in rows:
            target = f" (target {row['target']:g} s)" if row["target"] is not None else ""
            terminalreporter.write_line(f"{row['what']}: {row['seconds']:.2f} s{target}")
    if path.is_file():
        path.unlink()


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
