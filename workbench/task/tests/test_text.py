"""The text format: parsing, validation messages, model order, round trips through ``Graphs``."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.task import text as text_module
from workbench.task.config import ALL_OPERATIONS, TaskConfig
from workbench.task.graphs import compute_depth, evaluate, sample_graphs
from workbench.task.text import (Equation, Problem, check_problem, format_problem, graphs_to_problems, parse_problem,
                                 problems_to_graphs, solve_exact)

ALL_OPS_TASK = TaskConfig(modulus=23, operations=ALL_OPERATIONS)

HAND_WORKED = """\
total = left * right   # 16 * 5 = 80 = 11 mod 23
right = seven - two
two = 2
left = seven + seven + two
seven = 7
copy = total
"""


def test_hand_worked_problem_is_in_model_order_with_exact_values():
    problem = parse_problem(HAND_WORKED, ALL_OPS_TASK)
    assert problem.names == ["two", "seven", "right", "left", "total", "copy"]
    assert problem.depth == {"two": 0, "seven": 0, "right": 1, "left": 1, "total": 2, "copy": 3}
    assert len(problem) == 6
    assert [eq.line for eq in problem.equations] == [3, 5, 2, 4, 1, 6]
    assert solve_exact(problem, 23) == {"two": 2, "seven": 7, "right": 5, "left": 16, "total": 11, "copy": 11}


def test_hand_worked_problem_as_graphs_has_the_expected_arrays():
    graphs, (mapping,) = problems_to_graphs([parse_problem(HAND_WORKED, ALL_OPS_TASK)], ALL_OPS_TASK)
    add, sub, mul = (ALL_OPERATIONS.index(op) for op in "+-*")
    np.testing.assert_array_equal(graphs.parents[0], [[-1, -1, -1], [-1, -1, -1], [1, 0, -1], [1, 1, 0], [3, 2, -1], [4, -1, -1]])
    np.testing.assert_array_equal(graphs.ops[0], [[-1, -1], [-1, -1], [sub, -1], [add, add], [mul, -1], [-1, -1]])
    np.testing.assert_array_equal(graphs.leaf_value[0], [2, 7, -1, -1, -1, -1])
    np.testing.assert_array_equal(graphs.value[0], [2, 7, 5, 16, 11, 11])
    np.testing.assert_array_equal(evaluate(graphs.parents, graphs.ops, graphs.leaf_value, 23)[0], [2, 7, 5, 16, 11, 11])
    np.testing.assert_array_equal(graphs.depth[0], [0, 0, 1, 1, 2, 3])
    np.testing.assert_array_equal(graphs.names[0], [mapping[name] for name in ["two", "seven", "right", "left", "total", "copy"]])
    assert graphs.n_nodes.tolist() == [6] and graphs.modulus == 23


def test_format_is_the_normalized_form_and_parses_back():
    problem = parse_problem(HAND_WORKED, ALL_OPS_TASK)
    normalized = "two = 2\nseven = 7\nright = seven - two\nleft = seven + seven + two\ntotal = left * right\ncopy = total\n"
    assert format_problem(problem) == normalized
    assert parse_problem(normalized, ALL_OPS_TASK) == problem


def test_comments_blank_lines_and_spacing_are_ignored():
    messy = "# a header comment\n\n   b=a+a   # trailing comment\n\t\na   =3#no space\n  c =b  \n\n"
    problem = parse_problem(messy)
    assert problem == parse_problem("a = 3\nb = a + a\nc = b")
    assert format_problem(problem) == "a = 3\nb = a + a\nc = b\n"
    assert solve_exact(problem, 23) == {"a": 3, "b": 6, "c": 6}


@pytest.mark.parametrize("seed, n_nodes, operations, depth_cap", [
    (0, 8, ("+",), None), (1, 20, ("+", "-", "*"), 3), (2, 40, ("-", "*"), None), (3, np.array([7, 12, 30, 9]), ("+", "*"), 6),
])
def test_sampled_graphs_survive_text_round_trip(seed, n_nodes, operations, depth_cap):
    task = TaskConfig(modulus=23, operations=operations)
    batch = 4
    graphs = sample_graphs(n_nodes, batch, rng=np.random.default_rng(seed), task=task, depth_cap=depth_cap)
    problems = graphs_to_problems(graphs)
    reparsed = [parse_problem(format_problem(problem), task) for problem in problems]
    assert reparsed == problems
    rebuilt, mappings = problems_to_graphs(reparsed, task, seed=seed)
    valid = graphs.valid
    np.testing.assert_array_equal(rebuilt.n_nodes, graphs.n_nodes)
    np.testing.assert_array_equal(rebuilt.valid, valid)
    for name in ("parents", "ops", "leaf_value", "value", "depth"):
        np.testing.assert_array_equal(getattr(rebuilt, name)[valid], getattr(graphs, name)[valid], err_msg=name)
    np.testing.assert_array_equal(rebuilt.depth, compute_depth(rebuilt.parents, rebuilt.valid))
    for b, (problem, mapping) in enumerate(zip(problems, mappings)):
        assert list(solve_exact(problem, 23).values()) == rebuilt.value[b, :len(problem)].tolist()
        assert [mapping[name] for name in problem.names] == rebuilt.names[b, :len(problem)].tolist()


def test_graphs_to_problems_uses_pool_names_or_the_given_ones():
    task = TaskConfig(operations=("+", "-"))
    graphs = sample_graphs(9, 2, rng=np.random.default_rng(5), task=task)
    pool_named = graphs_to_problems(graphs)
    assert pool_named[0].names == [f"x_{k}" for k in graphs.names[0, :9]]
    custom = [[f"v{i}" for i in range(9)], [f"w{i}" for i in range(9)]]
    named = graphs_to_problems(graphs, custom)
    assert named[1].names == custom[1]
    assert [solve_exact(p, 23) for p in named] == [dict(zip(row, solve_exact(p, 23).values())) for row, p in zip(custom, pool_named)]


def test_seeded_name_mapping_is_injective_deterministic_and_seed_dependent():
    task = TaskConfig(n_names=64)
    problem = parse_problem("\n".join(["v0 = 1"] + [f"v{i} = v{i - 1} + v0" for i in range(1, 40)]), task)
    small = parse_problem("a = 1\nb = a", task)
    _, (first, _) = problems_to_graphs([problem, small], task, seed=7)
    _, (_, again) = problems_to_graphs([small, problem], task, seed=7)
    _, (other,) = problems_to_graphs([problem], task, seed=8)
    assert len(set(first.values())) == len(problem)
    assert all(0 <= k < task.n_names for k in first.values())
    assert again == first
    assert other != first


def test_batch_of_different_sizes_is_padded_with_minus_one():
    problems = [parse_problem("a = 4"), parse_problem("a = 1\nb = 2\nc = a + b"), parse_problem("p = 5\nq = p\nr = q + p + q\ns = r\nt = s + s\nu = t")]
    graphs, _ = problems_to_graphs(problems, TaskConfig())
    assert graphs.parents.shape == (3, 6, 3) and graphs.ops.shape == (3, 6, 2)
    assert graphs.n_nodes.tolist() == [1, 3, 6]
    pad = ~graphs.valid
    assert pad.sum() == 5 + 3
    for array in (graphs.depth, graphs.names, graphs.leaf_value, graphs.value):
        assert (array[pad] == -1).all()
    assert (graphs.parents[pad] == -1).all() and (graphs.ops[pad] == -1).all()
    assert graphs.value[2].tolist() == [5, 5, 15, 15, 7, 7]


def test_repeated_operands_are_allowed():
    assert solve_exact(parse_problem("b = a + a - a\na = 9", ALL_OPS_TASK), 23) == {"a": 9, "b": 9}


@pytest.mark.parametrize("source, task, line, words", [
    ("a = 1\nb a", TaskConfig(), 2, ["no '='"]),
    ("a = 1 = 2", TaskConfig(), 1, ["more than one '='"]),
    ("  = 4", TaskConfig(), 1, ["nothing before '='"]),
    ("a = 1\n2x = a", TaskConfig(), 2, ["'2x'", "not a variable name"]),
    ("a =  # nothing", TaskConfig(), 1, ["nothing after '='"]),
    ("a = 1\nb = a +", TaskConfig(), 2, ["ends with the operator '+'"]),
    ("a = 1\nb = a + 3", TaskConfig(), 2, ["constant 3 inside an expression"]),
    ("a = 1\nb = a a", TaskConfig(), 2, ["missing operator between 'a' and 'a'"]),
    ("a = 1\nb = + a", TaskConfig(), 2, ["operator '+' where a variable is expected"]),
    ("a = 1\nb = a & a", TaskConfig(), 2, ["unexpected '&'"]),
    ("a = 1\nb = c\nc = d + a\nd = b", TaskConfig(), 2, ["cycle b -> c -> d -> b", "lines 2, 3, 4"]),
    ("a = a", TaskConfig(), 1, ["cycle a -> a"]),
    ("a = 1\nb = a + zed", TaskConfig(), 2, ["'zed'", "never defined"]),
    ("a = 1\nb = a\na = 2", TaskConfig(), 3, ["'a' is defined twice", "lines 1 and 3"]),
    ("a = 23", TaskConfig(modulus=23), 1, ["constant 23 is out of range", "0..22"]),
    ("a = 1\nb = -5", TaskConfig(modulus=23), 2, ["constant -5 is out of range", "0..22", "write 18"]),
    ("a = 1\nb = a * a", TaskConfig(operations=("+",)), 2, ["operator '*' is not supported", "'+' only"]),
    ("a = 1\nb = a - a", TaskConfig(operations=("+", "*")), 2, ["operator '-'", "'+', '*'"]),
    ("a = 1\nb = a / a", TaskConfig(operations=("+",)), 2, ["operator '/' is not supported", "'+'"]),
    ("a = 1\nb = a + a + a", TaskConfig(max_fan_in=2), 2, ["3 operands", "at most 2"]),
    ("a = 1\nb = a\nc = b\nd = c", TaskConfig(n_names=3), 0, ["4 variables", "name pool holds 3"]),
    ("\n  # only a comment\n\n", TaskConfig(), 0, ["no equations"]),
])
def test_each_mistake_raises_one_line_that_names_its_line(source, task, line, words):
    with pytest.raises(WorkbenchError) as caught:
        parse_problem(source, task)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"line {line}: ") if line else not message.startswith("line")
    for word in words:
        assert word in message


def test_hand_built_problem_is_reordered_and_validated():
    problem = Problem((Equation("c", ("a", "b"), ("*",)), Equation("b", constant=4), Equation("a", constant=3)))
    assert problem.names == ["b", "a", "c"]
    assert problem == parse_problem("b = 4\na = 3\nc = a * b", ALL_OPS_TASK)
    with pytest.raises(WorkbenchError, match="not supported"):
        problems_to_graphs([problem], TaskConfig())
    with pytest.raises(WorkbenchError, match="out of range"):
        check_problem(Problem((Equation("a", constant=99),)), TaskConfig())
    with pytest.raises(WorkbenchError, match="'a' is defined twice"):
        Problem((Equation("a", constant=1), Equation("a", constant=2)))
    with pytest.raises(WorkbenchError, match="one operator between"):
        Equation("c", ("a", "b"))
    with pytest.raises(WorkbenchError, match="either a constant or operands"):
        Equation("c")


def test_long_chain_needs_no_recursion():
    chain = "\n".join([f"v{i} = v{i - 1} + v{i - 1}" for i in range(3000, 0, -1)] + ["v0 = 1"])
    problem = parse_problem(chain, TaskConfig(n_names=4000))
    assert problem.depth["v3000"] == 3000 and problem.names[0] == "v0"


def test_docstring_examples_run():
    assert doctest.testmod(text_module).failed == 0


def test_the_top_level_solve_stays_a_function_after_every_call():
    """``wb.solve`` is the README's example; a lazily imported submodule of the same name once replaced it."""
    import subprocess
    import sys

    code = ("import workbench as wb, torch\n"
            "from workbench.model.looped import LoopedModel\n"
            "m = LoopedModel(wb.ModelConfig(n_layers=1, n_heads=2, d_model=16), wb.TaskConfig())\n"
            "a = wb.solve(m, 'a = 3', max_steps=2); b = wb.solve(m, 'a = 3', max_steps=2)\n"
            "import workbench.solving\n"
            "c = wb.solve(m, 'a = 3', max_steps=2)\n"
            "print(callable(wb.solve), a == b == c)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["True", "True"], done.stderr[-2000:]


def test_solving_no_problems_answers_an_empty_list():
    from workbench.model.config import ModelConfig
    from workbench.model.looped import LoopedModel
    from workbench.solving import solve

    assert solve(LoopedModel(ModelConfig(n_layers=1, n_heads=2, d_model=16), TaskConfig()), []) == []
