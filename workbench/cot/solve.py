"""Greedy decoding for the chain-of-thought model, and answers through the ``workbench solve`` contract.

No KV cache: each new word reruns the causal model over the sequence so far, for the unfinished rows only.
Rows are right-padded and each writes at its own length, so no attention mask is needed (a causal model's
logits at a row's last word never see the padding after it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from workbench.cot.model import CotModel
from workbench.cot.trace import EOS, PAD, build_traces, parse_trace, trace_lengths
from workbench.errors import WorkbenchError
from workbench.evaluation import SizeResult
from workbench.solving import Solution
from workbench.task.graphs import Graphs
from workbench.task.text import Problem

#: words a generated trace may run past the length of the correct one before it is cut
SLACK = 16


@torch.no_grad()
def generate(model: CotModel, prompts: np.ndarray, prompt_length: np.ndarray, max_new: np.ndarray | int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy continuations of right-padded ``prompts`` [batch, pos], each row for at most ``max_new`` words.

    Returns the generated words [batch, new] (PAD after a row stops), their count [batch] (EOS included)
    and whether each row ended with EOS [batch].
    """
    B = prompts.shape[0]
    limit = np.broadcast_to(np.asarray(max_new, dtype=np.int64), (B,)).copy()
    length = np.asarray(prompt_length, dtype=np.int64).copy()
    limit = np.minimum(limit, model.cfg.n_ctx - length)
    if (limit < 0).any():
        raise WorkbenchError(f"a problem of {int(length.max())} words leaves no room in this model's n_ctx {model.cfg.n_ctx}")
    width = int((length + limit).max(initial=0))
    buf = torch.full((B, max(width, 1)), PAD, dtype=torch.long)
    w = min(prompts.shape[1], buf.shape[1])
    buf[:, :w] = torch.from_numpy(prompts[:, :w])
    generated = np.zeros(B, dtype=np.int64)
    ended = np.zeros(B, dtype=bool)
    was_training = model.training
    model.eval()
    device = model.device
    while True:
        active = np.flatnonzero(~ended & (generated < limit))
        if active.size == 0:
            break
        end = int(length[active].max())
        logits = model(buf[active, :end].to(device))  # [active, pos, vocab]
        last = torch.from_numpy(length[active] - 1).to(device)
        word = logits[torch.arange(active.size, device=device), last].argmax(-1).cpu()  # [active]
        buf[active, length[active]] = word
        length[active] += 1
        generated[active] += 1
        ended[active] = (word == EOS).numpy()
    model.train(was_training)
    out = np.full((B, max(int(generated.max(initial=0)), 1)), PAD, dtype=np.int64)
    start = np.asarray(prompt_length, dtype=np.int64)
    for b in range(B):  # one slice per row
        out[b, : generated[b]] = buf[b, start[b]: start[b] + generated[b]].numpy()
    return out, generated, ended


def run_graphs(model: CotModel, graphs: Graphs, *, batch_size: int = 64, max_new: int | None = None,
               progress: bool = False) -> tuple[list[dict[int, int]], np.ndarray, np.ndarray]:
    """Generate a trace for every graph, chunked by prompt length; per graph the values it assigns
    {pool name index: value}, the words generated and whether the trace ended."""
    prompts = build_traces(graphs, model.vocab, with_trace=False)
    budget = trace_lengths(graphs) + SLACK if max_new is None else np.full(graphs.batch, max_new)
    order = np.argsort(prompts.length, kind="stable")
    values: list[dict[int, int]] = [{} for _ in range(graphs.batch)]
    generated = np.zeros(graphs.batch, dtype=np.int64)
    ended = np.zeros(graphs.batch, dtype=bool)
    chunks = range(0, graphs.batch, batch_size)
    for start in tqdm(chunks, desc="solve", disable=not progress or len(chunks) < 2, dynamic_ncols=True):
        rows = order[start:start + batch_size]
        width = int(prompts.length[rows].max())
        words, count, done = generate(model, prompts.tokens[rows, :width], prompts.length[rows], budget[rows])
        generated[rows], ended[rows] = count, done
        for i, b in enumerate(rows):
            values[b] = parse_trace(words[i, : count[i]], model.vocab).values
    return values, generated, ended


def evaluate_graphs(model: CotModel, graphs: Graphs, *, batch_size: int = 64) -> SizeResult:
    """Accuracy on ``graphs`` (all of one size) as ``workbench eval`` reports it: graph_acc is the share whose
    trace gives every variable its true value (the paper's "fully solved"), node_acc the share of values right,
    mean_iterations the words generated and converged the share of traces that ended."""
    values, generated, ended = run_graphs(model, graphs, batch_size=batch_size)
    right = total = solved = 0
    for b in range(graphs.batch):
        n = int(graphs.n_nodes[b])
        hits = sum(values[b].get(k) == v for k, v in zip(graphs.names[b, :n].tolist(), graphs.value[b, :n].tolist()))
        right, total, solved = right + hits, total + n, solved + (hits == n)
    depth = graphs.max_depth
    return SizeResult(n_nodes=int(graphs.n_nodes.max()), count=graphs.batch, graph_acc=solved / max(graphs.batch, 1),
                      node_acc=right / max(total, 1), mean_iterations=float(generated.mean()), converged=float(ended.mean()),
                      mean_depth=float(depth.mean()), max_depth=int(depth.max()))


def evaluate_sizes(model: CotModel, sizes: Sequence[int], count: int, *, seed: int = 0, batch_size: int = 64,
                   depth_cap: int | None = None) -> list[SizeResult]:
    """``evaluate_graphs`` on ``count`` fresh graphs (the paper's law, depth uncapped by default) per size."""
    from workbench.task.graphs import sample_graphs

    out = []
    for n in sizes:
        graphs = sample_graphs(n, count, rng=np.random.default_rng([seed, n]), task=model.task, depth_cap=depth_cap)
        out.append(evaluate_graphs(model, graphs, batch_size=batch_size))
    return out


def solve_cot(model: CotModel, problems: Sequence[str | Problem] | str | Problem, *, batch_size: int = 64,
              max_steps: int | None = None, seed: int = 0, progress: bool = False) -> list[Solution] | Solution:
    """Solve one problem or a batch by greedy chain-of-thought decoding: ``workbench.solving.solve`` on this model.

    ``iterations`` is the number of words generated, ``converged`` whether the trace ended with EOS;
    ``max_steps`` caps the words generated (default: the correct trace's length plus a little slack).
    A variable the trace never assigned gets None.
    """
    from workbench.solving import solve

    return solve(model, problems, batch_size=batch_size, max_steps=max_steps, seed=seed, progress=progress)


def solve_parsed(model: CotModel, parsed: Sequence[Problem], *, batch_size: int = 64, max_steps: int | None = None,
                 seed: int = 0, progress: bool = False) -> list[Solution]:
    """One ``Solution`` per parsed problem (what ``workbench.solving.solve`` calls for this kind of model)."""
    from workbench.task.text import problems_to_graphs

    graphs, maps = problems_to_graphs(parsed, model.task, seed=seed)
    values, generated, ended = run_graphs(model, graphs, batch_size=batch_size, max_new=max_steps, progress=progress)
    return [Solution({eq.name: values[b].get(maps[b][eq.name]) for eq in problem.equations}, int(generated[b]), bool(ended[b]))
            for b, problem in enumerate(parsed)]


__all__ = ["generate", "run_graphs", "evaluate_graphs", "evaluate_sizes", "solve_cot", "solve_parsed", "SLACK"]
