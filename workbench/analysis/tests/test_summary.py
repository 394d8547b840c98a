"""Typed summaries: labels for people, fields for code, and the result files written before fields existed."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError, dataclass
from pathlib import Path

import pytest

from workbench.analysis.results import jsonable, load_result, make_result, save_result
from workbench.analysis.summary import (SUMMARIES, Summary, joined, labelled, per_key, summary_class,
                                        summary_of)
from workbench.errors import WorkbenchError

MODELS = Path(__file__).resolve().parents[3] / "models"
COMMITTED = sorted(MODELS.glob("*/probes/*.json"))

_SHOW, _PARSE = joined(" / ", digits=3)


@dataclass(frozen=True, kw_only=True)
class Demo(Summary):
    analysis = "demo"
    repair: float = labelled("one-step repair (k=1)")
    solved: dict[int, tuple[float, float]] = per_key("N={} solved (fixed point / oracle)", key=int, show=_SHOW,
                                                     parse=_PARSE)
    groups: dict[int, str] = per_key("L{} groups (k={fan_in})", key=int)
    fan_in: int | None = labelled(None, optional=True)
    note: str | None = labelled("note", optional=True)


DEMO = Demo(repair=0.5, solved={8: (1.0, 0.859)}, groups={0: "v0: [1]"}, fan_in=3)


def test_labels_fill_keys_and_other_fields_and_leave_out_unmeasured_optionals():
    assert DEMO.labels() == {"one-step repair (k=1)": 0.5, "N=8 solved (fixed point / oracle)": "1.000 / 0.859",
                             "L0 groups (k=3)": "v0: [1]"}
    assert DEMO.label("solved", 8) == "N=8 solved (fixed point / oracle)" and DEMO.shown("solved", 8) == "1.000 / 0.859"
    with pytest.raises(FrozenInstanceError):
        DEMO.repair = 1.0  # type: ignore[misc]


def test_labels_parse_back_into_the_same_summary():
    assert Demo.from_labels(DEMO.labels()) == DEMO


def test_fields_survive_json():
    text = json.dumps(jsonable(DEMO.fields()))
    assert json.loads(text)["solved"] == {"8": [1.0, 0.859]}
    assert Demo.from_fields(json.loads(text)) == DEMO


def test_labels_missing_a_required_number_are_a_user_error():
    with pytest.raises(WorkbenchError, match="lacks a number"):
        Demo.from_labels({"note": "x"})


def test_joined_shows_an_empty_tuple_as_its_word():
    show, parse = joined(", ", empty="no point")
    assert show(()) == "no point" and parse("no point") == () and parse("L0.mid, L1.post") == ("L0.mid", "L1.post")


def test_every_analysis_names_its_summary_class():
    for name in SUMMARIES:
        cls = summary_class(name)
        assert issubclass(cls, Summary) and cls.analysis == name
    with pytest.raises(WorkbenchError):
        summary_class("not-an-analysis")


@pytest.mark.skipif(not COMMITTED, reason="no committed analysis results")
@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: f"{p.parents[1].name}/{p.name}")
def test_committed_result_files_read_as_typed_summaries(path):
    """Files written with labels only read into the typed summary, whose labels are the file's, value for value."""
    result = load_result(path)
    assert "fields" not in result  # written before fields existed: read from the labels
    s = summary_of(result)
    assert isinstance(s, summary_class(result["analysis"]))
    assert jsonable(s.labels()) == result["summary"]
    again = {**result, "fields": json.loads(json.dumps(jsonable(s.fields())))}
    assert summary_of(again) == s


def test_committed_default_numbers_come_out_as_fields():
    if not (MODELS / "default" / "probes" / "correction.json").is_file():
        pytest.skip("models/default has no analysis results")
    read = lambda name: summary_of(load_result(MODELS / "default" / "probes" / f"{name}.json"))  # noqa: E731
    assert read("correction").one_step_repair == 1.0 and read("correction").solved[64] == (1.0, 0.859)
    assert read("mlp").rel_change[0] == pytest.approx(2.0627)
    assert read("codebook").unused_value_codes == 44
    assert read("routing").gather_heads[1].startswith("0 (v1) [used")
    assert set(read("routing").role_heads()) == {"lookup", "gather"}  # roles without heads left out
    assert read("probes").used_at["value@rhs"] == () and read("attribution").groups_fan_in == 3


def test_envelope_of_a_typed_summary_keeps_labels_and_fields(model, tmp_path):
    from workbench.analysis.correction import CorrectionSummary

    s = CorrectionSummary(solved={8: (1.0, 0.5)}, corrections_per_node={8: 0.0}, one_step_repair=0.75,
                          eventual_repair=1.0, ends_as_clean=1.0)
    path = save_result(make_result("correction", "Error correction", model, {}, {}, s, 1.0), tmp_path, plots=False)
    data = load_result(path)
    assert data["summary"]["one-step repair (k=1, mean over t)"] == 0.75
    assert data["summary"]["N=8 solved (fixed point / oracle)"] == "1.000 / 0.500"
    assert data["fields"]["solved"] == {"8": [1.0, 0.5]}
    assert summary_of(data) == s
