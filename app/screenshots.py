"""Screenshots of every page for the docs: ``python -m app.screenshots [--out docs] [--model default]``.

Serves the app on a free local port, drives Debian's Chromium through Playwright (as the browser tests
do), and writes ``app-<page>.png`` per page.
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update", "--no-first-run"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs")
    parser.add_argument("--model", default="default")
    parser.add_argument("--nodes", type=int, default=16, help="size of the generated problem shown")
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
    url = f"http://127.0.0.1:{server.server_port}"
    expect.set_options(timeout=60_000)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        expect(page.locator("#problem-text")).not_to_have_value("")
        page.locator("#problem-size").fill(str(args.nodes))
        page.locator("#problem-seed").fill(str(args.seed))
        page.locator("#problem-generate").click()
        expect(page.locator("#problem-message")).to_contain_text("Generated")
        page.locator("#step-prev").click()
        expect(page.locator("#problem-dag .gtitle")).to_contain_text("State")
        shot(page, out / "app-problem.png")

        page.locator("#nav-attention").click()
        expect(page.locator("#attention-pattern .gtitle")).to_contain_text("at the step reading")
        point = page.locator("#attention-dag .scatterlayer .trace").nth(1).locator("path.point").last
        point.scroll_into_view_if_needed()
        box = point.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        expect(page.locator("#attention-node .gtitle")).to_contain_text("reads")
        page.evaluate("window.scrollTo(0, 0)")
        shot(page, out / "app-attention.png")

        page.locator("#nav-codebook").click()
        expect(page.locator("#codebook-usage .gtitle")).to_contain_text("codes in use")
        shot(page, out / "app-codebook.png")

        page.locator("#nav-errors").click()
        expect(page.locator("#errors-events .gtitle")).to_contain_text("Events")
        page.locator("#errors-state").fill("2")
        page.locator("#errors-inject").click()
        expect(page.locator("#errors-report-a")).to_contain_text("Repaired")
        shot(page, out / "app-errors.png")

        page.locator("#nav-probes").click()
        expect(page.locator("#probes-results")).not_to_be_empty()
        shot(page, out / "app-probes.png")

        page.locator("#nav-generalization").click()
        expect(page.locator("#generalization-figure .gtitle")).to_contain_text("Generalization")
        shot(page, out / "app-generalization.png")
        expect(page.locator("#generalization-training .gtitle")).to_contain_text("Training curves")
        page.locator("#generalization-training").scroll_into_view_if_needed()
        shot(page, out / "app-training.png")
        browser.close()
    server.shutdown()


def shot(page, path: Path) -> None:
    page.wait_for_timeout(800)  # let plotly finish drawing
    page.screenshot(path=str(path), full_page=False)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
