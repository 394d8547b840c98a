"""The public text format of a problem: parse, validate, format, solve, and convert to and from ``Graphs``.

This is the one contract shared by the CLI, the API, the notebooks and the app. A user writes

    a = 17            # a leaf: a constant in 0..p-1
    b = 4
    c = a + b - a     # operators + - *, applied left to right, mod p
    d = c             # a single operand is a copy

with any names, in any order, and gets a ``Problem`` whose equations stand in *model order* (by
depth, ties in order of appearance), the order in which the model reads them. Everything a user can
get wrong raises a one-line ``WorkbenchError`` that names the line and says how to fix it.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from workbench.errors import WorkbenchError
from workbench.task.config import ALL_OPERATIONS, TaskConfig, pool_name
from workbench.task.graphs import MAX_FAN_IN, Graphs, evaluate

#: a variable name, as users write it and as ``Equation`` checks it
NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"
COMMENT = "#"
#: "no node / no parent / no operation / not a leaf" in ``Graphs`` arrays
NONE = -1

_NAME_RE = re.compile(rf"{NAME_PATTERN}\Z")
_OPERATOR_CLASS = "[" + re.escape("".join(ALL_OPERATIONS)) + "]"
_TOKEN_RE = re.compile(rf"\s*(?:(?P<name>{NAME_PATTERN})|(?P<number>[0-9]+)|(?P<op>{_OPERATOR_CLASS})|(?P<other>\S))")
# symbols a user may mean as an operator although the format has none of them
_FOREIGN_OPERATORS = frozenset("/%^")
_APPLY: dict[str, Callable[[int, int], int]] = {"+": operator.add, "-": operator.sub, "*": operator.mul}
_OP_CODE = {op: code for code, op in enumerate(ALL_OPERATIONS)}


def _at(line: int) -> str:
    """The ``line N: `` prefix of a message about one line, empty when the line is unknown."""
    return f"line {line}: " if line > 0 else ""


def _listed(ops: Sequence[str]) -> str:
    return ", ".join(f"'{op}'" for op in ops)


@dataclass(frozen=True)
class Equation:
    """One line of a problem: ``name = constant`` (a leaf) or ``name = operands[0] ops[0] operands[1] ...``.

    ``line`` is where the equation was parsed from (0 otherwise); it only serves error messages, so it
    takes no part in equality.
    """

    name: str
    operands: tuple[str, ...] = ()
    ops: tuple[str, ...] = ()
    constant: int | None = None
    line: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "operands", tuple(self.operands))
        object.__setattr__(self, "ops", tuple(self.ops))
        where = _at(self.line)
        for name in (self.name, *self.operands):
            if not _NAME_RE.match(name):
                raise WorkbenchError(f"{where}'{name}' is not a variable name; use letters, digits and _, not starting with a digit")
        if (self.constant is None) == (not self.operands):
            raise WorkbenchError(f"{where}'{self.name}' needs either a constant or operands (not both, not neither)")
        if self.constant is not None:
            object.__setattr__(self, "constant", int(self.constant))
        if len(self.ops) != max(len(self.operands) - 1, 0):
            raise WorkbenchError(f"{where}'{self.name}' has {len(self.operands)} operands but {len(self.ops)} operators; "
                                 "it needs one operator between each two operands")
        unknown = [op for op in self.ops if op not in ALL_OPERATIONS]
        if unknown:
            raise WorkbenchError(f"{where}unknown operator '{unknown[0]}' in '{self.name}'; the operators are {_listed(ALL_OPERATIONS)}")

    @property
    def is_leaf(self) -> bool:
        return self.constant is not None

    def __str__(self) -> str:
        """The equation as one normalized line: ``a = 17`` or ``c = a + b``."""
        if self.is_leaf:
            return f"{self.name} = {self.constant}"
        rhs = self.operands[0] + "".join(f" {op} {name}" for op, name in zip(self.ops, self.operands[1:]))
        return f"{self.name} = {rhs}"


@dataclass(frozen=True)
class Problem:
    """A well-formed set of equations, kept in model order whatever order they were given in.

    Construction checks what makes equations a problem at all (each variable defined once, every
    operand defined, no cycle); ``parse_problem`` and ``problems_to_graphs`` add the limits of one model.
    """

    equations: tuple[Equation, ...]
    _depth: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ordered, depth = _model_order(tuple(self.equations))
        object.__setattr__(self, "equations", ordered)
        object.__setattr__(self, "_depth", depth)

    @property
    def names(self) -> list[str]:
        """Variable names in model order."""
        return [eq.name for eq in self.equations]

    @property
    def depth(self) -> dict[str, int]:
        """Depth of every variable: 0 for a leaf, else 1 + the largest depth among its operands."""
        return dict(self._depth)

    def __len__(self) -> int:
        return len(self.equations)


def _model_order(equations: tuple[Equation, ...]) -> tuple[tuple[Equation, ...], dict[str, int]]:
    """The equations sorted by depth (stable) and every depth; raises on duplicates, undefined names, cycles.

    The depths come from an iterative depth-first search, so chains of any length pass and the first
    cycle met is reported as the list of variables in it.
    """
    by_name: dict[str, Equation] = {}
    for eq in equations:
        first = by_name.get(eq.name)
        if first is not None:
            lines = f" (lines {first.line} and {eq.line})" if first.line and eq.line else ""
            raise WorkbenchError(f"{_at(eq.line)}'{eq.name}' is defined twice{lines}; rename or delete one of them")
        by_name[eq.name] = eq
    for eq in equations:
        missing = next((name for name in eq.operands if name not in by_name), None)
        if missing is not None:
            raise WorkbenchError(f"{_at(eq.line)}'{missing}' is used but never defined; "
                                 f"add a line such as '{missing} = 0' or fix the name")
    appearance = {eq.name: i for i, eq in enumerate(equations)}
    depth: dict[str, int] = {}
    for root in by_name:
        if root in depth:
            continue
        path, on_path = [root], {root: 0}
        stack = [iter(by_name[root].operands)]
        while stack:
            for name in stack[-1]:
                if name in depth:
                    continue
                if name in on_path:
                    _raise_cycle(path[on_path[name]:], by_name, appearance)
                on_path[name] = len(path)
                path.append(name)
                stack.append(iter(by_name[name].operands))
                break
            else:  # every operand of path[-1] is done
                stack.pop()
                done = path.pop()
                del on_path[done]
                eq = by_name[done]
                depth[done] = 0 if eq.is_leaf else 1 + max(depth[name] for name in eq.operands)
    order = sorted(range(len(equations)), key=lambda i: (depth[equations[i].name], i))
    return tuple(equations[i] for i in order), {equations[i].name: depth[equations[i].name] for i in order}


def _raise_cycle(members: list[str], by_name: dict[str, Equation], appearance: dict[str, int]) -> None:
    """Report a cycle (each member uses the next, the last uses the first), starting at its earliest line."""
    start = min(range(len(members)), key=lambda i: appearance[members[i]])
    members = members[start:] + members[:start]
    first = by_name[members[0]]
    lines = [by_name[name].line for name in members]
    label = "line" if len(lines) == 1 else "lines"
    where = f", {label} {', '.join(map(str, lines))}" if all(lines) else ""
    chain = " -> ".join(members + members[:1])
    raise WorkbenchError(f"{_at(first.line)}'{first.name}' depends on itself through the cycle {chain} (each uses the next{where}); "
                         "every variable must be computable from the constants, so break the cycle")


def parse_problem(text: str, task: TaskConfig = TaskConfig()) -> Problem:
    """The problem written in ``text``, in model order, checked against the model's ``task``.

    Lines may come in any order; blank lines, ``#`` comments and any spacing are allowed. The first
    thing wrong raises a one-line ``WorkbenchError`` (``line N: ...`` when one line is at fault).

    >>> problem = parse_problem("c = a * b  # a product\\na = 3\\nb = 5", TaskConfig(operations=("+", "*")))
    >>> problem.names, problem.depth["c"]
    (['a', 'b', 'c'], 1)
    >>> solve_exact(problem, modulus=23)["c"]
    15
    """
    equations: list[Equation] = []
    defined: dict[str, int] = {}
    text = text.removeprefix("\ufeff")  # a byte-order mark some editors write before the first line
    for number, raw in enumerate(text.splitlines(), start=1):
        body = raw.split(COMMENT, 1)[0].strip()
        if not body:
            continue
        eq = _parse_line(body, number, task)
        if eq.name in defined:
            raise WorkbenchError(f"line {number}: '{eq.name}' is defined twice (lines {defined[eq.name]} and {number}); "
                                 "rename or delete one of them")
        defined[eq.name] = number
        _check_equation(eq, task)
        equations.append(eq)
    if not equations:
        raise WorkbenchError("the problem has no equations; write one per line, e.g. 'a = 3' then 'b = a + 1'")
    problem = Problem(tuple(equations))
    _check_size(problem, task)
    return problem


def _parse_line(body: str, number: int, task: TaskConfig) -> Equation:
    """One equation from a line stripped of its comment; only the syntax is checked here."""
    where = _at(number)
    if "=" not in body:
        raise WorkbenchError(f"{where}'{body}' has no '='; write an equation such as 'c = a + b' or 'a = 5'")
    lhs, rhs = (side.strip() for side in body.split("=", 1))
    if "=" in rhs:
        raise WorkbenchError(f"{where}'{body}' has more than one '='; write one equation per line")
    if not lhs:
        raise WorkbenchError(f"{where}nothing before '=' in '{body}'; start the line with the variable it defines")
    if not _NAME_RE.match(lhs):
        raise WorkbenchError(f"{where}'{lhs}' is not a variable name; use letters, digits and _, not starting with a digit")
    if not rhs:
        raise WorkbenchError(f"{where}nothing after '=' in '{body}'; write a constant ('{lhs} = 5') or an expression ('{lhs} = a + b')")
    tokens = [(m.lastgroup, m.group(m.lastgroup)) for m in _TOKEN_RE.finditer(rhs)]
    for kind, tok in tokens:
        if kind == "other" and tok in _FOREIGN_OPERATORS:
            raise WorkbenchError(f"{where}operator '{tok}' is not supported; this model supports {_listed(task.operations)} only")
        if kind == "other":
            raise WorkbenchError(f"{where}unexpected '{tok}' in '{body}'; use only names, constants and {_listed(task.operations)}")
    kinds = [kind for kind, _ in tokens]
    if kinds == ["number"]:
        return Equation(lhs, constant=_constant(tokens[0][1], where, task.modulus), line=number)
    if kinds == ["op", "number"] and tokens[0][1] == "-":
        p = task.modulus
        raise WorkbenchError(f"{where}constant -{_shown(tokens[1][1])} is out of range; constants must be 0..{p - 1}, "
                             f"write {-_residue(tokens[1][1], p) % p} (the same value mod {p})")
    operands: list[str] = []
    ops: list[str] = []
    for position, (kind, tok) in enumerate(tokens):
        if position % 2 == 1:  # an operator must stand here
            if kind != "op":
                raise WorkbenchError(f"{where}missing operator between '{tokens[position - 1][1]}' and '{tok}' in '{body}'")
            ops.append(tok)
        elif kind == "number":
            raise WorkbenchError(f"{where}constant {tok} inside an expression in '{body}'; constants stand alone "
                                 f"('k = {tok}'), so define a variable for it and use its name")
        elif kind == "op":
            raise WorkbenchError(f"{where}operator '{tok}' where a variable is expected in '{body}'; "
                                 "write operands and operators alternately, e.g. 'c = a + b'")
        else:
            operands.append(tok)
    if len(tokens) % 2 == 0:
        raise WorkbenchError(f"{where}'{body}' ends with the operator '{ops[-1]}'; add the operand after it or remove it")
    return Equation(lhs, operands=tuple(operands), ops=tuple(ops), line=number)


MAX_CONSTANT_DIGITS = 30  # far past any modulus; Python refuses int() of strings over 4,300 digits


def _shown(digits: str) -> str:
    """A constant as an error message shows it: long ones shortened to their first digits and length."""
    return digits if len(digits) <= MAX_CONSTANT_DIGITS else f"{digits[:12]}... ({len(digits)} digits)"


def _residue(digits: str, modulus: int) -> int:
    """``int(digits) % modulus`` for a digit string of any length (Horner's rule, no big integer)."""
    value = 0
    for d in digits:
        value = (value * 10 + ord(d) - 48) % modulus
    return value


def _constant(digits: str, where: str, modulus: int) -> int:
    """The value of a constant's digits; one that cannot be in range is refused before ``int()`` sees it."""
    if len(digits.lstrip("0")) > MAX_CONSTANT_DIGITS:
        raise WorkbenchError(f"{where}constant {_shown(digits)} is out of range; constants must be 0..{modulus - 1}, "
                             f"write {_residue(digits, modulus)} (the same value mod {modulus})")
    return int(digits)


def _check_equation(eq: Equation, task: TaskConfig) -> None:
    """Raise unless one equation fits the model: constant range, operators, fan-in."""
    where = _at(eq.line)
    p = task.modulus
    if eq.is_leaf and not 0 <= eq.constant < p:
        raise WorkbenchError(f"{where}constant {eq.constant} is out of range; constants must be 0..{p - 1}, "
                             f"write {eq.constant % p} (the same value mod {p})")
    unsupported = next((op for op in eq.ops if op not in task.operations), None)
    if unsupported is not None:
        raise WorkbenchError(f"{where}operator '{unsupported}' is not supported; this model was trained on "
                             f"{_listed(task.operations)} only, so rewrite '{eq}' without it")
    if len(eq.operands) > task.max_fan_in:
        raise WorkbenchError(f"{where}'{eq.name}' has {len(eq.operands)} operands but this model takes at most "
                             f"{task.max_fan_in}; split it through helper variables")


def _check_size(problem: Problem, task: TaskConfig) -> None:
    if len(problem) > task.n_names:
        raise WorkbenchError(f"the problem has {len(problem)} variables but this model's name pool holds "
                             f"{task.n_names}; use at most {task.n_names} variables")


def check_problem(problem: Problem, task: TaskConfig) -> None:
    """Raise a ``WorkbenchError`` unless ``problem`` fits the model of ``task`` (for hand-built problems)."""
    for eq in problem.equations:
        _check_equation(eq, task)
    _check_size(problem, task)


def format_problem(problem: Problem) -> str:
    """The normalized text of ``problem``: one equation per line in model order, ``parse_problem``'s inverse."""
    return "".join(f"{eq}\n" for eq in problem.equations)


def solve_exact(problem: Problem, modulus: int) -> dict[str, int]:
    """The ground-truth value of every variable (model order), by exact integer arithmetic mod ``modulus``.

    Independent of ``graphs.evaluate``, so the two can check each other.
    """
    values: dict[str, int] = {}
    for eq in problem.equations:  # model order: operands are always solved first
        if eq.is_leaf:
            values[eq.name] = eq.constant % modulus
            continue
        acc = values[eq.operands[0]]
        for op, name in zip(eq.ops, eq.operands[1:]):
            acc = _APPLY[op](acc, values[name]) % modulus
        values[eq.name] = acc
    return values


def problems_to_graphs(problems: Sequence[Problem], task: TaskConfig, *, seed: int = 0) -> tuple[Graphs, list[dict[str, int]]]:
    """A ``Graphs`` batch of ``problems`` (padded to the largest) and each problem's ``{name: pool index}``.

    The model only knows the pool names ``0..n_names-1``; user names are mapped onto them by one
    ``seed``-fixed permutation of the pool, taken in model order, so a problem always gets the same
    names for the same seed (wherever it sits in the batch) and another seed tries other names.
    """
    for problem in problems:
        check_problem(problem, task)
    batch = len(problems)
    n_nodes = np.array([len(problem) for problem in problems], dtype=np.int64)
    n_max = int(n_nodes.max()) if batch else 0
    parents = np.full((batch, n_max, MAX_FAN_IN), NONE, dtype=np.int64)
    ops = np.full((batch, n_max, MAX_FAN_IN - 1), NONE, dtype=np.int64)
    leaf_value = np.full((batch, n_max), NONE, dtype=np.int64)
    depth = np.full((batch, n_max), NONE, dtype=np.int64)
    names = np.full((batch, n_max), NONE, dtype=np.int64)
    pool = np.random.default_rng(seed).permutation(task.n_names)
    # flat (row, node, slot, code) lists, written with one fancy assignment per array
    par_at: list[tuple[int, int, int]] = []
    par_code: list[int] = []
    op_at: list[tuple[int, int, int]] = []
    op_code: list[int] = []
    mappings: list[dict[str, int]] = []
    for b, problem in enumerate(problems):
        n = len(problem)
        index = {name: i for i, name in enumerate(problem.names)}
        mappings.append({name: int(pool[i]) for name, i in index.items()})
        names[b, :n] = pool[:n]
        depth_of = problem.depth
        depth[b, :n] = [depth_of[name] for name in problem.names]
        for i, eq in enumerate(problem.equations):
            if eq.is_leaf:
                leaf_value[b, i] = eq.constant
                continue
            par_at += [(b, i, slot) for slot in range(len(eq.operands))]
            par_code += [index[name] for name in eq.operands]
            op_at += [(b, i, slot) for slot in range(len(eq.ops))]
            op_code += [_OP_CODE[op] for op in eq.ops]
    if par_at:
        parents[tuple(np.array(par_at).T)] = par_code
    if op_at:
        ops[tuple(np.array(op_at).T)] = op_code
    value = evaluate(parents, ops, leaf_value, task.modulus)
    return Graphs(parents, ops, leaf_value, value, depth, names, n_nodes, task.modulus), mappings


def graphs_to_problems(graphs: Graphs, names: Sequence[Sequence[str]] | None = None) -> list[Problem]:
    """The problem of every graph in ``graphs``, its nodes named ``x_17`` after their pool entry or by ``names``.

    ``names[b]`` gives graph ``b``'s node names in model order (at least ``n_nodes[b]`` of them).
    """
    if names is not None and len(names) != graphs.batch:
        raise WorkbenchError(f"names has {len(names)} rows but the batch has {graphs.batch} graphs; give one row per graph")
    problems = []
    for b in range(graphs.batch):
        n = int(graphs.n_nodes[b])
        row = [pool_name(k) for k in graphs.names[b, :n].tolist()] if names is None else list(names[b])
        if len(row) < n:
            raise WorkbenchError(f"graph {b} has {n} nodes but only {len(row)} names were given; give one name per node")
        parents, ops, leaf = graphs.parents[b, :n].tolist(), graphs.ops[b, :n].tolist(), graphs.leaf_value[b, :n].tolist()
        equations = []
        for i in range(n):
            if leaf[i] >= 0:
                equations.append(Equation(row[i], constant=leaf[i]))
                continue
            k = sum(parent >= 0 for parent in parents[i])  # parents are packed to the left
            equations.append(Equation(row[i], operands=tuple(row[parent] for parent in parents[i][:k]),
                                      ops=tuple(ALL_OPERATIONS[code] for code in ops[i][:k - 1])))
        problems.append(Problem(tuple(equations)))
    return problems


__all__ = ["Equation", "Problem", "parse_problem", "format_problem", "solve_exact", "check_problem",
           "problems_to_graphs", "graphs_to_problems", "NAME_PATTERN"]
