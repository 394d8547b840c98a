"""The factored token codes: every position is four integers (syntax, variable, operation, value).

The reference's REGRET and MODIFICATION factors were never trained; they are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.task.config import ALL_OPERATIONS, TaskConfig

# SYNTAX codes
VARIABLE, OPERATION, VALUE, PAD, UNK, EQUALS, SEP = range(7)
SYNTAX_NAMES: tuple[str, ...] = ("VAR", "OP", "VAL", "PAD", "UNK", "=", "SEP")
N_SYNTAX = len(SYNTAX_NAMES)

#: factor axis order of every token array [..., factor]
FACTORS: tuple[str, ...] = ("syntax", "variable", "operation", "value")
F_SYNTAX, F_VARIABLE, F_OPERATION, F_VALUE = range(4)


@dataclass(frozen=True)
class Vocab:
    """Sizes and special codes of the four factors for one task."""

    n_names: int
    n_values: int
    n_ops: int = len(ALL_OPERATIONS)

    @classmethod
    def for_task(cls, task: TaskConfig) -> "Vocab":
        return cls(n_names=task.n_names, n_values=task.value_codes)

    @property
    def var_na(self) -> int:
        return self.n_names

    @property
    def op_na(self) -> int:
        return self.n_ops

    @property
    def value_na(self) -> int:
        return self.n_values

    @property
    def empty(self) -> int:
        return self.n_values + 1

    @property
    def sizes(self) -> tuple[int, int, int, int]:
        """Width of each factor's code book, in FACTORS order."""
        return (N_SYNTAX, self.n_names + 1, self.n_ops + 1, self.n_values + 2)

    def pad_token(self) -> tuple[int, int, int, int]:
        return (PAD, self.var_na, self.op_na, self.value_na)

    def describe(self, code: tuple[int, int, int, int]) -> str:
        """A short human label for one token, e.g. ``x_17=5`` or ``+`` or ``SEP``."""
        syn, var, op, val = (int(c) for c in code)
        value = "" if val == self.value_na else ("=?" if val == self.empty else f"={val}")
        if syn == VARIABLE:
            name = f"x_{var}" if var < self.n_names else "x_?"
            return name + value
        if syn == OPERATION:
            return ALL_OPERATIONS[op] if op < self.n_ops else "op?"
        if syn == VALUE:
            return str(val) if val < self.n_values else "?"
        return SYNTAX_NAMES[syn] if syn < N_SYNTAX else "?"
