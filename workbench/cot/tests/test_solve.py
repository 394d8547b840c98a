"""Greedy decoding and answers through the ``workbench solve`` contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.cot.model import CotConfig, CotModel
from workbench.cot.solve import SLACK, evaluate_graphs, generate, run_graphs, solve_cot
from workbench.cot.trace import COT, EOS, CotVocab, build_traces, trace_lengths
from workbench.errors import WorkbenchError
from workbench.solving import Solution
from workbench.task.config import TaskConfig
from workbench.task.graphs import sample_graphs
from workbench.task.text import parse_problem, problems_to_graphs, solve_exact

TINY = CotConfig(n_layers=1, n_heads=2, d_model=16, n_ctx=256)
PROBLEMS = ["a = 3\nb = a + a\nc = b", "k = 22\nm = 1\nn = k + m + k\nq = n + m"]


class Oracle(CotModel):
    """Answers with the correct next word of whichever known sequence a row's problem begins."""

    def __init__(self, sequences: list[np.ndarray]) -> None:
        super().__init__(TINY, TaskConfig())
        self.sequences = sequences

    def forward(self, tokens):
        logits = torch.zeros(*tokens.shape, self.vocab.size)
        for b, row in enumerate(tokens.tolist()):
            cot = row.index(COT)
            seq = next(s for s in self.sequences if s[: cot + 1].tolist() == row[: cot + 1])
            nxt = np.append(seq[1:], EOS)[: len(row)]
            logits[b, torch.arange(len(nxt)), torch.from_numpy(nxt)] = 1.0
        return logits


class AlwaysEos(CotModel):
    def forward(self, tokens):
        logits = super().forward(tokens)
        logits[..., EOS] = 1e4
        return logits


@pytest.fixture(scope="module")
def random_model():
    torch.manual_seed(0)
    return CotModel(TINY, TaskConfig())


def oracle_for(problems, seed=0):
    task = TaskConfig()
    graphs, _ = problems_to_graphs([parse_problem(p, task) for p in problems], task, seed=seed)
    traces = build_traces(graphs, CotVocab.for_task(TaskConfig()))
    return Oracle([traces.tokens[b, : traces.length[b]] for b in range(graphs.batch)]), graphs


def test_solving_with_a_correct_trace_gives_the_exact_values_and_converges():
    model, graphs = oracle_for(PROBLEMS)
    solutions = solve_cot(model, PROBLEMS, batch_size=1)
    for text, sol, n in zip(PROBLEMS, solutions, trace_lengths(graphs)):
        assert sol.values == solve_exact(parse_problem(text), 23)
        assert sol.converged and sol.complete and sol.iterations == n


def test_a_random_model_returns_one_solution_per_problem_with_flags(random_model):
    solutions = solve_cot(random_model, PROBLEMS)
    assert [type(s) for s in solutions] == [Solution, Solution]
    for text, sol in zip(PROBLEMS, solutions):
        assert list(sol.values) == parse_problem(text).names
        assert isinstance(sol.converged, bool) and 1 <= sol.iterations
        assert set(sol.to_dict()) == {"values", "iterations", "converged", "complete"}
    single = solve_cot(random_model, PROBLEMS[0], max_steps=3)
    assert isinstance(single, Solution) and single.iterations <= 3


def test_a_model_that_stops_at_once_converges_with_nothing_solved():
    torch.manual_seed(0)
    sol = solve_cot(AlwaysEos(TINY, TaskConfig()), PROBLEMS[1])
    assert sol.converged and sol.iterations == 1 and sol.unsolved == ["k", "m", "n", "q"]


def test_generation_is_the_same_batched_and_one_row_at_a_time(random_model):
    g = sample_graphs(np.array([7, 9, 12]), 3, rng=np.random.default_rng(0))
    batched = run_graphs(random_model, g, batch_size=3)
    alone = run_graphs(random_model, g, batch_size=1)
    assert batched[0] == alone[0]
    np.testing.assert_array_equal(batched[1], alone[1])
    np.testing.assert_array_equal(batched[1], np.minimum(batched[1], trace_lengths(g) + SLACK))


def test_generate_stops_each_row_at_its_own_budget(random_model):
    prompts = np.array([[1, 20, 4, 9, 5, 3], [1, 21, 4, 9, 5, 3]])
    budget = np.array([2, 5])
    words, count, ended = generate(random_model, prompts, np.array([6, 3]), budget)
    assert ((count == budget) | ended).all() and (count <= budget).all()
    assert words.shape == (2, count.max())


def test_evaluation_of_an_oracle_solves_every_graph():
    task = TaskConfig()
    g = sample_graphs(np.array([8, 10]), 2, rng=np.random.default_rng(4), task=task)
    traces = build_traces(g, CotVocab.for_task(TaskConfig()))
    oracle = Oracle([traces.tokens[b, : traces.length[b]] for b in range(2)])
    result = evaluate_graphs(oracle, g)
    assert result.graph_acc == 1.0 and result.node_acc == 1.0 and result.converged == 1.0


def test_bad_input_is_one_line(random_model):
    with pytest.raises(WorkbenchError) as err:
        solve_cot(random_model, "a = 3\nb = a / 2")
    assert "\n" not in str(err.value) and "not supported" in str(err.value)
    assert solve_cot(random_model, []) == []
