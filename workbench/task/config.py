"""The problem space a model is built for: modulus, operations, name pool, fan-in."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from workbench.errors import WorkbenchError

#: The global operation vocabulary; a model's ``operations`` is a subset, its OPERATION codes index this.
ALL_OPERATIONS: tuple[str, ...] = ("+", "-", "*")


@dataclass(frozen=True, kw_only=True)
class TaskConfig:
    """What problems a model accepts; saved with every checkpoint.

    ``modulus`` is the arithmetic's p; ``n_values`` is the number of value codes the model's VALUE
    factor holds (>= modulus: a curriculum may train with a larger wrap-free modulus first, and the
    spare codes then stay unused).
    """

    modulus: int = 23
    operations: tuple[str, ...] = ("+",)
    n_names: int = 128
    max_fan_in: int = 3
    n_values: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "operations", tuple(self.operations))
        if self.modulus < 2:
            raise WorkbenchError(f"modulus must be at least 2, got {self.modulus}")
        bad = [op for op in self.operations if op not in ALL_OPERATIONS]
        if bad or not self.operations:
            raise WorkbenchError(f"operations must be a non-empty subset of {list(ALL_OPERATIONS)}, got {list(self.operations)}")
        if not 1 <= self.max_fan_in <= 3:
            raise WorkbenchError(f"max_fan_in must be 1, 2 or 3, got {self.max_fan_in}")
        if self.n_names < 1:
            raise WorkbenchError(f"n_names must be positive, got {self.n_names}")
        if self.n_values is not None and self.n_values < self.modulus:
            raise WorkbenchError(f"n_values ({self.n_values}) must be at least the modulus ({self.modulus})")

    @property
    def value_codes(self) -> int:
        """Number of value codes in the VALUE factor (0..value_codes-1 are values)."""
        return self.n_values if self.n_values is not None else self.modulus

    @property
    def op_indices(self) -> tuple[int, ...]:
        """OPERATION codes of this task's operations."""
        return tuple(ALL_OPERATIONS.index(op) for op in self.operations)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["operations"] = list(self.operations)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TaskConfig":
        return cls(**{k: (tuple(v) if k == "operations" else v) for k, v in d.items()})


def pool_name(index: int) -> str:
    """The model's own name for pool entry ``index`` (``x_17``)."""
    return f"x_{index}"


__all__ = ["ALL_OPERATIONS", "TaskConfig", "pool_name"]
