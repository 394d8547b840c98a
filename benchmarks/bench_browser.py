"""The app's cold paths and Play in a real browser (headless Debian Chromium through Playwright).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_browser.py [--nodes 128] [--problems 3]

Serves the app on the shipped models (127.0.0.1, a free port) and, as a person would: generates a new
problem of N nodes on the Problem page and times the click until its graph is drawn (the first view,
cold: nobody asked for that problem before), for ``--problems`` seeds; then presses Play and counts the
states drawn per second from the graph's title (a MutationObserver in the page records each with the
page's clock). Times are from the browser's side (the page's own clock), median and max. Nothing here is asserted: the numbers go to BENCHMARKS.md by hand.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import threading
import time


#: every state the graph's title shows, with the page's clock (ms), in order: a MutationObserver sees each
#: drawing however briefly it stays, so a skipped state is one Play never drew (polling could miss one)
RECORD_JS = """() => {
  window.drawnAt = [];
  const record = () => {
    const title = document.querySelector('#problem-dag .gtitle');
    const found = title && /State (\\d+) of/.exec(title.textContent);
    const last = window.drawnAt[window.drawnAt.length - 1];
    if (found && (!last || last[0] !== Number(found[1]))) window.drawnAt.push([Number(found[1]), performance.now()]);
  };
  new MutationObserver(record).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--nodes", type=int, default=128)
    parser.add_argument("--problems", type=int, default=3, help="new problems timed (seeds 1..N)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hide", default=None, help="CSS selector hidden while playing (to find what the browser spends its time on)")
    parser.add_argument("--play-frame", type=int, default=None, help="Play's shortest frame in ms (default: the app's)")
    parser.add_argument("--other", default="no-error-correction",
                        help="the second model of the timed injections ('' skips them)")
    parser.add_argument("--injections", type=int, default=3, help="injections timed (new problems, seeds 101..)")
    args = parser.parse_args()

    import torch
    from playwright.sync_api import expect, sync_playwright
    from werkzeug.serving import make_server

    import app.app as app_module
    from app.screenshots import ARGS, CHROMIUM, VIEWPORT

    if args.play_frame:
        app_module.PLAY_FRAME_MS = args.play_frame
    create_app = app_module.create_app

    torch.set_num_threads(args.threads)
    server = make_server("127.0.0.1", 0, create_app(args.model).server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    expect.set_options(timeout=120_000)
    first_views, warm_model = [], None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        start = time.perf_counter()
        page.goto(url + "/")
        title = page.locator("#problem-dag .gtitle")
        expect(title).to_contain_text("State")
        warm_model = time.perf_counter() - start  # the first page: loads the model and runs the default problem
        for seed in range(1, args.problems + 1):
            page.locator("#problem-size").fill(str(args.nodes))
            page.locator("#problem-seed").fill(str(seed))
            tokens = page.locator("#problem-tokens")
            before = tokens.text_content()
            start = time.perf_counter()
            page.locator("#problem-generate").click()
            expect(page.locator("#run-info")).to_contain_text(f"{args.nodes} nodes")
            expect(tokens).not_to_have_text(before)  # the new problem's token sequence is drawn
            expect(title).to_contain_text(re.compile(r"State \d+ of \d+"))
            first_views.append(time.perf_counter() - start)
        # Play from state 0 to the end; the title says which state is drawn
        last = int(re.search(r"of (\d+)", title.text_content()).group(1))
        while "State 0 of" not in (title.text_content() or ""):
            page.locator("#step-prev").click()
            page.wait_for_timeout(50)
        if args.hide:
            page.add_style_tag(content=f"{args.hide} {{display: none !important}}")
        page.evaluate(RECORD_JS)
        page.locator("#play").click()
        page.wait_for_function("last => window.drawnAt && window.drawnAt.some(([t]) => t === last)", arg=last, timeout=60_000)
        seen = {}
        for state, at_ms in page.evaluate("window.drawnAt"):
            seen.setdefault(state, at_ms / 1000)
        injections = time_injections(page, args) if args.other else []
        browser.close()
    server.shutdown()
    drawn = sorted(seen)
    span = seen[drawn[-1]] - seen[drawn[0]] if len(drawn) > 1 else float("nan")
    rate = (len(drawn) - 1) / span if span and span == span else float("nan")
    print(f"N={args.nodes}, model {args.model}, {args.threads} torch thread(s), Play frames >= {app_module.PLAY_FRAME_MS} ms, load average "
          f"{os.getloadavg()[0]:.1f}; first page (model load + the default problem) {warm_model:.2f} s")
    print(f"first view of a new problem (click -> graph and tokens drawn), {len(first_views)} problems: "
          f"median {statistics.median(first_views):.2f} s, max {max(first_views):.2f} s")
    if injections:
        print(f"injection compared with {args.other} (click Inject -> both reports drawn; the second model loaded, "
              f"neither had run the problem's injection), {len(injections)} problems: median "
              f"{statistics.median(injections):.2f} s, max {max(injections):.2f} s")
    print(f"Play: {len(drawn)} of {last + 1} states drawn in {span:.2f} s: {rate:.1f} states/s "
          f"(states skipped when a frame was not drawn before the next: {last + 1 - len(drawn)})")


def time_injections(page, args) -> list[float]:
    """Seconds from clicking Inject to both models' reports drawn, on new problems (seeds 101..), after one
    untimed injection that loads the second model; as a person would: view the problem, open the Errors page,
    set state 3, choose the second model, inject into the node the page proposes."""
    from playwright.sync_api import expect

    times = []
    for k in range(args.injections + 1):
        page.locator("#nav-problem").click()
        page.locator("#problem-size").fill(str(args.nodes))
        page.locator("#problem-seed").fill(str(101 + k))
        page.locator("#problem-generate").click()
        expect(page.locator("#problem-dag .gtitle")).to_contain_text(re.compile(r"State \d+ of \d+"))
        page.locator("#nav-errors").click()
        expect(page.locator("#errors-node")).to_contain_text(" = ")
        page.locator("#errors-state").fill("3")  # a state both models' runs reach
        page.locator("#errors-other").click()
        page.get_by_role("option", name=args.other, exact=True).click()
        start = time.perf_counter()
        page.locator("#errors-inject").click()
        expect(page.locator("#errors-report-a")).to_contain_text("Repaired")
        expect(page.locator("#errors-report-b")).to_contain_text(f"{args.other}: wrote")
        if k:  # the first loads the second model
            times.append(time.perf_counter() - start)
    return times


if __name__ == "__main__":
    main()
