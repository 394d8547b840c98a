"""Shared fixtures: a tiny seeded model (2 layers, d_model 32, p = 7) and small sampled batches, CPU, one thread."""

from __future__ import annotations

import pytest
import torch
from threadpoolctl import threadpool_limits

from workbench import testing
from workbench.model.config import ModelConfig
from workbench.model.looped import LoopedModel
from workbench.task.config import TaskConfig

TASK = TaskConfig(modulus=7, n_names=16)
CONFIG = ModelConfig(n_layers=2, n_heads=4, d_model=32, d_mlp=64, rel_window=8)


def tiny_model(seed: int = 0) -> LoopedModel:
    model = testing.tiny_model(CONFIG, TASK, seed=seed)
    model.meta = {"name": f"tiny{seed}"}
    return model


@pytest.fixture(scope="session")
def model() -> LoopedModel:
    return tiny_model()


@pytest.fixture(scope="session")
def tb(model):
    from workbench.analysis.activations import sample_batch

    return sample_batch(model, 10, 24, seed=0, depth_cap=4)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A folder holding the tiny model (``tiny``), for the scripts."""
    from workbench.model.checkpoint import save_model

    root = tmp_path_factory.mktemp("models")
    save_model(tiny_model(), root / "tiny")
    return root
