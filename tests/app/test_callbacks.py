"""Callbacks without a browser, through Dash's HTTP interface (``POST /_dash-update-component``)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from app import saved, state as S

pytestmark = pytest.mark.xdist_group("app")

SMALL = "a = 3\nb = 4\nc = a + b\nd = c + a\ne = d"


def call(client, outputs, inputs, state=(), changed=()):
    """Fire one callback: ``outputs`` [(id, prop)], ``inputs``/``state`` [(id, prop, value)] -> the response JSON."""
    out = ".." + "...".join(f"{i}.{p}" for i, p in outputs) + ".." if len(outputs) > 1 else f"{outputs[0][0]}.{outputs[0][1]}"
    payload = {"output": out, "outputs": [{"id": i, "property": p} for i, p in outputs] if len(outputs) > 1
               else {"id": outputs[0][0], "property": outputs[0][1]},
               "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
               "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
               "changedPropIds": [f"{c}" for c in changed]}
    response = client.post("/_dash-update-component", json=payload)
    assert response.status_code in (200, 204), response.data[:500]
    return response.get_json() if response.status_code == 200 else None


def array(data) -> np.ndarray:
    """An array as plotly sends it: a list, or a typed array ``{"dtype", "bdata", "shape"}``."""
    if isinstance(data, dict) and "bdata" in data:
        shape = [int(n) for n in str(data.get("shape", "-1")).split(",")]
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=np.dtype(data["dtype"])).reshape(shape)
    return np.asarray(data)


def test_a_typo_in_a_pasted_problem_shows_its_line_and_no_traceback(client):
    got = call(client, [("run", "data"), ("problem-message", "children")],
               [("problem-submit", "n_clicks", 1), ("problem-generate", "n_clicks", None), ("problem-preset", "value", None)],
               [("problem-text", "value", "a = 3\nb = a +"), ("problem-model", "value", "default"),
                ("problem-size", "value", 16), ("problem-seed", "value", 0)], ["problem-submit.n_clicks"])
    text = json.dumps(got)
    assert "line 2: 'b = a +' ends with the operator '+'" in text and "Traceback" not in text
    assert "run" not in got["response"]  # the session's problem stays as it was


def test_generating_stores_a_small_key_and_rejects_big_sizes(client):
    ok = call(client, [("run", "data"), ("problem-message", "children")],
              [("problem-submit", "n_clicks", None), ("problem-generate", "n_clicks", 1), ("problem-preset", "value", None)],
              [("problem-text", "value", ""), ("problem-model", "value", "default"), ("problem-size", "value", 12),
               ("problem-seed", "value", 3)], ["problem-generate.n_clicks"])
    key = ok["response"]["run"]["data"]
    assert set(key) == {"model", "text", "seed"} and key["text"].count("\n") == 12
    bad = call(client, [("run", "data"), ("problem-message", "children")],
               [("problem-submit", "n_clicks", None), ("problem-generate", "n_clicks", 2), ("problem-preset", "value", None)],
               [("problem-text", "value", ""), ("problem-model", "value", "default"), ("problem-size", "value", 500),
                ("problem-seed", "value", 3)], ["problem-generate.n_clicks"])
    assert "from 7 to 128" in json.dumps(bad)


def test_scrubbing_patches_the_drawn_graph_and_redraws_a_new_one(client):
    key = S.make_key("default", SMALL)
    outputs = [("problem-dag", "figure"), ("problem-tokens", "children"), ("problem-drawn", "data")]
    inputs = lambda step: [("problem-step", "data", step), ("run", "data", key.to_json()), ("problem-init", "data", True),  # noqa: E731
                           ("node", "data", None), ("problem-message", "children", None)]
    first = call(client, outputs, inputs(0), [("problem-drawn", "data", None)], ["run.data"])
    assert first["response"]["problem-drawn"]["data"] == key.digest
    assert first["response"]["problem-dag"]["figure"]["data"][1]["name"] == "nodes"
    patched = call(client, outputs, inputs(2), [("problem-drawn", "data", key.digest)], ["problem-step.data"])
    fig = patched["response"]["problem-dag"]["figure"]
    assert fig.get("__dash_patch_update") and "State 2 of" in json.dumps(fig)


def test_an_unexpected_failure_shows_one_short_line(client, monkeypatch):
    def broken(key):
        raise RuntimeError("internal detail that must not reach the page")

    monkeypatch.setattr(S, "get_run", broken)
    got = call(client, [("codebook-usage", "figure"), ("codebook-transitions", "figure"), ("codebook-entropy", "figure"),
                        ("codebook-changes", "figure"), ("codebook-message", "children")],
               [("step", "value", 1), ("run", "data", {"model": "default", "text": SMALL, "seed": 0}),
                ("codebook-factor", "value", 3)], changed=["step.value"])
    text = json.dumps(got)
    assert "Something went wrong (RuntimeError)" in text and "internal detail" not in text


def test_injection_runs_on_both_models_side_by_side(client):
    key = S.make_key("default", SMALL)
    got = call(client, [("errors-report-a", "children"), ("errors-fig-a", "figure"), ("errors-report-b", "children"),
                        ("errors-fig-b", "figure"), ("errors-inject-message", "children")],
               [("errors-inject", "n_clicks", 1)],
               [("run", "data", key.to_json()), ("errors-state", "value", 1), ("errors-node", "value", 0),
                ("errors-value", "value", 5), ("errors-other", "value", "tiny")], ["errors-inject.n_clicks"])
    a, b = json.dumps(got["response"]["errors-report-a"]), json.dumps(got["response"]["errors-report-b"])
    assert "default: wrote a := 5 into state 1" in a and "Repaired:" in a
    assert "tiny: wrote a := 5 into state 1" in b


def test_the_probes_page_says_how_to_compute_missing_results(client):
    missing = json.dumps(call(client, [("probes-results", "children")], [("probes-model", "value", "default")]))
    assert "No probe results for model default yet" in missing and "probes/" in missing
    found = json.dumps(call(client, [("probes-results", "children")], [("probes-model", "value", "tiny")]))
    assert "A saved lens result" in found and "best step" in found


def test_the_generalization_page_draws_a_models_training_curves_or_says_it_has_none(client):
    got = call(client, [("generalization-training", "figure"), ("generalization-training-message", "children")],
               [("generalization-model", "value", "default")])["response"]
    names = [trace["name"] for trace in got["generalization-training"]["figure"]["data"]]
    assert names[:2] == ["main: loss", "main: lookup_loss"] and "main: N=32" in names
    assert got["generalization-training-message"]["children"] is None
    none = json.dumps(call(client, [("generalization-training", "figure"), ("generalization-training-message", "children")],
                           [("generalization-model", "value", "tiny")]))
    assert "Model tiny has no training log" in none and "Traceback" not in none


def test_every_page_is_served(client):
    for path in ("/", "/attention", "/codebook", "/errors", "/probes", "/generalization"):
        assert client.get(path).status_code == 200


def test_workbench_app_serves_the_app_and_rejects_unknown_models(app_models, tmp_path):
    """The README's command: ``workbench app`` answers on its port; a bad model name is one line, exit code 2."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    env = {**os.environ, "WORKBENCH_MODELS": str(app_models), "WORKBENCH_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}
    bad = subprocess.run([sys.executable, "-m", "workbench.cli", "app", "--model", "nope"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: unknown model 'nope'")
    assert "Traceback" not in bad.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "app", "--port", str(port)], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, page = time.monotonic() + 120, ""
        while time.monotonic() < deadline and not page:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.5)
        assert "Looped-transformer workbench" in page
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_run_that_stops_with_empty_slots_says_how_many_are_unsolved(client, monkeypatch):
    """A fixed point with EMPTY slots is not 'solved': the run info names the count (the fan-out failure)."""
    import dataclasses

    from workbench.run_view import RunView

    view = RunView.example()
    stuck = view.values.copy()
    stuck[3:, 2] = view.vocab.empty  # the last node never gets a value; the state stops changing anyway
    views = iter([dataclasses.replace(view, values=stuck), view])
    monkeypatch.setattr(S, "get_run", lambda key: next(views))
    got = call(client, [("step", "max"), ("step", "marks"), ("step", "value"), ("run-info", "children")],
               [("run", "data", S.make_key("default", SMALL).to_json())], changed=["run.data"])
    text = json.dumps(got["response"]["run-info"])
    assert "stopped with 1 variables unsolved (reached a fixed point)" in text
    complete = call(client, [("step", "max"), ("step", "marks"), ("step", "value"), ("run-info", "children")],
                    [("run", "data", S.make_key("default", SMALL).to_json())], changed=["run.data"])
    assert "unsolved" not in json.dumps(complete["response"]["run-info"])


def test_the_generalization_page_shows_a_models_robustness_table_or_how_to_make_one(client):
    outputs = [("generalization-robustness", "figure"), ("generalization-robustness-message", "children")]
    got = call(client, outputs, [("generalization-model", "value", "default")])["response"]
    heat = got["generalization-robustness"]["figure"]["data"][0]
    assert heat["type"] == "heatmap" and {"uniform", "hub", "hub-chain", "deep"} <= set(heat["y"])
    assert all(0 <= v <= 100 for row in heat["z"] for v in row if v is not None)
    assert got["generalization-robustness-message"]["children"] is None
    none = json.dumps(call(client, outputs, [("generalization-model", "value", "tiny")]))
    assert "workbench robustness --model tiny" in none


def test_a_preset_runs_in_one_click_and_reports_unsolved_variables_when_there_are_any(client):
    from workbench.task.families import PRESETS

    preset = next(k for k in PRESETS if k.startswith("fan-out: a 60-link chain"))
    inputs = lambda value: [("problem-submit", "n_clicks", None), ("problem-generate", "n_clicks", None),  # noqa: E731
                            ("problem-preset", "value", value)]
    state = [("problem-text", "value", ""), ("problem-model", "value", "default"), ("problem-size", "value", 16),
             ("problem-seed", "value", 0)]
    got = call(client, [("run", "data"), ("problem-message", "children")], inputs(preset), state, ["problem-preset.value"])
    key = got["response"]["run"]["data"]
    assert key["model"] == "default" and key["text"].count("\n") == 62  # 62 equations, one per line
    message = json.dumps(got["response"]["problem-message"])
    assert "Preset loaded: fan-out: a 60-link chain" in message and "Traceback" not in message
    run = S.get_run(S.RunKey.from_json(key))
    assert ("unsolved" in message) == (run.unsolved > 0)
    nothing = call(client, [("run", "data"), ("problem-message", "children")], inputs(None), state, ["problem-preset.value"])
    assert nothing is None  # clearing the preset changes nothing


def test_the_attention_pages_titles_and_scores_come_from_one_step(client):
    """At the last state the step shown is the step that read it, in every title and number."""
    key = S.make_key("default", SMALL)
    run = S.get_run(key)
    got = call(client, [("attention-scores", "figure"), ("attention-grid", "figure"), ("attention-message", "children")],
               [("step", "value", run.n_steps), ("run", "data", key.to_json()), ("attention-init", "data", True)],
               changed=["step.value"])["response"]
    t = run.n_steps
    scores, grid = got["attention-scores"]["figure"], got["attention-grid"]["figure"]
    assert f"at step {t} (reading state {t})" in scores["layout"]["title"]["text"]
    assert f"at step {t} (reading state {t})" in grid["layout"]["title"]["text"]
    measures = run.head_scores(t)
    for panel, m in enumerate(("operand_lookup", "gather", "induction")):
        np.testing.assert_allclose(array(scores["data"][panel]["z"]), measures[m], atol=1e-6)
    assert got["attention-message"]["children"] == ""


def test_an_error_on_the_problem_page_hides_the_previous_graph(client):
    key = S.make_key("default", SMALL)
    error = {"type": "Div", "namespace": "dash_html_components",
             "props": {"children": "line 2: unsupported operator", "className": "message error", "role": "alert"}}
    got = call(client, [("problem-dag", "figure"), ("problem-tokens", "children"), ("problem-drawn", "data")],
               [("problem-step", "data", 2), ("run", "data", key.to_json()), ("problem-init", "data", True), ("node", "data", None),
                ("problem-message", "children", error)], [("problem-drawn", "data", key.digest)],
               ["problem-message.children"])["response"]
    figure = got["problem-dag"]["figure"]
    assert "not run" in json.dumps(figure["layout"]["annotations"]) and not figure["data"]
    assert got["problem-tokens"]["children"] == [] and got["problem-drawn"]["data"] is None


def test_a_failed_injection_clears_the_previous_reports_and_names_the_state(client):
    key = S.make_key("default", SMALL)
    outputs = [("errors-report-a", "children"), ("errors-fig-a", "figure"), ("errors-report-b", "children"),
               ("errors-fig-b", "figure"), ("errors-inject-message", "children")]
    got = call(client, outputs, [("errors-inject", "n_clicks", 2)],
               [("run", "data", key.to_json()), ("errors-state", "value", 99), ("errors-node", "value", 0),
                ("errors-value", "value", 5), ("errors-other", "value", "(none)")], ["errors-inject.n_clicks"])["response"]
    assert got["errors-report-a"]["children"] is None and got["errors-report-b"]["children"] is None
    assert not got["errors-fig-a"]["figure"]["data"]
    assert "the state must be 0..4" in json.dumps(got["errors-inject-message"]) and "step must" not in json.dumps(got)


def test_the_problem_page_and_the_step_bar_show_the_models_arithmetic_and_the_step_definition(client):
    got = call(client, [("problem-arithmetic", "children")], [("problem-model", "value", "default")])
    assert "Arithmetic mod 23" in json.dumps(got) and "is written" in json.dumps(got)
    info = json.dumps(call(client, [("step", "max"), ("step", "marks"), ("step", "value"), ("run-info", "children")],
                           [("run", "data", S.make_key("default", SMALL).to_json())], changed=["run.data"]))
    assert "mod 23, operations +" in info and "4 steps, reached a fixed point" in info
    assert "what `workbench solve` prints as iterations" in info


def test_a_selected_node_is_highlighted_with_its_parents_and_children(client):
    key = S.make_key("default", SMALL)
    run = S.get_run(key)
    c = run.names.index("c")
    got = call(client, [("problem-dag", "figure"), ("problem-tokens", "children"), ("problem-drawn", "data")],
               [("problem-step", "data", 2), ("run", "data", key.to_json()), ("problem-init", "data", True), ("node", "data", c),
                ("problem-message", "children", None)], [("problem-drawn", "data", key.digest)], ["node.data"])["response"]
    names = [trace.get("name") for trace in got["problem-dag"]["figure"]["data"]]
    assert names == ["edges", "nodes", "selected", "parents", "children"]
    detail = json.dumps(call(client, [("problem-node", "children")],
                             [("node", "data", c), ("run", "data", key.to_json()), ("problem-init", "data", True)]))
    assert "c = a + b" in detail and "reads: " in detail and "a, b" in detail and "read by: " in detail and "d" in detail


def test_the_probes_page_is_a_report_with_contents_the_comparison_first_and_readable_labels(client, monkeypatch):
    def result(analysis, title, summary, params=None):
        return {"schema": "workbench-analysis/1", "analysis": analysis, "title": title, "model": {"training": {}},
                "params": params or {}, "summary": summary, "results": {}}

    files = {"default": [("probes.json", result("probes", "Linear probes", {"value@rhs acc": 0.912345, "by step": [0.5, 1.0]},
                                                {"model": "default", "depth_cap": 6}))],
             "tiny": [("probes.json", result("probes", "Linear probes", {"value@rhs acc": 0.25}))]}
    monkeypatch.setattr(saved, "probe_results", lambda model: files.get(model, []))
    page = call(client, [("probes-results", "children")], [("probes-model", "value", "default")])["response"]
    children = page["probes-results"]["children"]
    assert children[0]["props"]["id"] == "probes-contents"
    text = json.dumps(children)
    assert text.index("Comparison across models") < text.index("Linear probes read each node's value")
    assert "0.912" in text and "0.912345" not in text and "0.5, 1" in text and "depth cap 6" in text
    assert [th["props"]["children"] for th in children[1]["props"]["children"][2]["props"]["children"][0]["props"]["children"]][2:] == ["default", "tiny"]
    files["default"].append(("circuits.json", result("circuits", "Circuits compared", {"same circuit": True})))
    first = call(client, [("probes-results", "children")], [("probes-model", "value", "default")])["response"]
    text = json.dumps(first["probes-results"]["children"])
    assert text.index("Circuits compared") < text.index("Linear probes read") and "Comparison across models" not in text


def test_the_quick_analyses_start_only_from_the_offered_button_and_report_progress(client, dash_app, monkeypatch):
    """The button carries a one-time token (a stray request cannot start work); progress is polled until done."""
    from app import jobs

    ran = []
    monkeypatch.setattr(jobs, "_JOBS", {})
    monkeypatch.setattr(jobs, "_run", lambda job: ran.append(job.model) or setattr(job, "done", job.total)
                        or setattr(job, "finished", True))
    page = json.dumps(call(client, [("probes-results", "children")], [("probes-model", "value", "default")]))
    assert "Run the quick analyses" in page
    token = json.loads(page)["response"]["probes-results"]["children"]["props"]["children"][3]["props"]["data"]
    outputs = [("probes-poll", "disabled"), ("probes-progress", "children")]
    stray = call(client, outputs, [("probes-run-quick", "n_clicks", 1)], [("probes-offer", "data", "guessed")])
    assert "expired" in json.dumps(stray) and ran == []
    started = call(client, outputs, [("probes-run-quick", "n_clicks", 1)], [("probes-offer", "data", token)])
    assert ran == ["default"] and "3/3 done" in json.dumps(started)
    again = call(client, outputs, [("probes-run-quick", "n_clicks", 2)], [("probes-offer", "data", token)])
    assert "expired" in json.dumps(again) and ran == ["default"]  # one token, one run
    key = next(k for k in dash_app.callback_map if "probes-results.children@" in k)  # outputs that allow duplicates
    outputs = [{"id": o.split(".")[0], "property": o.split(".")[1].split("@")[0]} for o in key.strip(".").split("...")]
    response = client.post("/_dash-update-component", json={
        "output": key, "outputs": outputs, "inputs": [{"id": "probes-poll", "property": "n_intervals", "value": 1}],
        "state": [{"id": "probes-model", "property": "value", "value": "default"}], "changedPropIds": ["probes-poll.n_intervals"]})
    done = response.get_json()["response"]
    assert done["probes-poll"]["disabled"] is True and "No probe results" in json.dumps(done["probes-results"])


def test_the_circuit_chain_of_a_clicked_node_names_heads_from_the_same_steps_patterns(client):
    """``d = c + a`` at the step that writes it: one lookup, gather and induction arc per operand, each
    labelled with the head whose weight is largest in the very patterns the page shows."""
    key = S.make_key("default", SMALL)
    run = S.get_run(key)
    node = run.names.index("d")
    t = int(run.depth[node])  # the step that writes d reads state t
    got = call(client, [("attention-node", "figure"), ("attention-chain", "figure")],
               [("step", "value", t), ("run", "data", key.to_json()), ("node", "data", node), ("attention-init", "data", True)],
               changed=["node.data"])["response"]["attention-chain"]["figure"]
    assert f"The circuit of d (d = c + a) at step {t}" in got["layout"]["title"]["text"]
    labels = [a["text"] for a in got["layout"]["annotations"]]
    assert len(got["layout"]["shapes"]) == 3 * 2 == len(labels)  # lookup, gather, induction x two operands
    rows, lookups = S.step_patterns(key, t)[:, :, node], S.step_operand_lookups(key, t)[:, :, node]
    layer, head = np.unravel_index(np.argmax(lookups[:, :, 0]), lookups.shape[:2])
    assert labels[0] == f"L{layer}H{head} {lookups[layer, head, 0]:.2f}"  # the first operand's lookup arc
    assert lookups[:, :, 0].max() > 0.5  # the shipped default looks variables up (issue #17): not 0.00


def test_operand_lookups_are_the_patterns_entries_from_operand_token_to_definition():
    """Against the hook's own pattern: query = the operand token, key = its variable's defining position."""
    import torch

    from workbench.hooks.names import hook_name

    key = S.make_key("default", SMALL)
    run = S.get_run(key)
    t = 2
    _, hm = S.get_model("default")
    _, cache = hm.run_with_cache(torch.from_numpy(run.states[t][None].astype(np.int64)), n_steps=1,
                                 names_filter=[hook_name(0, "attn.hook_pattern", 0)])
    pattern = cache[hook_name(0, "attn.hook_pattern", 0)][0]  # [head, query, key]
    lookups = S.step_operand_lookups(key, t)
    node = run.names.index("c")  # c = a + b
    for slot, parent in enumerate(run.parents[node]):
        expected = pattern[:, run.operand_pos[node, slot], run.rhs_pos[parent]].numpy()
        np.testing.assert_allclose(lookups[0, :, node, slot], expected, atol=1e-6)
    assert not lookups[:, :, run.names.index("a")].any()  # a constant has no operand slot
