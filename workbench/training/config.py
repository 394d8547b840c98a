"""Training config: the run's settings and its curriculum of phases (TOML or JSON files)."""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from workbench.errors import WorkbenchError
from workbench.model.config import ModelConfig
from workbench.task.config import TaskConfig


@dataclass(frozen=True, kw_only=True)
class Phase:
    """One stage of the curriculum: what graphs to train on, for how many steps.

    nodes: graph sizes drawn uniformly from [lo, hi] per graph.
    fan_in: parent counts drawn uniformly from this list (repeat an entry to weight it).
    modulus: arithmetic for this phase (a larger, wrap-free modulus helps learn addition first);
        default the task's. leaf_values: leaf constants drawn from 0..leaf_values-1 (default modulus).
    zero_leaves: each leaf is 0 with this probability. A model that already copies one operand learns
        to fetch the others from the sums where that operand is 0 (a plain copy signal per slot).
    operand_lookup: weight of an auxiliary loss asking every operand occurrence to hold, after the
        first block, the value at its variable's defining slot (read through the model's own final
        norm and value head, so no parameters are added). It steers the model to the slot-agnostic
        circuit "each operand looks its value up, the result reads its operands by position" instead
        of a lookup per operand slot, which left later slots unlearned (see the model card).
    depth_cap: parents only among nodes of depth < cap. corruption_prob overrides the model's.
    hubs: the share of graphs rewired so that 1-2 early variables are read by 2..max_fan_out later
        equations each (``task.families.add_hubs``); the paper's law almost never has such hubs, and a
        model trained without them loses its lookups when one name recurs dozens of times.
    lookup_temperature: during this phase the first block's content scores (q.k) are divided by this
        (inference always uses 1). A name lookup trained to hold under softened scores is this many
        times sharper at inference, so it survives far more same-name look-alikes than training had.
    lookup_margin: when set, the operand-lookup auxiliary loss reads a second pass of the first block with
        its content scores divided by this (the main loss keeps ``lookup_temperature``). The lookup must
        then hold under scores this many times softer: a margin asked of the lookup alone, where a
        ``lookup_temperature`` that high would also sharpen every other first-block head at inference.
    lookup_attention: weight of a loss on the first layer's routing itself: at every operand occurrence, each
        head that already looks names up (batch-mean attention on the defining slot above one half) is
        asked for -log of its attention on that slot with scores divided by ``lookup_margin`` (default 2).
        The value read-out of ``operand_lookup`` tolerates a soft lookup; this asks for the margin directly.
    train_only: parameter names (``fnmatch`` patterns, e.g. ``blocks.*.attn.head_gain``) trained in this
        phase; every other parameter keeps its value (no update, no weight decay). Empty: all train.
    """

    name: str
    steps: int
    nodes: tuple[int, int] = (8, 16)
    fan_in: tuple[int, ...] = (1, 2, 3)
    modulus: int | None = None
    leaf_values: int | None = None
    zero_leaves: float = 0.0
    operand_lookup: float = 0.0
    depth_cap: int | None = 6
    lr: float | None = None
    corruption_prob: float | None = None
    hubs: float = 0.0
    max_fan_out: int = 12
    lookup_temperature: float = 1.0
    lookup_margin: float | None = None
    lookup_attention: float = 0.0
    train_only: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "fan_in", tuple(self.fan_in))
        object.__setattr__(self, "train_only", tuple(self.train_only))
        if self.steps < 1 or len(self.nodes) != 2 or not 6 < self.nodes[0] <= self.nodes[1]:
            raise WorkbenchError(f"phase {self.name!r}: steps must be positive and nodes a range [lo, hi] with 6 < lo <= hi")
        if not 0.0 <= self.zero_leaves <= 1.0:
            raise WorkbenchError(f"phase {self.name!r}: zero_leaves must lie in [0, 1]")
        if not self.lookup_temperature > 0 or not (self.lookup_margin is None or self.lookup_margin > 0):
            raise WorkbenchError(f"phase {self.name!r}: lookup_temperature and lookup_margin must be positive")
        if self.lookup_margin is not None and not (self.operand_lookup > 0 or self.lookup_attention > 0):
            raise WorkbenchError(f"phase {self.name!r}: lookup_margin shapes the lookup losses; set operand_lookup or lookup_attention > 0")
        if self.lookup_attention < 0:
            raise WorkbenchError(f"phase {self.name!r}: lookup_attention must not be negative")
        if not 0.0 <= self.hubs <= 1.0 or self.max_fan_out < 2:
            raise WorkbenchError(f"phase {self.name!r}: hubs must lie in [0, 1] and max_fan_out be at least 2")
        if not self.fan_in or any(k not in (1, 2, 3) for k in self.fan_in):
            raise WorkbenchError(f"phase {self.name!r}: fan_in entries must be 1, 2 or 3")


@dataclass(frozen=True, kw_only=True)
class PhasedRun:
    """What every training config shares (the looped models' ``TrainConfig``, chain-of-thought's): the task,
    curriculum phases, optimizer basics, schedules of logs, evaluations and checkpoints, a run folder, an
    export folder, and reading itself from a dict. Subclasses add ``model`` and ``phases`` fields and name
    their model config (``MODEL``), phase (``PHASE``), the word for their errors (``LABEL``) and the
    settings that must be at least 1 (``COUNTS``)."""

    MODEL: ClassVar[type]
    PHASE: ClassVar[type]
    LABEL: ClassVar[str] = "training"
    COUNTS: ClassVar[tuple[str, ...]] = ("batch_graphs", "log_every", "eval_every", "eval_count", "checkpoint_every")

    name: str
    task: TaskConfig = field(default_factory=TaskConfig)
    seed: int = 0
    out: str = "runs/{name}"
    export: str | None = "models/{name}"
    batch_graphs: int = 32
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    log_every: int = 25
    eval_every: int = 500
    eval_sizes: tuple[int, ...] = (16, 32)
    eval_count: int = 64
    checkpoint_every: int = 200
    threads: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "phases", tuple(self.phases))
        object.__setattr__(self, "eval_sizes", tuple(self.eval_sizes))
        if not self.phases:
            raise WorkbenchError("training config needs at least one [[phases]] entry")

    def lr_at(self, step: int) -> float:
        """The learning rate of step ``step``: linear warm-up to the phase's rate (or the run's), then constant."""
        base = self.phase_at(step).lr or self.lr
        return base * min(1.0, (step + 1) / max(1, self.warmup_steps))

    def check_counts(self) -> None:
        """Every setting in ``COUNTS`` is at least 1 (a zero would divide, or never log or save)."""
        bad = [name for name in self.COUNTS if getattr(self, name) < 1]
        if bad:
            raise WorkbenchError(f"{', '.join(bad)} must be at least 1")

    @property
    def total_steps(self) -> int:
        return sum(p.steps for p in self.phases)

    @property
    def out_dir(self) -> Path:
        return Path(self.out.format(name=self.name))

    @property
    def export_dir(self) -> Path | None:
        return Path(self.export.format(name=self.name)) if self.export else None

    def phase_at(self, step: int):
        """The phase that step ``step`` (0-based) belongs to."""
        end = 0
        for phase in self.phases:
            end += phase.steps
            if step < end:
                return phase
        return self.phases[-1]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model"], d["task"] = self.model.to_dict(), self.task.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise WorkbenchError(f"unknown {cls.LABEL} config keys {sorted(unknown)}; known: {sorted(known)}")
        d = dict(d)
        try:
            d["model"] = cls.MODEL.from_dict(d.get("model", {}))
            d["task"] = TaskConfig.from_dict(d.get("task", {}))
            d["phases"] = tuple(cls.PHASE(**p) for p in d.get("phases", []))
            return cls(**d)
        except TypeError as exc:
            raise WorkbenchError(f"bad {cls.LABEL} config: {exc}") from None


@dataclass(frozen=True, kw_only=True)
class TrainConfig(PhasedRun):
    """A whole training run; ``workbench train --config F`` reads it, ``--resume`` continues it.

    init: a model (name or folder) whose weights start the run instead of a random draw, with a fresh
        optimizer: fine-tuning a shipped model costs minutes where its recipe costs hours. Parameters
        the model lacks (a mechanism this config adds, e.g. ``role_embedding``) keep their initial
        values; anything else must match exactly. Phases count their steps from 0.
    """

    MODEL: ClassVar[type] = ModelConfig
    PHASE: ClassVar[type] = Phase
    COUNTS: ClassVar[tuple[str, ...]] = PhasedRun.COUNTS + ("steps_per_graph", "unroll_cap")

    init: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    phases: tuple[Phase, ...] = ()
    steps_per_graph: int = 2
    value_weight: float = 4.0
    unroll_cap: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        top = max(p.modulus or self.task.modulus for p in self.phases)
        if top > self.task.value_codes:
            raise WorkbenchError(f"a phase uses modulus {top} but the task has only {self.task.value_codes} value codes; set task.n_values >= {top}")
        # what the graph sampler would otherwise reject mid-run, with a traceback
        names, codes = self.task.n_names, self.task.value_codes
        for p in self.phases:
            if p.nodes[1] > names:
                raise WorkbenchError(f"phase {p.name!r}: graphs of up to {p.nodes[1]} nodes need task.n_names >= {p.nodes[1]}, got {names}")
            if max(p.fan_in) > self.task.max_fan_in:
                raise WorkbenchError(f"phase {p.name!r}: fan_in {max(p.fan_in)} exceeds task.max_fan_in {self.task.max_fan_in}")
            if p.leaf_values is not None and not 1 <= p.leaf_values <= codes:
                raise WorkbenchError(f"phase {p.name!r}: leaf_values must lie in 1..{codes} (the task's value codes)")
        if any(not 7 <= n <= names for n in self.eval_sizes):
            raise WorkbenchError(f"eval_sizes {list(self.eval_sizes)}: every size must lie in 7..{names} (6 leaves plus one node; task.n_names)")
        self.check_counts()


MERGED_SECTIONS = ("model", "task")  # tables a derived config amends key by key; every other key replaces


def read_config_file(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file's settings with its ``base`` chain resolved.

    ``base = "../default/train.toml"`` (relative to the file) starts from another config: the
    ``[model]`` and ``[task]`` tables are amended key by key, any other key (``phases`` included) is
    replaced. An ablation thus states only what it changes, and it can never drift from the recipe
    it ablates.
    """
    if not path.is_file():
        where = f" (the base of '{_seen[-1]}')" if _seen else ""
        raise WorkbenchError(f"training config '{path}'{where} does not exist")
    if path.resolve() in _seen:
        raise WorkbenchError(f"training config '{path}' is its own base (a cycle through {[str(p) for p in _seen]})")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise WorkbenchError(f"cannot parse training config '{path}': {exc}") from None
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise WorkbenchError(f"training config '{path}': 'base' must be a path string, got {base!r}")
    merged = read_config_file(path.parent / base, (*_seen, path.resolve()))
    for key, value in data.items():
        if key in MERGED_SECTIONS and isinstance(value, dict):
            merged[key] = {**merged.get(key, {}), **value}
        else:
            merged[key] = value
    return merged


def load_train_config(path: str | Path) -> TrainConfig:
    """Read a TOML or JSON training config (with its ``base`` chain); WorkbenchError with the reason if it is unreadable."""
    return TrainConfig.from_dict(read_config_file(Path(path)))
