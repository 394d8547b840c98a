"""The app's server side without a browser: limits and messages, one run per key, sessions that never mix,
injection reports (a guaranteed repair through a stand-in perfect model), figure builders on real runs."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from app import saved, state as S
from app.cache import LRU
from app.injection import InjectionView, injection
from workbench.errors import WorkbenchError
from workbench.run_view import parent_attention

pytestmark = pytest.mark.xdist_group("app")

SMALL = "a = 3\nb = 4\nc = a + b\nd = c + a\ne = d"


@pytest.fixture(autouse=True)
def fresh_caches():
    S.clear_caches()
    yield
    S.clear_caches()


def test_a_bad_line_is_reported_with_its_number():
    with pytest.raises(WorkbenchError, match=r"^line 2: 'c' is used but never defined"):
        S.make_key("default", "a = 3\nb = a + c")


@pytest.mark.parametrize("text, message", [
    ("", "the problem is empty"),
    ("x" * (S.MAX_TEXT_CHARS + 1), f"at most {S.MAX_TEXT_CHARS}"),
    ("\n" * S.MAX_LINES + "a = 1", f"at most {S.MAX_LINES}"),
    ("\n".join(f"v{i} = 1" for i in range(S.MAX_NODES + 1)), "variables"),
])
def test_inputs_have_limits_with_clear_messages(text, message):
    with pytest.raises(WorkbenchError, match=message):
        S.make_key("default", text)


@pytest.mark.parametrize("n, seed, message", [(129, 0, "from 7 to 128"), (6, 0, "from 7 to 128"), (16.5, 0, "whole number"),
                                              (16, -1, "seed must be")])
def test_generation_checks_size_and_seed(n, seed, message):
    with pytest.raises(WorkbenchError, match=message):
        S.generate_problem("default", n, seed)


def test_an_unknown_model_is_a_one_line_error():
    with pytest.raises(WorkbenchError, match="unknown model 'nope'"):
        S.make_key("nope", SMALL)
    with pytest.raises(WorkbenchError, match="unknown model"):
        S.model_task("../default")


def test_store_data_from_a_browser_is_checked():
    with pytest.raises(WorkbenchError, match="no problem loaded"):
        S.RunKey.from_json(None)
    with pytest.raises(WorkbenchError, match="seed"):
        S.RunKey.from_json({"model": "default", "text": SMALL, "seed": "x"})


def test_a_run_is_computed_once_and_then_served_from_the_cache(monkeypatch):
    from workbench.hooks import interventions

    calls = []
    real = interventions.trajectory
    monkeypatch.setattr(interventions, "trajectory", lambda *a, **k: calls.append(1) or real(*a, **k))
    key = S.make_key("default", SMALL)
    run = S.get_run(key)
    assert S.get_run(S.make_key("default", "e = d\n" + SMALL.replace("\ne = d", ""))) is run  # same canonical text
    assert len(calls) == 1
    assert run.names == ["a", "b", "c", "d", "e"] and run.truth.tolist() == [3, 4, 7, 10, 10]
    assert run.values.shape == (run.n_steps + 1, 5) and (run.values[0] == run.vocab.empty).all()
    assert run.copy.shape == (run.n_read, run.n_layers, run.n_heads, 5)
    assert run.n_read == run.n_steps + (1 if run.converged else 0)  # the confirming step read the fixed point
    assert ((run.copy >= 0) & (run.copy + run.lookup <= 1 + 1e-5)).all()


def test_step_patterns_reproduce_the_run_and_are_distributions():
    key = S.make_key("default", SMALL)
    run = S.get_run(key)
    for t in range(run.n_read):
        p = S.step_patterns(key, t)  # [layer, head, node, pos]
        assert p.shape == (run.n_layers, run.n_heads, 5, run.length)
        np.testing.assert_allclose(p.sum(-1), 1, atol=1e-4)
        copy, lookup = parent_attention(p[0], run.rhs_pos, run.operand_pos, run.parents)
        np.testing.assert_allclose(copy, run.copy[t, 0], atol=1e-4)  # the recomputed step equals the run's
        np.testing.assert_allclose(lookup, run.lookup[t, 0], atol=1e-4)


def test_sessions_running_at_once_get_their_own_results():
    """Eight threads, four problems, two models: every result equals the one computed alone."""
    texts = [S.generate_problem("default", n, seed) for n, seed in ((8, 1), (12, 2), (16, 3), (20, 4))]
    keys = [S.make_key(m, t) for t in texts for m in ("default", "tiny")]
    alone = {k: S.get_run(k).values.copy() for k in keys}
    S.clear_caches()
    got, errors = {}, []

    def session(k):
        try:
            got[k] = S.get_run(k).values.copy()
            S.step_patterns(k, 1)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(k,)) for k in keys]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for k in keys:
        np.testing.assert_array_equal(got[k], alone[k])


def test_an_injection_report_names_the_step_value_and_outcome():
    key = S.make_key("default", SMALL)
    view = injection(key, 1, 0, 9)
    assert view.corrupted[1, 0] == 9 and view.value == 9 and view.true_value == 3
    text = " ".join(view.report())
    assert "wrote a := 9 into state 1" in text and "Repaired:" in text and "true value 3" in text
    with pytest.raises(WorkbenchError, match="value must be 0..22"):
        injection(key, 1, 0, 99)
    with pytest.raises(WorkbenchError, match=r"^the state must be 0\.\.4 \(state 0 is the input"):
        injection(key, 999, 0, 1)


def test_a_perfect_stand_in_model_is_reported_as_repaired():
    """Hooks make every step write the teacher state: the injected error is gone one step later."""
    from workbench.hooks import hook_name, hooked
    from workbench.hooks.interventions import trajectory
    from workbench.hooks.names import sites_filter, step_of
    from workbench.model.config import ModelConfig
    from workbench.model.looped import LoopedModel
    from workbench.task.config import TaskConfig
    from workbench.task.vocab import F_VALUE

    torch.manual_seed(0)
    hm = hooked(LoopedModel(ModelConfig(n_layers=1, n_heads=2, d_model=16), TaskConfig(n_names=8)), n_steps=12)
    tb = hm.to_token_batch(SMALL)
    teach = (sites_filter("hook_bottleneck"), lambda new, hook: torch.from_numpy(tb.state(step_of(hook.name))).long())

    def overwrite(state, hook):
        state = state.clone()
        state[0, tb.rhs_pos[0, 2], F_VALUE] = 1  # c := 1 (true 7) in state 2
        return state

    clean = trajectory(hm, tb, fwd_hooks=[teach])
    corrupted = trajectory(hm, tb, fwd_hooks=[teach, (hook_name(2, "hook_state"), overwrite)])
    view = InjectionView("perfect", 2, 2, "c", ["a", "b", "c", "d", "e"], 1, clean.truth[0].numpy(),
                           clean.values[:, 0].numpy(), corrupted.values[:, 0].numpy(), hm.vocab)
    assert view.repaired and view.repair_state == 3 and view.recovered and view.same_as_clean
    report = " ".join(view.report())
    assert "Repaired: yes, c holds 7 again from state 3 (1 step after the injection)" in report
    assert "5/5 nodes right (solved)" in report


def test_figures_build_for_a_real_run():
    from workbench.plots.attention import heads_grid_figure, node_attention_figure, pattern_figure, roles_figure, scores_figure
    from workbench.plots.codebook import changes_figure, entropy_figure, transition_figure, usage_figure
    from workbench.plots.corruption import events_figure, injection_figure
    from workbench.plots.run import dag_figure, dag_state

    key = S.make_key("default", S.generate_problem("default", 24, 5))
    run = S.get_run(key)
    p = S.step_patterns(key, 1)
    figs = [dag_figure(run, 1, selected=10), pattern_figure(p[0, 0], run, state=1, layer=0, head=0),
            scores_figure(run.head_scores(1), title="t"), roles_figure(run), heads_grid_figure(p, state=1),
            node_attention_figure(p[:, :, 10], run, node=10, state=1), usage_figure(run, factor=3, state=1),
            transition_figure(run, factor=0, state=1), entropy_figure(run), changes_figure(run),
            events_figure(run, state=1), injection_figure(injection(key, 1, 3))]
    assert all(f.to_plotly_json()["data"] for f in figs)
    now = dag_state(run, 0)
    assert set(now["color"]) == {"#c8c8c8"} and now["title"].startswith("State 0 of")


def test_saved_evaluations_and_probe_results_are_read_per_model():
    curves = saved.model_evaluations()
    assert curves["tiny"][0]["n_nodes"] == 8
    assert any(label.startswith("default") for label in curves)
    assert saved.probe_results("default") == []
    (name, data), = saved.probe_results("tiny")
    assert name == "lens.json" and data["title"] == "A saved lens result"


@pytest.mark.parametrize("cfg", [{"latent": "continuous"}, {"recurrence": "feedforward"}], ids=["continuous", "one-pass"])
def test_other_mechanisms_run_and_show_patterns(cfg, tmp_path, monkeypatch):
    """A continuous latent recomputes a step's patterns from the input; a one-pass model has step 0 only."""
    from workbench.model.checkpoint import save_model
    from workbench.model.config import ModelConfig
    from workbench.model.looped import LoopedModel
    from workbench.task.config import TaskConfig

    torch.manual_seed(0)
    model = LoopedModel(ModelConfig(n_layers=1, n_heads=2, d_model=16, d_mlp=32, rel_window=8, **cfg), TaskConfig(n_names=16))
    save_model(model, tmp_path / "other")
    monkeypatch.setenv("WORKBENCH_MODELS", str(tmp_path))
    key = S.make_key("other", SMALL)
    run = S.get_run(key)
    last = S.pattern_state(run, run.n_steps)
    assert last == (min(run.n_steps, run.n_read - 1) if run.looped else 0)
    p = S.step_patterns(key, run.n_steps)
    np.testing.assert_allclose(p.sum(-1), 1, atol=1e-4)
    copy, _ = parent_attention(p[0], run.rhs_pos, run.operand_pos, run.parents)
    np.testing.assert_allclose(copy, run.copy[last, 0], atol=1e-4)


def test_the_lru_keeps_within_its_count_and_byte_budget_and_computes_each_key_once():
    import threading

    import numpy as np

    cache = LRU(3, budget=250)
    for k in range(3):
        cache.get_or_compute(k, lambda: np.zeros(100, np.uint8))
    assert len(cache) == 2  # 300 bytes > 250: the oldest went
    assert cache.get(0) is None and cache.get(2) is not None
    for k in range(3, 8):
        cache.get_or_compute(k, lambda: np.zeros(10, np.uint8))
    assert len(cache) == 3  # the count bound
    calls = []

    def slow():
        calls.append(1)
        threading.Event().wait(0.2)
        return np.ones(1)

    threads = [threading.Thread(target=cache.get_or_compute, args=("same", slow)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1  # six concurrent requests, one computation


def test_the_app_counts_steps_as_workbench_solve_does():
    """One definition of steps: the app's n_steps is solve's iterations; the last state is the fixed point and
    has the step that read it (the confirming one), so titles and numbers of that step exist."""
    from workbench.solving import solve
    from workbench.task.text import parse_problem

    _, hm = S.get_model("default")
    for text in (SMALL, S.generate_problem("default", 16, 0)):
        run = S.get_run(S.make_key("default", text))
        sol = solve(hm.model, parse_problem(text, hm.task))
        assert run.n_steps == sol.iterations and run.converged
        assert run.n_read == run.n_steps + 1 and run.reading_step(run.n_steps) == run.n_steps
        assert len(run.states) == run.n_steps + 1 and (run.states[-1] != run.states[-2]).any()  # no repeated state


def test_only_a_written_value_that_was_corrupted_can_be_repaired():
    """Injecting into a node the run has not written yet, or writing its true value, is not a repair."""
    key = S.make_key("default", SMALL)
    run = S.get_run(key)
    e = run.names.index("e")
    early = injection(key, 0, e, 1)  # e (depth 3) is EMPTY in the input
    assert not early.was_written and not early.repaired and early.repair_state == -1
    assert "Repaired: does not apply: the clean run had not written e yet in state 0" in " ".join(early.report())
    same = injection(key, run.n_steps, 0, int(run.truth[0]))
    assert same.was_written and not same.repaired
    assert "Repaired: does not apply: the written value is the true value" in " ".join(same.report())
    late = injection(key, run.n_steps, 0, (int(run.truth[0]) + 1) % run.modulus)
    assert late.was_error and ("Repaired: yes" in " ".join(late.report())) == late.ends_right
    assert f"(clean run: {run.n_steps})" in " ".join(late.report())


def test_views_of_a_128_node_graph_thin_their_labels_instead_of_dropping_or_overprinting_them():
    from workbench.plots.codebook import usage_figure
    from workbench.plots.corruption import injection_figure
    from workbench.plots.run import CHAR_PX, LABEL_PX, dag_figure, dag_layout, neighbourhood

    key = S.make_key("default", S.generate_problem("default", 128, 0))
    run = S.get_run(key)
    node = int(np.argmax([len(p) for p in run.parents]))
    fig = dag_figure(run, run.n_steps, selected=node)
    text = list(fig.data[1].text)
    shown = [i for i, label in enumerate(text) if label]
    assert 30 <= len(shown) < run.n_nodes and all(text[i] for i in neighbourhood(run, node))
    assert all(h.endswith(f"now: {run.names[i]}={run.value_label(run.values[-1, i])}") for i, h in enumerate(fig.data[1].hovertext))
    x, y = dag_layout(run.depth)  # no two drawn labels overlap, in the figure's own pixel scale
    (x0, x1), (y0, y1) = fig.layout.xaxis.range, fig.layout.yaxis.range
    px, py = (x - x0) / (x1 - x0) * 760, (y1 - y) / (y1 - y0) * (fig.layout.height - 70)
    for a in shown:
        for b in shown:
            if a < b:
                wide = CHAR_PX * (max(len(run.names[a]), len(run.names[b])) + 4)
                assert abs(px[a] - px[b]) >= wide or abs(py[a] - py[b]) >= LABEL_PX, (run.names[a], run.names[b])
    inj = injection_figure(injection(key, 2, 100, 1))
    ticks = list(inj.layout.yaxis.tickvals)
    assert 40 <= len(ticks) < run.n_nodes and f"100: {run.names[100]}" in ticks
    usage = usage_figure(run, factor=3, state=1)
    na = run.code_labels(3).index("N/A")
    assert usage.data[0].zmax < run.code_usage(3)[:, na].max() and "beyond the scale" in usage.data[0].colorbar.title.text
    assert list(usage.layout.yaxis.tickvals) == list(usage.data[0].y)  # every code labelled


def test_a_run_carries_the_librarys_routing_measures_and_names_the_default_models_lookup_heads():
    """The app measures with workbench.analysis.routing: on the shipped default the first-layer heads that look
    values up at the operand tokens are found (the old result-position scores showed 0.00 for every head)."""
    from workbench.analysis import routing

    run = S.get_run(S.make_key("default", S.generate_problem("default", 16, 2)))
    assert set(run.routing) == set(routing.MEASURES)
    assert run.routing["operand_lookup"].shape == (run.n_read, run.n_layers, run.n_heads)
    lookup = [(r["layer"], r["head"]) for r in run.head_roles() if r["role"] == "lookup"]
    assert len(lookup) >= 2 and all(layer == 0 for layer, _ in lookup)
    assert np.nanmax(run.head_scores(2)["operand_lookup"][0]) > 0.7


def test_solve_the_wrappers_and_the_app_encode_a_problem_to_the_same_tokens_and_names(monkeypatch):
    """One encoder (``workbench.task.encoding.encode``): ``solve``, ``to_tokens`` and the app's runs agree."""
    import workbench.solving
    from workbench.solving import solve
    from workbench.task.encoding import encode

    key = S.make_key("tiny", "total = x + y\n# made-up names\nx = 3\nfour = 4\ny = x + four\nz = total + y", seed=5)
    task = S.model_task("tiny")
    tb, (names,) = encode(key.text, task, seed=key.seed)

    problem, app_names, app_tb = S.token_batch(key, task)
    assert app_names == names and np.array_equal(app_tb.tokens, tb.tokens)

    _, hm = S.get_model("tiny")
    tokens = hm.to_tokens(key.text, seed=key.seed).cpu()
    assert np.array_equal(tokens.numpy(), tb.tokens)
    assert hm.names.names(tokens[0], hm.model.vocab.sizes) == {i: name for name, i in names.items()}

    seen = []
    real = workbench.solving.run_chunked
    monkeypatch.setattr(workbench.solving, "run_chunked", lambda model, batch, **kw: seen.append(batch) or real(model, batch, **kw))
    solution = solve(hm.model, key.text, seed=key.seed, max_steps=2)
    assert np.array_equal(seen[0].tokens, tb.tokens) and list(solution.values) == list(names) == problem.names


def test_the_modules_examples_run():
    """``app/`` is outside the suite's doctest paths (its pages register with Dash on import), so run these here."""
    import doctest

    assert doctest.testmod(S).failed == 0
