"""Screenshots of every page for the docs: ``python -m app.screenshots [--out docs] [--model default] [--nodes 64]``.

Serves the app on a free local port, drives Debian's Chromium through Playwright, and walks ``tour``:
every page on a generated graph of N nodes (64 by default: the views must stay readable at size),
writing ``app-<page>.png``. The browser tests walk the same tour with their checks (no overlapping
labels, no clipped text, titles that name the step their numbers come from), so the pictures in the
README are what the tests saw.
"""

from __future__ import annotations

import argparse
import re
import threading
from collections.abc import Callable
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 1000}  # the narrowest width the pages are laid out for

#: pairs of drawn labels whose boxes intersect (by more than a pixel), from the DOM
OVERLAPS_JS = """sel => {
  const boxes = [...document.querySelectorAll(sel)].filter(e => e.textContent.trim())
    .map(e => [e.textContent, e.getBoundingClientRect()]).filter(([, r]) => r.width > 0 && r.height > 0);
  const out = [];
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const [ta, a] = boxes[i], [tb, b] = boxes[j];
    if (a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1) out.push([ta, tb]);
  }
  return out;
}"""

#: controls whose text does not fit their box: dropdown values and placeholders, buttons, inputs' values and placeholders
OVERFLOW_JS = """() => {
  const bad = [];
  for (const e of document.querySelectorAll('.dash-dropdown-value, .dash-dropdown-value-item, .dash-dropdown-placeholder, button, .nav-link'))
    if (e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1) bad.push((e.id || e.className) + ': ' + e.textContent);
  const ctx = document.createElement('canvas').getContext('2d');
  for (const e of document.querySelectorAll('input')) {
    const text = e.value || e.placeholder;
    if (!text || e.offsetParent === null || e.type === 'checkbox' || e.type === 'radio') continue;
    const st = getComputedStyle(e);
    ctx.font = st.fontStyle + ' ' + st.fontWeight + ' ' + st.fontSize + ' ' + st.fontFamily;
    const room = e.clientWidth - parseFloat(st.paddingLeft) - parseFloat(st.paddingRight) - (e.type === 'number' ? 18 : 0);
    if (ctx.measureText(text).width > room) bad.push(e.id + ': ' + text);
  }
  return bad;
}"""


def overlaps(page, selector: str) -> list:
    """Pairs of labels matching ``selector`` drawn over each other."""
    return page.evaluate(OVERLAPS_JS, selector)


def overflowing(page) -> list:
    """Controls on the page whose text is cut off."""
    return page.evaluate(OVERFLOW_JS)


def tour(page, url: str, *, nodes: int = 64, seed: int = 0, shoot: Callable[[str], None] = lambda name: None,
         check: Callable[[str], None] = lambda name: None) -> None:
    """Every page on a generated N-node graph; ``shoot(name)`` where a screenshot belongs, ``check(name)`` after
    each page has drawn."""
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.locator("#problem-text")).not_to_have_value("")
    page.locator("#problem-size").fill(str(nodes))
    page.locator("#problem-seed").fill(str(seed))
    page.locator("#problem-generate").click()
    expect(page.locator("#problem-message")).to_contain_text(f"Generated a graph of {nodes} nodes")
    expect(page.locator("#run-info")).to_contain_text(f"{nodes} nodes")
    expect(page.locator("#problem-dag .gtitle")).to_contain_text("State")
    point = page.locator("#problem-dag .scatterlayer .trace").nth(1).locator("path.point").nth(nodes // 2)
    point.scroll_into_view_if_needed()
    box = point.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(page.locator("#problem-node")).to_contain_text("reads:")
    page.evaluate("window.scrollTo(0, 0)")
    check("problem")
    shoot("problem")

    page.locator("#nav-attention").click()
    expect(page.locator("#attention-pattern .gtitle")).to_contain_text("reading state")
    expect(page.locator("#attention-node .gtitle")).to_contain_text("reads")
    check("attention")
    shoot("attention")
    chain = page.locator("#attention-chain")  # the selected node's circuit, further down the page
    expect(chain.locator(".gtitle")).to_contain_text("The circuit of")
    page.locator("#attention-node").evaluate("e => e.scrollIntoView({block: 'start'})")
    shoot("attention-chain")
    page.evaluate("window.scrollTo(0, 0)")

    page.locator("#nav-codebook").click()
    expect(page.locator("#codebook-usage .gtitle")).to_contain_text("codes in use")
    check("codebook")
    shoot("codebook")

    page.locator("#nav-errors").click()
    expect(page.locator("#errors-events .gtitle")).to_contain_text("Events")
    expect(page.locator("#errors-node")).to_contain_text(" = ")  # the node choices have arrived
    last = int(re.search(r"(\d+) steps", page.locator("#run-info").text_content()).group(1))
    page.locator("#errors-state").fill(str(last - 1))  # the selected node is written by then: a real repair
    page.locator("#errors-inject").click()
    expect(page.locator("#errors-report-a")).to_contain_text("Repaired")
    page.locator("#errors-report-a").scroll_into_view_if_needed()
    check("errors")
    shoot("errors")

    page.locator("#nav-probes").click()
    expect(page.locator("#probes-results")).not_to_be_empty()
    check("probes")
    shoot("probes")

    page.locator("#nav-generalization").click()
    expect(page.locator("#generalization-figure .gtitle")).to_contain_text("Generalization")
    check("generalization")
    shoot("generalization")
    expect(page.locator("#generalization-training .gtitle")).to_contain_text("Training curves")
    page.locator("#generalization-training").scroll_into_view_if_needed()
    check("training")
    shoot("training")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs")
    parser.add_argument("--model", default="default")
    parser.add_argument("--nodes", type=int, default=64, help="size of the generated problem shown")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch
    from playwright.sync_api import expect, sync_playwright
    from werkzeug.serving import make_server

    from app.app import create_app

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    server = make_server("127.0.0.1", 0, create_app(args.model).server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    expect.set_options(timeout=60_000)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        tour(page, f"http://127.0.0.1:{server.server_port}", nodes=args.nodes, seed=args.seed,
             shoot=lambda name: shot(page, out / f"app-{name}.png"))
        browser.close()
    server.shutdown()


def shot(page, path: Path) -> None:
    page.wait_for_timeout(800)  # let plotly finish drawing
    page.screenshot(path=str(path), full_page=False)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
