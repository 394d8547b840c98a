"""Shared fixtures: a tiny seeded random model (CPU) and a batch of problems of different sizes."""

from __future__ import annotations

import pytest
import torch

from workbench import testing
from workbench.model.config import ModelConfig
from workbench.model.looped import LoopedModel
from workbench.task.config import TaskConfig

TASK = TaskConfig(modulus=23, n_names=16)
CONFIG = ModelConfig(n_layers=2, n_heads=4, d_model=32, d_mlp=64)

PROBLEMS = [
    "a = 3\nb = a + a\nc = b + a",
    "x = 5\ny = x\nz = y + x\nw = z + y",
    "p = 7\nq = 11\nr = p + q\ns = r + p + q\nt = s",
    "k = 1\nm = k + k",
]


def tiny_model(seed: int = 0) -> LoopedModel:
    return testing.tiny_model(CONFIG, TASK, seed=seed)


@pytest.fixture(scope="session")
def model() -> LoopedModel:
    return tiny_model()


@pytest.fixture()
def hm(model):
    from workbench.hooks import hooked

    return hooked(model, n_steps=4)


@pytest.fixture(scope="session")
def problems() -> list[str]:
    return list(PROBLEMS)
