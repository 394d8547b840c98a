"""Solve problems in the text format with a model: the call behind ``workbench solve`` and the API."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from workbench.model.looped import LoopedModel
from workbench.task.encoding import encode, read_problems
from workbench.task.text import Problem
from workbench.task.tokens import TokenBatch
from workbench.task.vocab import F_VALUE


@dataclass(frozen=True)
class Solution:
    """The model's answer to one problem.

    values: the value of every variable (user names); None where the model left a slot EMPTY or
        wrote a code outside 0..p-1.
    iterations: steps until the state stopped changing; converged: whether it did within the cap.
    complete: whether every variable got a value. A converged run can still be incomplete: the state
        stopped changing with some slots EMPTY (a fixed point short of the solution), so ``converged``
        alone never means "solved".
    """

    values: dict[str, int | None]
    iterations: int
    converged: bool

    @property
    def complete(self) -> bool:
        return all(v is not None for v in self.values.values())

    @property
    def unsolved(self) -> list[str]:
        """The variables left without a value, in the problem's order."""
        return [name for name, v in self.values.items() if v is None]

    def to_dict(self) -> dict:
        return {"values": self.values, "iterations": self.iterations, "converged": self.converged, "complete": self.complete}

    def warning(self, limit: int = 8) -> str | None:
        """One line naming the unsolved variables (the first ``limit``), or None when complete."""
        missing = self.unsolved
        if not missing:
            return None
        shown = ", ".join(missing[:limit]) + (f" and {len(missing) - limit} more" if len(missing) > limit else "")
        how = "at a fixed point" if self.converged else "at the step cap"
        return f"warning: stopped {how} with {len(missing)} of {len(self.values)} variables unsolved: {shown}"


def decode_values(tb: TokenBatch, final: np.ndarray, problems: Sequence[Problem], modulus: int) -> list[dict[str, int | None]]:
    """Per problem, each variable's value read at its defining position of the final state."""
    out = []
    for b, problem in enumerate(problems):
        codes = final[b, tb.rhs_pos[b, : len(problem)], F_VALUE]
        out.append({eq.name: (int(c) if 0 <= c < modulus else None) for eq, c in zip(problem.equations, codes)})
    return out


def run_chunked(model: LoopedModel, tb: TokenBatch, *, batch_size: int = 64, max_steps: int | None = None,
                progress: bool = False, on_chunk: Callable[[int], object] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the model on a token batch in chunks of similar length (less padding per forward pass).

    Returns the final states [batch, pos, factor], iterations [batch] and converged [batch] (numpy).
    ``on_chunk(n)`` is called after each chunk of n graphs (an outer progress bar).
    """
    order = np.argsort(tb.length, kind="stable")
    finals = tb.tokens.astype(np.int64)
    iterations = np.zeros(tb.batch, dtype=np.int64)
    converged = np.zeros(tb.batch, dtype=bool)
    was_training = model.training
    model.eval()
    chunks = range(0, tb.batch, batch_size)
    for start in tqdm(chunks, desc="solve", disable=not progress or len(chunks) < 2, dynamic_ncols=True):
        rows = order[start:start + batch_size]
        sub = tb.select(rows)
        out = model.run(torch.from_numpy(sub.tokens), lengths=torch.from_numpy(sub.length), max_steps=max_steps)
        finals[rows, : sub.max_len] = out.final.numpy()
        iterations[rows] = out.iterations.numpy()
        converged[rows] = out.converged.numpy()
        if on_chunk is not None:
            on_chunk(len(rows))
    model.train(was_training)
    return finals, iterations, converged


def solve(model: LoopedModel, problems: Sequence[str | Problem] | str | Problem, *, batch_size: int = 64,
          max_steps: int | None = None, seed: int = 0, progress: bool = False) -> list[Solution] | Solution:
    """Solve one problem or a batch; batches run together on the model's device, chunked by length.

    >>> from workbench.model.looped import LoopedModel
    >>> from workbench.model.config import ModelConfig
    >>> from workbench.task.config import TaskConfig
    >>> sol = solve(LoopedModel(ModelConfig(d_model=16, n_heads=2), TaskConfig()), "a = 3\\nb = a", max_steps=2)
    >>> sorted(sol.values), sol.iterations <= 2
    (['a', 'b'], True)
    """
    single = isinstance(problems, (str, Problem))
    batch = [problems] if single else list(problems)
    if not batch:
        return []
    parsed = read_problems(batch, model.task)
    if getattr(model, "kind", None) == "chain-of-thought":  # greedy trace decoding (workbench.cot.solve)
        from workbench.cot.solve import solve_parsed

        solutions = solve_parsed(model, parsed, batch_size=batch_size, max_steps=max_steps, seed=seed, progress=progress)
    else:
        tb, _ = encode(parsed, model.task, seed=seed)
        finals, iterations, converged = run_chunked(model, tb, batch_size=batch_size, max_steps=max_steps, progress=progress)
        values = decode_values(tb, finals, parsed, model.task.modulus)
        solutions = [Solution(v, int(i), bool(c)) for v, i, c in zip(values, iterations, converged)]
    return solutions[0] if single else solutions
