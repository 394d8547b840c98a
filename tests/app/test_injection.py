"""Injections in the app take the clean run from the cached run of the problem: one model run instead of two,
and the same comparison as with a clean run computed afresh."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from app import injection as I
from app import state as S
from workbench.hooks import interventions

pytestmark = pytest.mark.xdist_group("app")

SMALL = "a = 3\nb = 4\nc = a + b\nd = c + a\ne = d"
VIEW_ARRAYS = ("truth", "clean", "corrupted")
VIEW_SCALARS = ("model", "state", "node", "name", "names", "value", "clean_steps", "corrupted_steps")


@pytest.fixture(autouse=True)
def fresh_caches():
    S.clear_caches()
    yield
    S.clear_caches()


@pytest.fixture()
def model_runs(monkeypatch) -> list[int]:
    """The number of model runs each injection computes (clean and corrupted runs go through ``_run``)."""
    calls: list[int] = []
    run = interventions._run

    def counted(*args, **kwargs):
        calls.append(1)
        return run(*args, **kwargs)

    monkeypatch.setattr(interventions, "_run", counted)
    return calls


def _fresh(key: S.RunKey, state: int, node: int, value: int | None, seed: int, monkeypatch) -> I.InjectionView:
    """The injection as computed before the cache was used: the clean run rerun beside the corrupted one."""
    with monkeypatch.context() as m:
        m.setattr(I, "cached_clean", lambda run, tb: None)
        I._INJECTIONS.clear()
        view = I.injection(key, state, node, value, seed)
    I._INJECTIONS.clear()
    return view


def _assert_same_view(a: I.InjectionView, b: I.InjectionView) -> None:
    for name in VIEW_SCALARS:
        assert getattr(a, name) == getattr(b, name), name
    for name in VIEW_ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape and np.array_equal(x, y), name
    assert a.report() == b.report()


@pytest.mark.parametrize("text", [SMALL, S.generate_problem("default", 24, 3)])
def test_an_injection_on_the_cached_clean_run_equals_one_that_reruns_it(text, monkeypatch):
    key = S.make_key("default", text)
    run = S.get_run(key)
    rng = np.random.default_rng(0)
    for state in sorted({0, 1, run.n_steps // 2, run.n_steps}):
        node = int(rng.integers(run.n_nodes))
        for value in (None, int(rng.integers(run.modulus))):
            fresh = _fresh(key, state, node, value, 0, monkeypatch)
            cached = I.injection(key, state, node, value, 0)
            _assert_same_view(cached, fresh)


def test_an_injection_runs_the_model_once_when_the_run_is_cached(model_runs, monkeypatch):
    key = S.make_key("default", SMALL)
    run = S.get_run(key)
    model_runs.clear()
    I.injection(key, run.n_steps - 1, 0, 9)
    assert len(model_runs) == 1  # the corrupted run only
    model_runs.clear()
    _fresh(key, run.n_steps - 1, 0, 9, 0, monkeypatch)
    assert len(model_runs) == 2  # clean and corrupted


def test_a_run_cut_off_by_its_step_cap_is_not_taken_for_the_clean_run():
    """A fresh clean run gets the injection's larger cap and might go on where the cached run stopped."""
    key = S.make_key("default", SMALL)
    run = S.get_run(key)
    _, hm = S.get_model("default")
    _, _, tb = S.token_batch(key, hm.task)
    assert I.cached_clean(run, tb) is not None
    assert I.cached_clean(dataclasses.replace(run, converged=False), tb) is None
