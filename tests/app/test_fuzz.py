"""Every callback of the app, fuzzed through Dash's HTTP interface: no 500, no traceback, ever.

A browser sends what its components hold, but a stale tab, an extension or a hand-made request can
send anything: wrong types, huge values, missing fields. Each callback must answer with its outputs,
a 204 (nothing to update) or a one-line 400 for a request Dash cannot dispatch.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.xdist_group("app")

JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False)
                    | st.text(max_size=40), lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=8)
#: values that reach deep into the code paths: real-looking run keys, clicks, nodes
PLAUSIBLE = st.sampled_from([0, 1, 5, 127, -1, 10**9, "default", "tiny", "a = 3\nb = a + a", "",
                             {"model": "tiny", "text": "a = 3\nb = a", "seed": 0},
                             {"model": "tiny", "text": "a = 3\nb = c", "seed": 0},
                             {"model": "nope", "text": "a = 3", "seed": 0},
                             {"model": "tiny", "text": "a = 3", "seed": -5},
                             {"points": [{"customdata": 2}]}, {"points": []}, {"points": "x"}])
VALUES = JSON | PLAUSIBLE


def ours(spec: dict):
    """The function the app registered (Dash wraps it), or None for Dash's own page router."""
    fn = spec.get("callback")
    fn = getattr(fn, "__wrapped__", fn)
    return fn if fn is not None and getattr(fn, "__module__", "").startswith("app") else None


def callbacks(dash_app) -> list[tuple[str, dict]]:
    """Every server-side callback the app registered (Dash registers them at the first request)."""
    if not dash_app.callback_map:
        dash_app.server.test_client().get("/_dash-layout")
    return sorted((out, spec) for out, spec in dash_app.callback_map.items() if ours(spec) is not None)


def test_every_callback_goes_through_the_one_guard(dash_app):
    unguarded = [out for out, spec in callbacks(dash_app) if not getattr(ours(spec), "workbench_guard", False)]
    assert len(callbacks(dash_app)) >= 25 and unguarded == []


def payload(output: str, spec: dict, values: list, drop: int | None) -> dict:
    deps = [*spec["inputs"], *spec.get("state", [])]
    filled = [{"id": d["id"], "property": d["property"], "value": v} for d, v in zip(deps, values)]
    if drop is not None and filled:
        filled[drop % len(filled)].pop("value")  # a missing field
    n_in = len(spec["inputs"])
    outputs = [{"id": o.split(".")[0], "property": o.split(".")[1].split("@")[0]} for o in output.strip(".").split("...")]
    return {"output": output, "outputs": outputs if len(outputs) > 1 else outputs[0], "inputs": filled[:n_in],
            "state": filled[n_in:], "changedPropIds": [f"{d['id']}.{d['property']}" for d in deps[:1]]}


def test_no_payload_makes_a_callback_fail_with_500_or_a_traceback(client, dash_app):
    """Each callback in turn, 24 payloads each (hypothesis shrinks a failure to its smallest payload)."""
    for output, spec in callbacks(dash_app):
        n = len(spec["inputs"]) + len(spec.get("state", []))

        @settings(max_examples=24, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
        @given(values=st.lists(VALUES, min_size=n, max_size=n), drop=st.none() | st.integers(0, 8))
        def fuzz(values, drop):
            response = client.post("/_dash-update-component", json=payload(output, spec, values, drop))
            body = response.get_data(as_text=True)
            # a well-formed request reaches the callback, whose guard must answer it; only a request with
            # a missing field may be refused by Dash itself (then 400, one line)
            allowed = (200, 204) if drop is None else (200, 204, 400)
            assert response.status_code in allowed, (output, values, body[:300])
            assert "Traceback" not in body and 'File "' not in body
            if response.status_code == 400:
                assert "\n" not in json.loads(body)["error"]

        fuzz()


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"output": "x.y"}', b'{"output": "run.data", "inputs": 3}'])
def test_a_request_dash_cannot_dispatch_is_one_line_and_400(client, body):
    response = client.post("/_dash-update-component", data=body, content_type="application/json")
    assert response.status_code == 400 and "Traceback" not in response.get_data(as_text=True)
