"""The one loop computes what the three loops it replaced computed, on every shipped checkpoint.

``tests/golden/loop_golden.safetensors`` was written by ``tests/golden/make_loop_golden.py`` with the
code before the loop was unified (``LoopedModel.run``, ``HookedLooped._run`` and training's ``Unroll``
each had their own loop); every driver now goes through ``LoopedModel.iterate``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

HERE = Path(__file__).parent / "golden"
spec = importlib.util.spec_from_file_location("make_loop_golden", HERE / "make_loop_golden.py")
golden = importlib.util.module_from_spec(spec)
spec.loader.exec_module(golden)

EXPECTED = load_file(golden.GOLDEN)
LOGIT_ATOL = 1e-4  # float32 sums in another order (a batch row computed with others or alone)


@pytest.fixture(scope="module", params=golden.MODELS)
def pinned(request):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield request.param, golden.outputs(request.param)
    torch.set_num_threads(before)


def test_every_output_is_pinned(pinned):
    name, got = pinned
    assert set(got) == {k for k in EXPECTED if k.startswith(name + "/")}


def test_integer_outputs_are_identical(pinned):
    """States, iterations and convergence of ``run`` and of the hooked wrapper, exactly."""
    name, got = pinned
    for key, value in got.items():
        if value.dtype.is_floating_point:
            continue
        assert torch.equal(value, EXPECTED[key]), key


def test_logits_are_equal(pinned):
    """The hooked run's last logits and the training path's per-step logits, to float tolerance."""
    name, got = pinned
    for key, value in got.items():
        if value.dtype.is_floating_point:
            torch.testing.assert_close(value, EXPECTED[key], atol=LOGIT_ATOL, rtol=1e-4, msg=key)
