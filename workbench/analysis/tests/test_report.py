"""The results page from committed result files: the numbers it shows, whichever summary format the files hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbench.analysis.comparison import comparison, fmt_percent, status_line, synthesis, trained_for
from workbench.analysis.report import ANALYSES, write_page
from workbench.analysis.results import jsonable, load_result
from workbench.analysis.summary import summary_of

PROBES = Path(__file__).resolve().parents[3] / "models" / "default" / "probes"
pytestmark = pytest.mark.skipif(not all((PROBES / f"{a}.json").is_file() for a in ANALYSES),
                                reason="models/default lacks some analysis results")


def committed() -> dict[str, dict]:
    return {a: load_result(PROBES / f"{a}.json") for a in ANALYSES}


def with_fields(result: dict) -> dict:
    """The result as a current run writes it: readable labels plus the typed fields."""
    s = summary_of(result)
    return json.loads(json.dumps({**result, "summary": jsonable(s.labels()), "fields": jsonable(s.fields())}))


def page(results: dict, folder: Path) -> str:
    doc = write_page({"default": results}, folder / "results.md", folder / "results", sources={"default": PROBES})
    return doc.read_text()


def test_page_shows_the_committed_numbers(tmp_path):
    text = page(committed(), tmp_path)
    assert "one-step repair of 1 injected error: 100.0 % — **agrees**" in text
    assert "L0 MLP relative change 2.06 — **differs**" in text
    assert "Fully solved at the fixed point / with the oracle stop: N=8 1.000 / 1.000; N=16 1.000 / 1.000; " \
           "N=32 1.000 / 1.000; N=64 1.000 / 0.859." in text
    assert "44 value codes are never written" in text
    assert "L1 gather heads: 0 (v1) [used, alone 0.57, group 0.97]" in text
    assert "| one-step repair (k=1, mean over t) | 1.000 |" in text  # the numbers table keeps the labels
    assert (tmp_path / "results" / "default" / "correction.stepwise.png").is_file()


def test_page_is_the_same_from_files_with_fields(tmp_path):
    """Same page; only the numbers tables may list their rows in another order (field by field)."""
    old = page(committed(), tmp_path / "old").splitlines()
    new = page({a: with_fields(r) for a, r in committed().items()}, tmp_path / "new").splitlines()
    assert [x for x in new if not x.startswith("| ")] == [x for x in old if not x.startswith("| ")]
    assert sorted(new) == sorted(old)


def test_comparison_and_synthesis_read_the_typed_summaries():
    res = committed()
    rows = {finding: (ours, verdict) for finding, _, ours, verdict in comparison(res)}
    assert rows["Layer-1 MLP nearly inert"] == ("L0 MLP relative change 2.06", "differs")
    assert rows["One-step error correction"] == ("one-step repair of 1 injected error: 100.0 %", "agrees")
    assert any("first becomes decodable at L1.post (1.00; lens)" in b for b in synthesis(res))


def test_training_status_of_a_finished_and_a_partial_model():
    done = {"name": "m", "training": {"finished": True}}
    assert trained_for(done)["error_correction"] and status_line(done) == "`m`: fully trained."
    partial = {"name": "m", "modulus": 23, "training": {"steps": 10, "total_steps": 100, "phase": "copy",
                                                        "phases": ["copy", "error-correction"],
                                                        "phase_info": {"fan_in": [1], "nodes": [4], "modulus": 23}}}
    assert trained_for(partial) == {"finished": False, "addition2": False, "addition3": False, "error_correction": False}
    assert "PARTIALLY TRAINED" in status_line(partial) and fmt_percent(0.859) == "85.9 %"
