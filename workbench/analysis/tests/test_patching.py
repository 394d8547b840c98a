"""Cross-step patching: the corrupted problem, the whole-state sanity row, map shapes."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.analysis import patching
from workbench.errors import WorkbenchError


def test_corrupt_leaf_changes_one_leaf_and_its_descendants(tb):
    bad = patching.corrupt_leaf(tb, np.random.default_rng(0))
    changed = bad.graphs.leaf_value != tb.graphs.leaf_value
    assert (changed.sum(1) == 1).all()
    assert bad.tokens.shape == tb.tokens.shape
    assert ((bad.tokens != tb.tokens).any(-1).sum(1) == 1).all()  # the constant token only (values start EMPTY)
    assert (bad.graphs.value != tb.graphs.value).any()


def test_run_sanity_and_shapes(model):
    results, summary = patching.run(model, n_nodes=10, count=6, n_steps=3)
    assert results["step_effect"].shape == (3, 2, 6) and results["final_effect"].shape == (3, 2, 6)
    if results["final_differ"]:
        np.testing.assert_allclose(results["state"]["final"], 1.0)  # the discrete state is the whole recurrent state
    assert results["components"] == ["0", "1", "2", "3", "attn", "mlp"]
    assert set(summary.mlp_effect) == set(summary.attn_effect) == {0, 1}
    assert summary.nodes_differing == results["final_differ"]


def test_continuous_models_are_refused():
    from workbench.model.config import ModelConfig
    from workbench.model.looped import LoopedModel
    from workbench.task.config import TaskConfig

    m = LoopedModel(ModelConfig(n_layers=1, n_heads=2, d_model=16, latent="continuous", supervision="algorithmic"),
                    TaskConfig(modulus=7, n_names=16))
    with pytest.raises(WorkbenchError):
        patching.run(m, n_nodes=8, count=2)
