"""Generalization measurements: free-running accuracy against graph size, with halting by fixed point."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from workbench.model.looped import LoopedModel
from workbench.solve import run_chunked
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
                   depth_cap: int | None = None, recent: int | None = None, progress: bool = True) -> list[SizeResult]:
    """Accuracy on ``count`` fresh uncapped graphs per size, looping until the state stops changing."""
    was_training = model.training
    model.eval()
    results = []
    bar = tqdm(total=len(sizes) * count, desc="eval", unit="graph", disable=not progress, dynamic_ncols=True)
    for n in sizes:
        bar.set_postfix(N=n)
        rng = np.random.default_rng([seed, n])
        graphs = sample_graphs(n, count, rng=rng, task=model.task, depth_cap=depth_cap, recent=recent)
        tb = tokenize(graphs, model.vocab)
        final, iters, conv = run_chunked(model, tb, batch_size=batch_size, on_chunk=bar.update)
        exact, node_acc = score_run(tb, final)
        results.append(SizeResult(n, count, float(exact.mean()), float(node_acc.mean()), float(iters.mean()),
                                  float(conv.mean()), float(graphs.max_depth.mean()), int(graphs.max_depth.max())))
    bar.close()
    model.train(was_training)
    return results
