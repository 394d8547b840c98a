"""Result files: the JSON envelope, NaN as null, figures from the JSON alone."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from workbench.analysis.results import as_array, figures_for, jsonable, load_result, make_result, save_result
from workbench.errors import WorkbenchError
from workbench.plots.analysis import Figure, Heatmap, Lines, save_png, to_plotly


def test_envelope_round_trip_without_nan(model, tmp_path):
    result = make_result("routing", "Attention routing", model, {"seed": 0}, {"x": np.array([1.0, np.nan])},
                         {"a": np.float32(0.5)}, 1.0)
    text = json.dumps(result, allow_nan=False)  # strict JSON
    assert json.loads(text)["results"]["x"] == [1.0, None]
    assert math.isnan(as_array(result["results"]["x"])[1])
    path = save_result(result, tmp_path, plots=False)
    assert load_result(path)["summary"] == {"a": 0.5}
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(WorkbenchError):
        load_result(tmp_path / "bad.json")


def test_figure_specs_render_with_both_backends(tmp_path):
    fig = Figure("demo", "demo", [Heatmap("h", [[0.1, None], [0.3, 0.4]], ["a", "b"], [0, 1]),
                                  Lines("l", [0, 1, 2], {"x": [0.1, None, 0.3]}, dashed=("x",))])
    assert len(to_plotly(fig).data) == 2
    save_png(fig, tmp_path / "demo.png")
    assert (tmp_path / "demo.png").stat().st_size > 1000
    assert figures_for({"analysis": "unknown"}) == []
    assert jsonable({"k": (1, np.int8(2))}) == {"k": [1, 2]}
