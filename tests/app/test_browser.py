"""The app in a real headless Chromium (Playwright, Debian's /usr/bin/chromium): every page, training curves, a problem typed
with a mistake and then fixed, scrubbing and playing the steps, an injected error and its report, a node
clicked on the attention page, and two sessions at once."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from app.screenshots import VIEWPORT, overflowing, overlaps, tour

pytestmark = pytest.mark.xdist_group("app")
expect.set_options(timeout=30_000)  # the machine may be busy (training runs beside the tests)

SMALL = "price = 17\ntax = 9\ntotal = price + tax\nshipping = total"
PAGES = {  # nav link -> (url path, text the page shows once its callbacks ran)
    "attention": ("/attention", ("#attention-pattern .gtitle", "L0H0 at step")),
    "codebook": ("/codebook", ("#codebook-usage .gtitle", "value codes in use per state")),
    "errors": ("/errors", ("#errors-events .gtitle", "Events of this run")),
    "probes": ("/probes", ("#probes-results", "No probe results for model default yet")),
    "generalization": ("/generalization", ("#generalization-figure .gtitle", "Generalization")),
    "problem": ("/", ("#problem-dag .gtitle", "State")),
}


def open_app(page: Page, url: str, path: str = "/") -> None:
    """Open the app and wait until the page has shown its session's problem (before typing over it)."""
    page.goto(url + path)
    expect(page.locator("#run-info")).to_contain_text("nodes")
    if path == "/":
        expect(page.locator("#problem-text")).not_to_have_value("")


def run_problem(page: Page, text: str) -> None:
    page.locator("#problem-text").fill(text)
    page.locator("#problem-submit").click()


def test_every_page_loads_from_the_navigation(page: Page, server_url):
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    open_app(page, server_url)
    expect(page.locator("#problem-dag .gtitle")).to_contain_text("State 4 of 4")  # depth 3: 4 steps, as solve counts
    for link, (path, (selector, text)) in PAGES.items():
        page.locator(f"#nav-{link}").click()
        expect(page).to_have_url(re.compile(re.escape(path) + "$"))
        expect(page.locator(selector)).to_contain_text(text)
    assert not errors
    assert "Traceback" not in page.content()


def test_the_generalization_page_shows_the_session_models_training_curves(page: Page, server_url):
    open_app(page, server_url, "/generalization")
    expect(page.locator("#generalization-training .gtitle")).to_contain_text("Training curves: default")
    expect(page.locator("#generalization-training")).to_contain_text("training step")
    expect(page.locator("#generalization-robustness .gtitle")).to_contain_text("Robustness: default")
    expect(page.locator("#generalization-robustness")).to_contain_text("hub-chain")


def test_a_fan_out_preset_runs_in_one_click(page: Page, server_url):
    open_app(page, server_url)
    page.locator("#problem-preset").click()
    page.get_by_text("fan-out at the training cap: a 12-link chain").click()
    expect(page.locator("#problem-message")).to_contain_text("Preset loaded: fan-out at the training cap")
    expect(page.locator("#problem-text")).to_have_value(re.compile(r"^w = 2\nv0 = 1\nv1 = v0 \+ w"))
    expect(page.locator("#run-info")).to_contain_text("14 nodes")


def test_a_typed_problem_shows_errors_inline_then_runs(page: Page, server_url):
    open_app(page, server_url)
    run_problem(page, "price = 17\ntotal = price + tax")
    expect(page.locator("#problem-message")).to_contain_text("line 2: 'tax' is used but never defined")
    page.locator("#problem-size").fill("500")
    page.locator("#problem-generate").click()
    expect(page.locator("#problem-message")).to_contain_text("from 7 to 128")
    run_problem(page, SMALL)
    expect(page.locator("#run-info")).to_contain_text("4 nodes, depth 2")
    expect(page.locator("#problem-tokens")).to_contain_text("total")
    expect(page.locator("#problem-text")).to_have_value(re.compile(r"^price = 17\ntax = 9\ntotal = price \+ tax"))


def test_scrubbing_and_playing_walk_through_the_states(page: Page, server_url):
    open_app(page, server_url)
    run_problem(page, SMALL)
    expect(page.locator("#run-info")).to_contain_text("4 nodes")
    expect(page.locator("#problem-tokens")).to_contain_text("shipping")  # the new run is drawn (same response)
    title = page.locator("#problem-dag .gtitle")
    expect(title).to_contain_text(re.compile(r"State (\d+) of \1"))
    last = int(re.search(r"of (\d+)", title.text_content()).group(1))
    for k in range(last - 1, -1, -1):  # one state back per click, each drawn before the next click
        page.locator("#step-prev").click()
        expect(title).to_contain_text(f"State {k} of {last}")
    expect(title).to_contain_text(f"State 0 of {last} (input): 0 right, 0 wrong, 4 not yet")
    expect(page.locator("#problem-tokens .tok.notyet").first).to_be_visible()
    page.locator("#step-next").click()
    expect(title).to_contain_text(f"State 1 of {last}")
    page.locator("#play").click()
    expect(page.locator("#play")).to_have_text("Pause")
    expect(title).to_contain_text(f"State {last} of {last}")
    expect(page.locator("#play")).to_have_text("Play")  # stops at the end


#: records, in order, every state the Problem page's graph title shows (a MutationObserver sees each change of the
#: drawing, however briefly a state stays on screen, where polling the page could miss one; it watches the whole
#: page, since React may replace the graph's element)
RECORD_STATES_JS = """() => {
  window.drawnStates = [];
  const record = () => {
    const title = document.querySelector('#problem-dag .gtitle');
    const found = title && /State (\\d+) of/.exec(title.textContent);
    const last = window.drawnStates[window.drawnStates.length - 1];
    if (found && Number(found[1]) !== last) window.drawnStates.push(Number(found[1]));
  };
  new MutationObserver(record).observe(document.body, {subtree: true, childList: true, characterData: true});
  record();
}"""


def test_play_draws_every_state_in_order_and_puts_the_values_back_when_it_stops(page: Page, server_url):
    """Play on a generated graph (drawn in the browser from the run's frames) shows each state once, in order,
    none skipped; the labels show names while playing and ``name=value`` again at the end."""
    open_app(page, server_url)
    page.locator("#problem-size").fill("32")
    page.locator("#problem-seed").fill("1")
    page.locator("#problem-generate").click()
    expect(page.locator("#run-info")).to_contain_text("32 nodes")
    expect(page.locator("#problem-dag .scatterlayer .trace").nth(1).locator("path.point")).to_have_count(32)  # its graph
    title = page.locator("#problem-dag .gtitle")
    expect(title).to_contain_text(re.compile(r"State (\d+) of \1"))  # the new run, at its last state
    last = int(re.search(r"of (\d+)", title.text_content()).group(1))
    page.evaluate(RECORD_STATES_JS)
    page.locator("#play").click()  # at the last state: plays from the input
    page.wait_for_function("last => { const s = window.drawnStates; return s.indexOf(last, s.indexOf(0)) > 0; }",
                           arg=last, timeout=30_000)  # played from the input back to the last state
    expect(page.locator("#play")).to_have_text("Play")  # stopped at the end
    states = page.evaluate("window.drawnStates")
    assert states[states.index(0):] == list(range(last + 1)), states
    expect(page.locator("#problem-dag .textpoint text", has_text="=").first).to_be_visible()
    expect(page.locator("#problem-tokens .tok.notyet")).to_have_count(0)  # the last state's tokens: every value written


def test_an_injected_error_is_reported_on_both_models(page: Page, server_url):
    open_app(page, server_url)
    run_problem(page, SMALL)
    expect(page.locator("#run-info")).to_contain_text("4 nodes")
    page.locator("#nav-errors").click()
    expect(page.locator("#errors-events .gtitle")).to_contain_text("Events of this run")
    page.locator("#errors-state").fill("1")
    page.locator("#errors-node").click()
    page.get_by_role("option", name=re.compile(r"^price")).click()
    page.locator("#errors-value").fill("5")
    page.locator("#errors-other").click()
    page.get_by_role("option", name="tiny").click()
    page.locator("#errors-inject").click()
    report = page.locator("#errors-report-a")
    expect(report).to_contain_text("default: wrote price := 5 into state 1")
    expect(report).to_contain_text(re.compile(r"Repaired: (yes|no)"))
    expect(report).to_contain_text("At the end:")
    expect(page.locator("#errors-report-b")).to_contain_text("tiny: wrote price := 5 into state 1")
    expect(page.locator("#errors-fig-a .gtitle")).to_contain_text("after writing price := 5 into state 1")


def test_clicking_a_node_shows_what_it_attends_to_and_its_circuit_chain(page: Page, server_url):
    open_app(page, server_url)
    run_problem(page, SMALL)
    expect(page.locator("#run-info")).to_contain_text("4 nodes")
    page.locator("#nav-attention").click()
    expect(page.locator("#attention-node")).to_contain_text("click a node")
    point = page.locator("#attention-dag .scatterlayer .trace").nth(1).locator("path.point").nth(2)  # total
    expect(point).to_be_visible()
    point.scroll_into_view_if_needed()
    box = point.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)  # plotly reports a click on the point it hovers
    expect(page.locator("#attention-dag .hoverlayer .hovertext")).to_have_count(1)
    page.mouse.click(x, y)
    expect(page.locator("#attention-node .gtitle")).to_contain_text("What total (total = price + tax) reads")
    expect(page.locator("#attention-chain .gtitle")).to_contain_text("The circuit of total (total = price + tax)")
    expect(page.locator("#attention-chain .annotation-text")).to_have_count(6)  # 3 links x 2 operands, each labelled
    page.locator("#nav-problem").click()
    expect(page.locator("#problem-node")).to_contain_text("total = price + tax")


def test_two_sessions_at_once_keep_their_own_problems(browser, server_url):
    a, b = browser.new_context(), browser.new_context()
    try:
        pa, pb = a.new_page(), b.new_page()
        open_app(pa, server_url)
        open_app(pb, server_url)
        run_problem(pa, SMALL)
        run_problem(pb, "x = 1\ny = x + x\nz = y + x\nw = z\nv = w + y\nu = v")
        expect(pa.locator("#run-info")).to_contain_text("4 nodes")
        expect(pb.locator("#run-info")).to_contain_text("6 nodes")
        pa.reload()
        expect(pa.locator("#run-info")).to_contain_text("4 nodes")
        expect(pa.locator("#problem-tokens")).to_contain_text("shipping")
        expect(pb.locator("#problem-tokens")).not_to_contain_text("shipping")
    finally:
        a.close()
        b.close()


def test_a_control_that_starts_work_shows_a_loading_indicator_until_it_is_done(page: Page, server_url, monkeypatch):
    import time

    from app import state as app_state

    real = app_state._compute_run

    def slow(*args, **kwargs):  # the server runs in this process: make one computation take visibly long
        time.sleep(2.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(app_state, "_compute_run", slow)
    open_app(page, server_url)
    run_problem(page, "a = 5\nb = a + a\nc = b + a\nd = c")
    busy = page.locator("#problem-message[data-dash-is-loading='true']")
    expect(busy).to_have_count(1, timeout=1_500)
    assert float(busy.evaluate("e => getComputedStyle(e).opacity")) < 1
    expect(page.locator("#run-info")).to_contain_text("4 nodes")
    expect(page.locator("[data-dash-is-loading='true']")).to_have_count(0)


#: per page of the tour: the labels that must never be drawn over each other
LABELS = {
    "problem": ["#problem-dag .textpoint text"],
    "attention": ["#attention-dag .textpoint text", "#attention-pattern .ytick text", "#attention-node .ytick text"],
    "codebook": ["#codebook-usage .ytick text", "#codebook-transitions .ytick text"],
    "errors": ["#errors-events .ytick text", "#errors-fig-a .ytick text"],
    "probes": [],
    "generalization": ["#generalization-figure .legendtext"],
    "training": ["#generalization-training .annotation-text", "#generalization-training .g-gtitle text"],
}


def steps_of(page: Page) -> int:
    """The run's step count, as the step bar states it."""
    return int(re.search(r"(\d+) steps", page.locator("#run-info").text_content()).group(1))


def test_the_pages_at_n_64_are_readable_and_name_the_step_of_their_numbers(browser, server_url):
    """The screenshot tour at 1280 px: no clipped control text, no label over another, and every title on the
    Attention page names the step its numbers come from. With WORKBENCH_SCREENSHOTS=docs it redraws the README's
    pictures (python -m app.screenshots does the same with the repository's models)."""
    out = os.environ.get("WORKBENCH_SCREENSHOTS")
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    problems: list = []

    def check(name: str) -> None:
        page.wait_for_timeout(300)  # plotly draws labels after the figure arrives
        problems.extend((name, "clipped", text) for text in overflowing(page))
        for selector in LABELS[name]:
            problems.extend((name, selector, pair) for pair in overlaps(page, selector))
        if name == "problem":
            n = steps_of(page)
            expect(page.locator("#problem-dag .gtitle")).to_contain_text(f"State {n} of {n}")
            expect(page.locator("#problem-dag .textpoint text").first).to_be_visible()
        if name == "attention":
            n = steps_of(page)  # the slider sits on the last state; the step that read it is step n
            for graph in ("scores", "grid", "pattern", "node"):
                expect(page.locator(f"#attention-{graph} .gtitle")).to_contain_text(f"at step {n} (reading state {n})")

    def shoot(name: str) -> None:
        if out:
            page.wait_for_timeout(800)
            page.screenshot(path=str(Path(out) / f"app-{name}.png"))

    try:
        tour(page, server_url, nodes=64, shoot=shoot, check=check)
    finally:
        context.close()
    assert problems == []


def test_a_128_node_graph_thins_its_labels_and_keeps_the_selected_neighbourhood(browser, server_url, timings):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    try:
        open_app(page, server_url)
        page.locator("#problem-size").fill("128")
        start = time.perf_counter()
        page.locator("#problem-generate").click()
        expect(page.locator("#run-info")).to_contain_text("128 nodes")
        expect(page.locator("#problem-dag .scatterlayer .trace").nth(1).locator("path.point")).to_have_count(128)
        expect(page.locator("#problem-tokens .tok").first).to_be_visible()
        timings("browser: first view of a new N = 128 problem (shipped default)", time.perf_counter() - start, 2.0)
        labels = page.locator("#problem-dag .textpoint text")
        assert 30 <= labels.count() <= 128 and overlaps(page, "#problem-dag .textpoint text") == []
        point = page.locator("#problem-dag .scatterlayer .trace").nth(1).locator("path.point").nth(100)
        point.scroll_into_view_if_needed()
        box = point.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        expect(page.locator("#problem-dag .scatterlayer .trace").nth(3)).to_be_attached()  # the ring, parents or children
        detail = page.locator("#problem-node").text_content()
        name = detail.split(" = ")[0]
        expect(page.locator("#problem-dag .textpoint text", has_text=re.compile(f"^{re.escape(name)}="))).to_have_count(1)
        assert overlaps(page, "#problem-dag .textpoint text") == []
        page.locator("#nav-errors").click()
        expect(page.locator("#errors-node")).to_contain_text(" = ")
        start = time.perf_counter()
        page.locator("#errors-inject").click()
        expect(page.locator("#errors-report-a")).to_contain_text("Repaired")
        timings("browser: an injection at N = 128 (one model; the comparison with a second is timed by "
                "benchmarks/bench_browser.py)", time.perf_counter() - start, None)
        ticks = page.locator("#errors-fig-a .ytick text")
        expect(ticks.first).to_be_visible()
        assert ticks.count() >= 40 and overlaps(page, "#errors-fig-a .ytick text") == []
    finally:
        context.close()


def test_an_error_replaces_the_graph_and_reports_it_invalidates(page: Page, server_url):
    open_app(page, server_url)
    run_problem(page, SMALL)
    expect(page.locator("#run-info")).to_contain_text("4 nodes")
    expect(page.locator("#problem-dag .textpoint text").first).to_be_visible()
    run_problem(page, "a = 3\nb = a / 2")
    expect(page.locator("#problem-message .error")).to_be_visible()
    expect(page.locator("#problem-dag")).to_contain_text("not run: fix the problem")
    expect(page.locator("#problem-dag .textpoint text")).to_have_count(0)
    expect(page.locator("#problem-tokens .eq")).to_have_count(0)
    page.locator("#nav-errors").click()
    expect(page.locator("#errors-node")).to_contain_text(" = ")
    page.locator("#errors-inject").click()
    expect(page.locator("#errors-report-a")).to_contain_text("Repaired")
    page.locator("#errors-state").fill("99")
    page.locator("#errors-inject").click()
    expect(page.locator("#errors-inject-message")).to_contain_text("the state must be 0..")
    expect(page.locator("#errors-report-a")).to_be_empty()
    expect(page.locator("#errors-fig-a")).to_contain_text("no injection")
