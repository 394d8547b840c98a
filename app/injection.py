"""Injections: overwrite one node's value in one state of a run and watch what the model makes of it.

"Repaired" is claimed only for a value that had been written and was then corrected (``InjectionView``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.cache import LRU
from app import state as app_state  # "state" is a step's state here
from app.state import RunKey
from workbench.errors import WorkbenchError
from workbench.run_view import RunView, status_of

#: injections are small ([state, node] values); 8 concurrent sessions stay within this (tests/app/test_soak.py)
INJECTIONS_KEPT = 256
_INJECTIONS = LRU(INJECTIONS_KEPT)


@dataclass
class InjectionView:
    """One injection into one model's run: the clean and corrupted values, and what became of the error.

    "Repaired" is claimed only for a value that had been written (the clean run held a value for the node
    in the overwritten state) and was then corrected: an injection into a node the run has not written
    yet is overwritten by the model's first write, which is computing, not repairing.
    """

    model: str
    state: int  # the overwritten state (step ``state`` read the error)
    node: int
    name: str
    names: list[str]  # [node] every node's name, model order
    value: int  # the value written
    truth: np.ndarray  # [node]
    clean: np.ndarray  # [state, node] values of the clean run
    corrupted: np.ndarray  # [state, node] values of the corrupted run
    vocab: Any
    clean_steps: int | None = None  # steps until each run's state stopped changing (RunView.n_steps)
    corrupted_steps: int | None = None

    @property
    def true_value(self) -> int:
        return int(self.truth[self.node])

    @property
    def final_value(self) -> int:
        return int(self.corrupted[-1, self.node])

    @property
    def clean_value(self) -> int:
        """The node's value in the clean run's overwritten state (EMPTY: not written yet)."""
        return int(self.clean[min(self.state, len(self.clean) - 1), self.node])

    @property
    def was_written(self) -> bool:
        """The clean run had written the node by the overwritten state: there was a value to corrupt."""
        return self.clean_value != self.vocab.empty

    @property
    def was_error(self) -> bool:
        """The injection put a wrong value where a value had been written."""
        return self.was_written and self.value != self.true_value

    @property
    def ends_right(self) -> bool:
        return self.final_value == self.true_value

    @property
    def repaired(self) -> bool:
        """A written value was corrupted and the node holds its true value at the end."""
        return self.was_error and self.ends_right

    @property
    def repair_state(self) -> int:
        """The first state after the injection from which the node holds its true value for good; -1 if not repaired."""
        if not self.repaired:
            return -1
        right = self.corrupted[:, self.node] == self.true_value
        wrong_after = np.nonzero(~right[self.state:])[0]
        return self.state + (int(wrong_after[-1]) + 1 if len(wrong_after) else 0)

    @property
    def recovered(self) -> bool:
        """Every node holds its true value at the end."""
        return bool((self.corrupted[-1] == self.truth).all())

    @property
    def same_as_clean(self) -> bool:
        return bool((self.corrupted[-1] == self.clean[-1]).all())

    def status(self) -> np.ndarray:
        """[state, node] NOT_YET / RIGHT / WRONG in the corrupted run."""
        return status_of(self.corrupted, self.truth, self.vocab)

    def outcome(self) -> str:
        """The one "Repaired: ..." sentence: yes or no for a corrupted written value; otherwise why it does not apply."""
        ends = f"{self.name} ends at {_label(self.final_value, self.vocab)} (true value {self.true_value})"
        if not self.was_written:
            first = np.nonzero(self.clean[:, self.node] != self.vocab.empty)[0]
            when = f"it first holds a value in state {int(first[0])}" if len(first) else "it never holds a value"
            return (f"Repaired: does not apply: the clean run had not written {self.name} yet in state {self.state} "
                    f"({when}), so there was no value to corrupt; {ends}.")
        if self.value == self.true_value:
            return f"Repaired: does not apply: the written value is the true value, nothing to repair; {ends}."
        if self.repaired:
            u = self.repair_state
            return (f"Repaired: yes, {self.name} holds {self.true_value} again from state {u} "
                    f"({u - self.state} step{'s' if u - self.state != 1 else ''} after the injection).")
        return f"Repaired: no, {ends}."

    def report(self) -> list[str]:
        """The outcome in a few sentences, for the page."""
        lines = [f"{self.model}: wrote {self.name} := {self.value} into state {self.state} (read by step {self.state}); "
                 f"true value {self.true_value}, the clean run held {_label(self.clean_value, self.vocab)}.",
                 self.outcome()]
        right, total = int((self.corrupted[-1] == self.truth).sum()), len(self.truth)
        steps = self.corrupted_steps if self.corrupted_steps is not None else len(self.corrupted) - 1
        clean = self.clean_steps if self.clean_steps is not None else len(self.clean) - 1
        lines.append(f"At the end: {right}/{total} nodes right ({'solved' if self.recovered else 'not solved'}); "
                     f"final state {'equals' if self.same_as_clean else 'differs from'} the clean run's; "
                     f"{steps} steps to a fixed point (clean run: {clean}).")
        return lines


def _label(code, vocab) -> str:
    from workbench.run_view import value_label

    return value_label(int(code), vocab)


def injection(key: RunKey, state: int, node: int, value: int | None = None, seed: int = 0) -> InjectionView:
    """Overwrite ``node``'s value in ``state`` of ``key``'s run (``value`` None: a random wrong one) and rerun."""
    run = app_state.get_run(key)
    if not isinstance(node, int) or not 0 <= node < run.n_nodes:
        raise WorkbenchError(f"pick a node of the problem (0..{run.n_nodes - 1}), got {node!r}")
    if not isinstance(state, int) or not 0 <= state <= run.n_steps:
        raise WorkbenchError(f"the state must be 0..{run.n_steps} (state 0 is the input, state {run.n_steps} the "
                             f"fixed point), got {state!r}")
    if value is not None and (not isinstance(value, int) or not 0 <= value < run.modulus):
        raise WorkbenchError(f"the value must be 0..{run.modulus - 1} (or blank for a random wrong value), got {value!r}")
    version, hm = app_state.get_model(key.model)
    return _INJECTIONS.get_or_compute((key, version, state, node, value, seed),
                                      lambda: _compute_injection(key, hm, run, state, node, value, seed))


def _compute_injection(key: RunKey, hm, run: RunView, state: int, node: int, value: int | None, seed: int) -> InjectionView:
    from workbench.hooks.interventions import inject_corruption

    _, _, tb = app_state.token_batch(key, hm.task)
    inj = inject_corruption(hm, tb, state, nodes=[[node]], values=value, seed=seed, clean=cached_clean(run, tb))
    n = run.n_nodes
    return InjectionView(key.model, state, node, run.names[node], list(run.names), int(inj.injected[0, node]), run.truth.copy(),
                         inj.clean.values[:, 0, :n].numpy(), inj.corrupted.values[:, 0, :n].numpy(), run.vocab,
                         clean_steps=run.n_steps, corrupted_steps=int(inj.corrupted.iterations[0]))


def cached_clean(run: RunView, tb):
    """The clean run ``inject_corruption`` would compute, rebuilt from the app's cached ``run`` (the slowest
    part of an injection is running the model; the clean run is already here); None if ``run`` stopped at
    its step cap, where the injection's larger cap might take the clean run further.

    A fresh clean run also holds the output of the step that confirmed the fixed point, which ``RunView``
    drops (one definition of steps), so that state is put back: the repeated fixed point.
    """
    import torch

    from workbench.hooks.decoded import decode_states

    if not run.converged:
        return None
    states = np.concatenate([run.states, run.states[-1:]]).astype(np.int64)  # [state, pos, factor]
    return decode_states(torch.from_numpy(states)[:, None], tb, torch.tensor([run.iterations]),
                         torch.tensor([run.converged]))


__all__ = ["InjectionView", "injection", "cached_clean", "INJECTIONS_KEPT"]
