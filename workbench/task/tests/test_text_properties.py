"""Property tests of the public text format (hypothesis, >= 1,000 cases per property).

Three promises every part of the workbench builds on: a problem written out and read back is the
same problem; no input whatever escapes as anything but a one-line ``WorkbenchError``; and the
answers ``solve_exact`` gives equal those of an evaluator written here from the text alone.
"""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.errors import WorkbenchError
from workbench.task.config import ALL_OPERATIONS, TaskConfig
from workbench.task.text import Problem, format_problem, parse_problem, solve_exact

CASES = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TASK = TaskConfig(operations=ALL_OPERATIONS, n_names=64)
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,7}", fullmatch=True)


@st.composite
def problem_texts(draw) -> str:
    """A valid problem as a user might write it: any names, lines shuffled, comments and spacing."""
    names = draw(st.lists(NAMES, min_size=1, max_size=24, unique=True))
    lines = []
    for i, name in enumerate(names):
        if i == 0 or draw(st.booleans()):
            lines.append(f"{name} = {draw(st.integers(0, TASK.modulus - 1))}")
            continue
        k = draw(st.integers(1, TASK.max_fan_in))
        operands = [names[draw(st.integers(0, i - 1))] for _ in range(k)]
        ops = [draw(st.sampled_from(ALL_OPERATIONS)) for _ in range(k - 1)]
        space = draw(st.sampled_from(["", " ", "  ", "\t"]))
        rhs = operands[0] + "".join(f"{space}{op}{space}{x}" for op, x in zip(ops, operands[1:]))
        comment = draw(st.sampled_from(["", "  # note", "#"]))
        lines.append(f"{name}{space}={space}{rhs}{comment}")
    random.Random(draw(st.integers(0, 2**16))).shuffle(lines)
    blank = draw(st.sampled_from(["\n", "\n\n", "\r\n"]))
    return blank.join(lines) + draw(st.sampled_from(["", "\n"]))


def evaluate_by_hand(text: str, modulus: int) -> dict[str, int]:
    """Each variable's value, read straight off the lines by recursive substitution (left to right)."""
    rhs = {}
    for raw in text.splitlines():
        body = raw.split("#", 1)[0].strip()
        if body:
            name, expr = (side.strip() for side in body.split("=", 1))
            rhs[name] = expr.replace(" ", "").replace("\t", "")
    values: dict[str, int] = {}

    def value(name: str) -> int:
        if name not in values:
            expr = rhs[name]
            if expr.isdigit():
                values[name] = int(expr) % modulus
            else:
                tokens = [t for t in re.split(r"([-+*])", expr) if t]
                acc = value(tokens[0])
                for op, operand in zip(tokens[1::2], tokens[2::2]):
                    x = value(operand)
                    acc = {"+": acc + x, "-": acc - x, "*": acc * x}[op] % modulus
                values[name] = acc
        return values[name]

    return {name: value(name) for name in rhs}


@CASES
@given(problem_texts())
def test_a_problem_written_out_parses_back_to_itself(text):
    problem = parse_problem(text, TASK)
    normal = format_problem(problem)
    assert parse_problem(normal, TASK) == problem
    assert format_problem(parse_problem(normal, TASK)) == normal
    assert isinstance(problem, Problem) and sorted(problem.names) == sorted(evaluate_by_hand(text, TASK.modulus))


@CASES
@given(problem_texts())
def test_exact_answers_equal_a_hand_evaluator(text):
    assert solve_exact(parse_problem(text, TASK), TASK.modulus) == evaluate_by_hand(text, TASK.modulus)


ALPHABET = st.sampled_from(list("ab_ =+-*/%^#\n\t0123456789xyz\ufeff\u00e9(),;.") + ["\r\n", "  ", "a = ", " + ", "\u200b"])


@CASES
@given(st.lists(ALPHABET, max_size=60).map("".join))
def test_any_text_parses_or_fails_with_one_line_workbench_error(text):
    try:
        parse_problem(text, TASK)
    except WorkbenchError as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message


@settings(max_examples=50, deadline=None)
@given(st.integers(31, 4000), st.integers(1, 9))
def test_huge_constants_are_refused_with_their_residue(digits, lead):
    number = f"{lead}{'7' * (digits - 1)}"
    try:
        parse_problem(f"a = {number}", TASK)
        raise AssertionError("a constant of more than 30 digits was accepted")
    except WorkbenchError as exc:
        assert "out of range" in str(exc) and f"write {int(number) % TASK.modulus} " in str(exc)


def test_a_constant_past_pythons_digit_limit_is_a_workbench_error():
    with pytest.raises(WorkbenchError, match="out of range"):
        parse_problem("a = " + "9" * 5000, TASK)


def test_a_byte_order_mark_before_the_first_line_is_ignored():
    assert parse_problem("\ufeffa = 3\nb = a + a", TASK) == parse_problem("a = 3\nb = a + a", TASK)
