"""Generalization measurements: free-running accuracy against graph size, with halting by fixed point."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from workbench.model.looped import LoopedModel
from workbench.solving import run_chunked
from workbench.task.families import FAMILIES, sample_family
from workbench.task.graphs import sample_graphs
from workbench.task.tokens import TokenBatch, tokenize
from workbench.task.vocab import F_VALUE


@dataclass(frozen=True)
class SizeResult:
    """Accuracy of one model on graphs of one size."""

    n_nodes: int
    count: int
    graph_acc: float  # fraction of graphs whose final state equals the solved state everywhere
    node_acc: float  # fraction of node values right
    mean_iterations: float
    converged: float  # fraction of graphs that reached a fixed point within the cap
    mean_depth: float
    max_depth: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def score_run(tb: TokenBatch, final: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-graph exact match (every factor, every non-pad position) and per-graph node accuracy."""
    valid = np.arange(tb.max_len)[None, :] < tb.length[:, None]
    solved = tb.solved()
    exact = ((final == solved).all(-1) | ~valid).all(-1)
    right = (final[..., F_VALUE] == tb.target_value) & tb.is_rhs
    node_acc = right.sum(1) / np.maximum(tb.is_rhs.sum(1), 1)
    return exact, node_acc


def evaluate_sizes(model: LoopedModel, sizes: list[int], count: int, *, seed: int = 0, batch_size: int = 64,
                   depth_cap: int | None = None, recent: int | None = None, family: str = "uniform",
                   progress: bool = True) -> list[SizeResult]:
    """Accuracy on ``count`` fresh uncapped graphs per size, looping until the state stops changing.

    ``family`` (see ``workbench.task.families``) picks the axis the graphs stress; ``uniform`` is the
    paper's law, where ``depth_cap`` and ``recent`` apply.
    """
    was_training = model.training
    model.eval()
    results = []
    bar = tqdm(total=len(sizes) * count, desc=f"eval {family}" if family != "uniform" else "eval", unit="graph", disable=not progress, dynamic_ncols=True)
    for n in sizes:
        bar.set_postfix(N=n)
        rng = np.random.default_rng([seed, n])
        if family == "uniform":
            graphs = sample_graphs(n, count, rng=rng, task=model.task, depth_cap=depth_cap, recent=recent)
        else:
            graphs = sample_family(family, n, count, rng=rng, task=model.task)
        if getattr(model, "kind", None) == "chain-of-thought":  # the same graphs, answered by greedy traces
            from workbench.cot.solve import evaluate_graphs

            results.append(evaluate_graphs(model, graphs, batch_size=batch_size))
            bar.update(count)
            continue
        tb = tokenize(graphs, model.vocab)
        final, iters, conv = run_chunked(model, tb, batch_size=batch_size, on_chunk=bar.update)
        exact, node_acc = score_run(tb, final)
        results.append(SizeResult(n, count, float(exact.mean()), float(node_acc.mean()), float(iters.mean()),
                                  float(conv.mean()), float(graphs.max_depth.mean()), int(graphs.max_depth.max())))
    bar.close()
    model.train(was_training)
    return results


def evaluate_families(model: LoopedModel, families: list[str], sizes: list[int], count: int, *, seed: int = 0,
                      batch_size: int = 64, progress: bool = True) -> dict[str, list[SizeResult]]:
    """Robustness: ``evaluate_sizes`` for each family in ``families`` (all of ``FAMILIES`` by name)."""
    return {f: evaluate_sizes(model, sizes, count, seed=seed, batch_size=batch_size, family=f, progress=progress)
            for f in families}


__all__ = ["FAMILIES", "SizeResult", "score_run", "evaluate_sizes", "evaluate_families"]
