"""A bounded soak: 8 concurrent clients against the served app for ~30 s (real HTTP on 127.0.0.1).

Every response must equal the one the same request got when sent alone, none may fail, and the
server's memory must level off (the caches are bounded by count and bytes, not by traffic).
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from app import state as S

pytestmark = pytest.mark.xdist_group("app")

CLIENTS, SECONDS = 8, 30
PROBLEMS = [f"a = {i}\nb = {i + 1}\nc = a + b\nd = c + a\ne = d + b\nf = e" for i in range(6)]


def requests_to_replay() -> list[dict]:
    """Payloads a working session sends: a new problem, scrubbing, codebook, attention, an injection."""
    out = []
    for i, text in enumerate(PROBLEMS):
        model = "default" if i % 2 else "tiny"
        key = S.make_key(model, text).to_json()
        out.append({"output": "..run.data...problem-message.children..",
                    "outputs": [{"id": "run", "property": "data"}, {"id": "problem-message", "property": "children"}],
                    "inputs": [{"id": "problem-submit", "property": "n_clicks", "value": 1},
                               {"id": "problem-generate", "property": "n_clicks", "value": None},
                               {"id": "problem-preset", "property": "value", "value": None}],
                    "state": [{"id": "problem-text", "property": "value", "value": text},
                              {"id": "problem-model", "property": "value", "value": model},
                              {"id": "problem-size", "property": "value", "value": 16},
                              {"id": "problem-seed", "property": "value", "value": 0}],
                    "changedPropIds": ["problem-submit.n_clicks"]})
        for step in (0, 2, 4):
            out.append({"output": "..codebook-usage.figure...codebook-transitions.figure...codebook-entropy.figure..."
                                  "codebook-changes.figure...codebook-message.children..",
                        "outputs": [{"id": f"codebook-{p}", "property": "figure"} for p in ("usage", "transitions", "entropy", "changes")]
                        + [{"id": "codebook-message", "property": "children"}],
                        "inputs": [{"id": "step", "property": "value", "value": step},
                                   {"id": "run", "property": "data", "value": key},
                                   {"id": "codebook-factor", "property": "value", "value": 3}],
                        "state": [], "changedPropIds": ["step.value"]})
        out.append({"output": "..errors-report-a.children...errors-fig-a.figure...errors-report-b.children..."
                              "errors-fig-b.figure...errors-inject-message.children..",
                    "outputs": [{"id": "errors-report-a", "property": "children"}, {"id": "errors-fig-a", "property": "figure"},
                                {"id": "errors-report-b", "property": "children"}, {"id": "errors-fig-b", "property": "figure"},
                                {"id": "errors-inject-message", "property": "children"}],
                    "inputs": [{"id": "errors-inject", "property": "n_clicks", "value": 1}],
                    "state": [{"id": "run", "property": "data", "value": key}, {"id": "errors-state", "property": "value", "value": 1},
                              {"id": "errors-node", "property": "value", "value": 0},
                              {"id": "errors-value", "property": "value", "value": 5},
                              {"id": "errors-other", "property": "value", "value": None}],
                    "changedPropIds": ["errors-inject.n_clicks"]})
    return out


def post(url: str, payload: dict) -> tuple[int, str]:
    request = urllib.request.Request(url + "/_dash-update-component", data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_eight_concurrent_clients_get_the_serial_answers_with_bounded_memory(server_url):
    payloads = requests_to_replay()
    serial = [post(server_url, p) for p in payloads]
    assert all(code == 200 for code, _ in serial), [body[:200] for code, body in serial if code != 200]
    S.clear_caches()  # the soak recomputes under contention
    rss = [rss_mb()]
    mismatches, failures, counts = [], [], [0] * CLIENTS
    stop = time.monotonic() + SECONDS

    def client(i: int) -> None:
        rng = random.Random(i)
        while time.monotonic() < stop:
            j = rng.randrange(len(payloads))
            code, body = post(server_url, payloads[j])
            counts[i] += 1
            if code != 200:
                failures.append((j, code, body[:200]))
            elif body != serial[j][1]:
                mismatches.append(j)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(2)
        rss.append(rss_mb())
    assert failures == [] and mismatches == []
    assert min(counts) > 0 and sum(counts) >= 4 * len(payloads)
    half = len(rss) // 2
    # memory levels off: the second half of the soak grows by less than the first half's level allows
    assert max(rss[half:]) < max(rss[:half]) + 300, rss
