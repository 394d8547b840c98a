"""Typed headline numbers: each analysis' summary is a frozen dataclass with one labelled field per number.

An analysis' ``run`` returns ``(results, summary)`` with ``summary`` its ``Summary`` subclass, defined here so
the page and the app read them without loading any analysis (``CorrectionSummary``, also importable from
``correction``, ...); code reads its fields (``summary.one_step_repair``), people read its labels. The JSON
envelope keeps both views: ``"summary"`` {label: value} (the app, the results page's number tables) and
``"fields"`` {name: value}. ``summary_of(result)`` reads a result's summary back from either, so result files
written before ``"fields"`` existed (labels only) still load.

A field's label is a template: ``"one-step repair (k=1, mean over t)"``; a per-key field (a dict) puts its key
at ``{}`` (``"N={} corrections per node"``), and ``{name}`` is another field's value. ``show`` formats a value
for its label (``(1.0, 0.859)`` -> ``"1.000 / 0.859"``), ``parse`` reads that text back.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from workbench.errors import WorkbenchError

def labelled(label: str | None, *, show: Callable | None = None, parse: Callable | None = None,
             optional: bool = False) -> Any:
    """A summary field shown as ``label``; ``optional`` fields default to None and are left out of the labels then.

    ``label`` None: a field that only fills other fields' labels.
    """
    meta = {"label": label, "show": show, "parse": parse}
    return field(default=None, metadata=meta) if optional else field(metadata=meta)


def per_key(label: str, *, key: type = str, show: Callable | None = None, parse: Callable | None = None,
            key_pattern: str | None = None) -> Any:
    """A summary field holding one value per key (per N, layer, task...), one label each: ``label.format(key)``.

    ``key_pattern``: the regex a key matches when a label is read back (default: an integer, or no spaces).
    """
    return field(default_factory=dict, metadata={"label": label, "show": show, "parse": parse, "key": key,
                                                  "key_pattern": key_pattern})


def joined(sep: str = ", ", empty: str = "", digits: int | None = None) -> tuple[Callable, Callable]:
    """``(show, parse)`` for a tuple shown as one string: ``sep``-joined, ``empty`` when it has no item.

    >>> show, parse = joined(" ", digits=2)
    >>> show((0.5, 0.25)), parse("0.50 0.25")
    ('0.50 0.25', (0.5, 0.25))
    """
    def show(items) -> str:
        return sep.join(str(x) if digits is None else f"{x:.{digits}f}" for x in items) or empty

    def parse(text: str) -> tuple:
        items = () if text == empty else tuple(text.split(sep))
        return items if digits is None else tuple(float(x) for x in items)

    return show, parse


@dataclass(frozen=True, kw_only=True)
class Summary:
    """Base of every analysis' summary: labels for people, fields for code, both ways through JSON."""

    analysis = ""  # the analysis' name (a class attribute, not a field)

    def label(self, name: str, key: Any = None) -> str:
        """The label of field ``name`` (of its entry ``key``, for a per-key field)."""
        f = next(f for f in dataclasses.fields(self) if f.name == name)
        names = {g.name: getattr(self, g.name) for g in dataclasses.fields(self) if "key" not in g.metadata}
        return f.metadata["label"].format(key, **names)

    def shown(self, name: str, key: Any = None) -> Any:
        """Field ``name`` (its entry ``key``) as its label shows it: ``(1.0, 0.859)`` -> ``"1.000 / 0.859"``."""
        f = next(f for f in dataclasses.fields(self) if f.name == name)
        value = getattr(self, name) if key is None else getattr(self, name)[key]
        return f.metadata["show"](value) if f.metadata["show"] is not None and value is not None else value

    def labels(self) -> dict[str, Any]:
        """{label: shown value}: the readable summary (the envelope's ``"summary"``)."""
        names = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if "key" not in f.metadata}
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            label, show, value = f.metadata["label"], f.metadata["show"], getattr(self, f.name)
            if label is None:
                continue
            items = value.items() if "key" in f.metadata else [(None, value)]
            for key, v in items:
                if v is None and "key" not in f.metadata and f.default is None:
                    continue  # an optional number this run did not measure
                out[label.format(key, **names)] = show(v) if show is not None and v is not None else v
        return out

    def fields(self) -> dict[str, Any]:
        """{field name: value}: the summary for code (the envelope's ``"fields"``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_fields(cls, fields: dict[str, Any]):
        """The summary from its ``"fields"`` JSON (dict keys back to their type, lists to tuples)."""
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in fields:
                continue
            value = fields[f.name]
            if "key" in f.metadata:
                value = {f.metadata["key"](k): _tuples(v) for k, v in (value or {}).items()}
            kwargs[f.name] = _tuples(value)
        return cls(**kwargs)

    @classmethod
    def from_labels(cls, labels: dict[str, Any]):
        """The summary from a readable ``"summary"`` {label: value} alone (result files from before ``"fields"``)."""
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            label, parse = f.metadata["label"], f.metadata["parse"]
            if label is None:
                continue
            pattern = _pattern(label, f.metadata.get("key"), f.metadata.get("key_pattern"))
            for text, v in labels.items():
                m = pattern.fullmatch(text)
                if m is None:
                    continue
                for name, found in m.groupdict().items():
                    if name != "key":
                        kwargs.setdefault(name, _typed(cls, name, found))
                v = parse(v) if parse is not None and isinstance(v, str) else _tuples(v)
                if "key" in f.metadata:
                    kwargs.setdefault(f.name, {})[f.metadata["key"](m.group("key"))] = v
                else:
                    kwargs[f.name] = v
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise WorkbenchError(f"a {cls.analysis} summary lacks a number: {exc}") from None


def _pattern(label: str, key: type | None, key_pattern: str | None = None) -> re.Pattern:
    """The regex a label template matches: ``{}`` the key, ``{name}`` another field's value."""
    parts = re.split(r"(\{\w*\})", label)
    out = []
    for p in parts:
        if p == "{}":
            out.append("(?P<key>" + (key_pattern or (r"-?\d+" if key is int else r"\S+")) + ")")
        elif re.fullmatch(r"\{\w+\}", p):
            out.append(rf"(?P<{p[1:-1]}>[^\s)]+)")
        else:
            out.append(re.escape(p))
    return re.compile("".join(out))


def _typed(cls, name: str, text: str):
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return int(text) if str(f.type).split(" ")[0] in ("int", "<class 'int'>") else text


def _tuples(x):
    if isinstance(x, list):
        return tuple(_tuples(v) for v in x)
    return x


# ------------------------------------------------------------------------------------ the analyses' summaries
_SHOW_USED, _PARSE_USED = joined(", ", empty="no point")
_SHOW_POINTS, _PARSE_POINTS = joined(", ")
_SHOW_RANGE, _PARSE_RANGE = joined("-", digits=2)
_SHOW_FACTORS, _PARSE_FACTORS = joined(" ")
_SHOW_SHARES, _PARSE_SHARES = joined(" ", digits=2)
_SHOW_PAIR, _PARSE_PAIR = joined(" / ", digits=3)


@dataclass(frozen=True, kw_only=True)
class ProbesSummary(Summary):
    """Per task (``value@rhs``, ...): accuracy after the last layer (mean over steps), baselines, selectivity, use."""

    analysis = "probes"
    acc: dict[str, float] = per_key("{} acc")
    majority: dict[str, float] = per_key("{} majority")
    random_init_acc: dict[str, float] = per_key("{} random-init acc")
    selectivity_name: dict[str, float] = per_key("{} selectivity (name)")
    selectivity_shuffle: dict[str, float] = per_key("{} selectivity (shuffle)")
    #: {value task: residual points where projecting the probe out costs accuracy (the model uses it)}
    used_at: dict[str, tuple[str, ...]] = per_key("{} probe used by the model at", show=_SHOW_USED, parse=_PARSE_USED)
    #: {value task: points where the probe decodes but projecting it out costs nothing}
    idle_at: dict[str, tuple[str, ...]] = per_key("{} probe decodes but is not used at", show=_SHOW_POINTS,
                                                  parse=_PARSE_POINTS)
    #: tasks probed as well on a random-weight model (None: none)
    same_as_random: tuple[str, ...] | None = labelled("probes no better than on random weights", optional=True,
                                                      show=_SHOW_POINTS, parse=_PARSE_POINTS)


@dataclass(frozen=True, kw_only=True)
class LensSummary(Summary):
    """The lens in four numbers: the last point's accuracy, where values first become decodable."""

    analysis = "lens"
    #: [point] value accuracy at the step that should compute a node (step = depth), mean over depths
    acc_at_depth_by_point: tuple[float, ...] | None = labelled("value acc at step = depth, by point", optional=True)
    last_acc: float = labelled("value acc, last point, last step")
    first_point_agreement: float = labelled("value agreement with output at L0.pre (mean over steps)")
    never_decoded: float = labelled("never decoded")


@dataclass(frozen=True, kw_only=True)
class RoutingSummary(Summary):
    """Which heads serve each role (with their causal verdicts), the largest masses, and the path test."""

    analysis = "routing"
    #: {layer: the role's heads, e.g. "2 (v1) [used, alone 0.42, group 0.85], ..."}
    lookup_heads: dict[int, str] = per_key("L{} lookup heads", key=int)
    gather_heads: dict[int, str] = per_key("L{} gather heads", key=int)
    induction_heads: dict[int, str] = per_key("L{} induction heads", key=int)
    max_operand_lookup: float = labelled("max operand_lookup")
    max_gather: float = labelled("max gather")
    max_induction: float = labelled("max induction")
    #: the path test (when the model has lookup heads): frontier accuracy with them ablated where named
    lookup_ablated_at_operands: float | None = labelled("lookup heads ablated at operand tokens only (frontier acc)",
                                                        optional=True)
    lookup_ablated_elsewhere: float | None = labelled("lookup heads ablated elsewhere only (frontier acc)", optional=True)
    clean_frontier_acc: float | None = labelled("clean frontier acc", optional=True)

    def role_heads(self) -> dict[str, dict[int, str]]:
        """{role: {layer: heads}} for the roles that have heads."""
        every = {"lookup": self.lookup_heads, "gather": self.gather_heads, "induction": self.induction_heads}
        return {role: heads for role, heads in every.items() if heads}


@dataclass(frozen=True, kw_only=True)
class AttributionSummary(Summary):
    """The template experiment's accuracy per fan-in, the head groups it implies, each head's top OV factor."""

    analysis = "attribution"
    #: {fan-in: share of template results written right}
    accuracy: dict[int, float] = per_key("k={} accuracy", key=int)
    #: {fan-in: (lowest, highest) accuracy over the base graphs}
    accuracy_range: dict[int, tuple[float, float]] = per_key("k={} accuracy range over base graphs", key=int,
                                                             show=_SHOW_RANGE, parse=_PARSE_RANGE)
    #: {layer: the head groups by operand slot at the largest fan-in, e.g. "v0: [1, 4]; v2: [6]"}
    groups: dict[int, str] = per_key("L{} groups (k={groups_fan_in})", key=int)
    groups_fan_in: int | None = labelled(None, optional=True)
    #: {layer: (each head's top OV factor, first three letters)}
    ov_top: dict[int, tuple[str, ...]] = per_key("L{} OV top factor per head", key=int, show=_SHOW_FACTORS,
                                                 parse=_PARSE_FACTORS)


@dataclass(frozen=True, kw_only=True)
class MlpSummary(Summary):
    """Each MLP's contribution and ablation cost, and the Fourier shares of the analysed (last) MLP over Z_p^3."""

    analysis = "mlp"
    #: {layer: mean relative L2 change of the residual by the MLP}
    rel_change: dict[int, float] = per_key("L{} MLP rel. change", key=int)
    #: {layer: frontier accuracy lost by mean-ablating the MLP}
    ablation_drop: dict[int, float] = per_key("L{} MLP mean-ablation frontier drop", key=int)
    clean_frontier_acc: float = labelled("clean frontier acc")
    sweep_accuracy: float = labelled("sweep accuracy (a+b+c)")
    pre_bias_share: float = labelled("pre: bias share")
    #: {stage (post, out, logits): the share of power at the diagonal frequencies (a, a, a)}
    diagonal_share: dict[str, float] = per_key("{}: diagonal share")
    #: (v0, v1, v2): the value logits' power on each operand's own axis
    logits_axis_share: tuple[float, ...] = labelled("logits: axis share per operand (v0, v1, v2)", show=_SHOW_SHARES,
                                                    parse=_PARSE_SHARES)


@dataclass(frozen=True, kw_only=True)
class CodebookSummary(Summary):
    """What the bottleneck writes: unused and spare value codes, value transitions per node, invalid combinations."""

    analysis = "codebook"
    unused_value_codes: int = labelled("value codes unused")
    spare_value_share: float = labelled("spare value codes (>= p), max share of positions")
    value_entropy: float = labelled("value entropy, last step (bits)")
    #: {kind: value changes per node over all steps}: "corrections (wrong->right)", "new errors (right->wrong)",
    #: "empty->right", "empty->wrong"
    transitions: dict[str, float] = per_key("{}, all steps", key_pattern=r"[^,]+")
    max_invalid_rate: float = labelled("max invalid rate")


@dataclass(frozen=True, kw_only=True)
class CorrectionSummary(Summary):
    """Solved shares per graph size, and how one injected error is repaired (k = 1, mean over injection steps)."""

    analysis = "correction"
    #: {N: (solved at the fixed point, solved with the oracle stop)}
    solved: dict[int, tuple[float, float]] = per_key("N={} solved (fixed point / oracle)", key=int, show=_SHOW_PAIR,
                                                     parse=_PARSE_PAIR)
    corrections_per_node: dict[int, float] = per_key("N={} corrections per node", key=int)
    one_step_repair: float = labelled("one-step repair (k=1, mean over t)")
    eventual_repair: float = labelled("eventual repair (k=1, mean over t)")
    ends_as_clean: float = labelled("run ends as clean (k=1, mean over t)")
    #: {compared model: its one-step repair}
    compare_one_step_repair: dict[str, float] = per_key("{}: one-step repair (k=1)")


@dataclass(frozen=True, kw_only=True)
class PatchingSummary(Summary):
    """How much of the clean run patching restores: the sanity check, the largest effect, each sublayer's mean."""

    analysis = "patching"
    nodes_differing: int = labelled("nodes differing at the end")
    state_patch_effect: float | None = labelled("state patch final effect (sanity, = 1)")
    largest_step_effect: str | None = labelled("largest step effect", optional=True)
    #: {layer: mean step effect of patching the whole MLP (attention) output}
    mlp_effect: dict[int, float | None] = per_key("L{} mlp mean step effect", key=int)
    attn_effect: dict[int, float | None] = per_key("L{} attn mean step effect", key=int)


#: result["analysis"] -> its summary class
SUMMARIES: dict[str, type[Summary]] = {cls.analysis: cls for cls in (
    ProbesSummary, LensSummary, RoutingSummary, AttributionSummary, MlpSummary, CodebookSummary, CorrectionSummary,
    PatchingSummary)}


def summary_class(analysis: str) -> type[Summary]:
    """The ``Summary`` subclass of an analysis (``"correction"`` -> ``CorrectionSummary``)."""
    if analysis not in SUMMARIES:
        raise WorkbenchError(f"no summary for analysis {analysis!r}; known: {sorted(SUMMARIES)}")
    return SUMMARIES[analysis]


def summary_of(result: dict) -> Summary:
    """A result's summary as its typed dataclass: from ``"fields"``, or from the labels of an older file.

    >>> old = {"analysis": "lens", "summary": {"value acc, last point, last step": 1.0, "never decoded": 0.0,
    ...        "value agreement with output at L0.pre (mean over steps)": 0.66}}
    >>> summary_of(old).never_decoded
    0.0
    """
    cls = summary_class(result.get("analysis", ""))
    if result.get("fields") is not None:
        return cls.from_fields(result["fields"])
    return cls.from_labels(result.get("summary") or {})


__all__ = ["Summary", "labelled", "per_key", "joined", "ProbesSummary", "LensSummary", "RoutingSummary",
           "AttributionSummary", "MlpSummary", "CodebookSummary", "CorrectionSummary", "PatchingSummary", "SUMMARIES",
           "summary_class", "summary_of"]
