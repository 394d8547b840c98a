"""Latency of the app's step-change callbacks (scrubbing) on an N=128 graph, through Dash's HTTP interface.

The run is computed once per (model, problem) and cached; a step change only re-renders. Each timed
call is a full ``POST /_dash-update-component`` through Flask's test client (request parsing, the
callback, JSON encoding of the response), as the browser sends it when the slider moves.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_app.py            # markdown table
    PYTHONPATH=. .venv/bin/python benchmarks/bench_app.py --json     # the same, as JSON

Target: the Problem page's step change (graph colours and labels patched, token sequence re-rendered)
p95 <= 150 ms.

The injection cold path (issue #23: an injection compared with a second model <= 5 s cold) is the Error
correction page's Inject callback on new problems, both models loaded, nothing of the problem computed:
each model runs the problem, then injects. It is timed side by side in one process, alternating per
problem, with the clean run taken from the cached run (the app) and recomputed beside the corrupted run
(the code before that change, ``app.injection.cached_clean`` switched off):

    PYTHONPATH=. .venv/bin/python benchmarks/bench_app.py --injection-only --injection-problems 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def payload(outputs, inputs, state=(), changed=()):
    out = ".." + "...".join(f"{i}.{p}" for i, p in outputs) + ".." if len(outputs) > 1 else f"{outputs[0][0]}.{outputs[0][1]}"
    return {"output": out,
            "outputs": [{"id": i, "property": p} for i, p in outputs] if len(outputs) > 1
            else {"id": outputs[0][0], "property": outputs[0][1]},
            "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
            "state": [{"id": i, "property": p, "value": v} for i, p, v in state], "changedPropIds": list(changed)}


def timed(client, body) -> tuple[float, int]:
    start = time.perf_counter()
    response = client.post("/_dash-update-component", json=body)
    elapsed = time.perf_counter() - start
    assert response.status_code == 200, response.data[:300]
    assert b"Something went wrong" not in response.data, response.data[:300]
    return elapsed, len(response.data)


def stats(times: list[float], sizes: list[int]) -> dict:
    ms = np.array(times) * 1000
    return {"calls": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "max_ms": round(float(ms.max()), 1), "kb": round(float(np.mean(sizes)) / 1024, 1)}


def inject_body(data: dict, state: int, node: int, other: str) -> dict:
    """The Error correction page's Inject click: ``node`` overwritten in ``state`` (a random wrong value), and the
    same on model ``other``."""
    report = [("errors-report-a", "children"), ("errors-fig-a", "figure"), ("errors-report-b", "children"),
              ("errors-fig-b", "figure"), ("errors-inject-message", "children")]
    return payload(report, [("errors-inject", "n_clicks", 1)],
                   [("run", "data", data), ("errors-state", "value", state), ("errors-node", "value", node),
                    ("errors-value", "value", None), ("errors-other", "value", other)], ["errors-inject.n_clicks"])


def injection_target(run) -> tuple[int, int]:
    """``(state, node)``: the middle state, and the deepest node the run has written by then (a real repair case)."""
    state = run.n_steps // 2
    written = np.nonzero(run.values[state] != run.vocab.empty)[0]
    return state, int(written[np.argmax(run.depth[written])]) if len(written) else 0


def time_injections(client, model: str, other: str, seeds: list[int], nodes: int) -> dict:
    """Cold Inject clicks per variant (clean run rerun / taken from the cache), alternating which goes first."""
    from app import injection as I
    from app import state as S
    from app.cache import clear_all

    use_cache = I.cached_clean
    variants = {"clean run rerun (before)": lambda run, tb: None, "clean run from the cache": use_cache}
    times: dict[str, list[float]] = {name: [] for name in variants}
    sizes: dict[str, list[int]] = {name: [] for name in variants}
    for i, seed in enumerate(seeds):
        key = S.make_key(model, S.generate_problem(model, nodes, seed))
        state, node = injection_target(S.get_run(key))
        order = list(variants) if i % 2 == 0 else list(variants)[::-1]
        for name in order:
            clear_all()  # results only: both models stay loaded
            I.cached_clean = variants[name]
            try:
                elapsed, size = timed(client, inject_body(key.to_json(), state, node, other))
            finally:
                I.cached_clean = use_cache
            times[name].append(elapsed)
            sizes[name].append(size)
    return {name: {**stats(times[name], sizes[name]), "all_s": [round(t, 2) for t in times[name]],
                   "median_s": round(float(np.median(times[name])), 2)} for name in variants}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--nodes", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reps", type=int, default=60, help="timed step changes per callback")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--other", default="no-error-correction", help="the second model of the injection")
    parser.add_argument("--injection-problems", type=int, default=3, help="new problems the cold injection is timed on")
    parser.add_argument("--injection-only", action="store_true", help="skip the step-change callbacks")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from app import state as S
    from app.app import create_app

    app = create_app(args.model)
    client = app.server.test_client()
    key = S.make_key(args.model, S.generate_problem(args.model, args.nodes, args.seed))
    start = time.perf_counter()
    run = S.get_run(key)
    first_run_s = time.perf_counter() - start
    start = time.perf_counter()
    S.step_patterns(key, 0)
    first_pattern_s = time.perf_counter() - start
    data = key.to_json()
    rng = np.random.default_rng(0)
    steps = rng.integers(0, run.n_steps + 1, size=args.reps).tolist()

    problem_out = [("problem-dag", "figure"), ("problem-tokens", "children"), ("problem-drawn", "data")]
    cases = {
        "Problem: step change (patch graph, re-render tokens)": lambda t: payload(
            problem_out, [("step", "value", t), ("run", "data", data), ("problem-init", "data", True), ("node", "data", None),
                          ("problem-message", "children", None)],
            [("problem-drawn", "data", key.digest)], ["step.value"]),
        "Problem: new problem (whole graph drawn)": lambda t: payload(
            problem_out, [("step", "value", t), ("run", "data", data), ("problem-init", "data", True), ("node", "data", None),
                          ("problem-message", "children", None)],
            [("problem-drawn", "data", None)], ["run.data"]),
        "Codebook: step change (4 figures)": lambda t: payload(
            [("codebook-usage", "figure"), ("codebook-transitions", "figure"), ("codebook-entropy", "figure"),
             ("codebook-changes", "figure"), ("codebook-message", "children")],
            [("step", "value", t), ("run", "data", data), ("codebook-factor", "value", 3)], changed=["step.value"]),
        "Error correction: step change (events timeline)": lambda t: payload(
            [("errors-events", "figure"), ("errors-message", "children")],
            [("step", "value", t), ("run", "data", data), ("errors-init", "data", True)], changed=["step.value"]),
        "Attention: step change, patterns cached (scores, every head)": lambda t: payload(
            [("attention-scores", "figure"), ("attention-grid", "figure"), ("attention-message", "children")],
            [("step", "value", t), ("run", "data", data), ("attention-init", "data", True)], changed=["step.value"]),
        "Attention: step change (graph)": lambda t: payload(
            [("attention-dag", "figure")],
            [("step", "value", t), ("run", "data", data), ("node", "data", 5), ("attention-init", "data", True)],
            changed=["step.value"]),
        "Attention: step change, a node's reads and circuit chain": lambda t: payload(
            [("attention-node", "figure"), ("attention-chain", "figure")],
            [("step", "value", t), ("run", "data", data), ("node", "data", run.n_nodes - 1), ("attention-init", "data", True)],
            changed=["step.value"]),
        "Attention: one head's pattern, cached": lambda t: payload(
            [("attention-pattern", "figure")],
            [("step", "value", t), ("run", "data", data), ("attention-layer", "value", 0), ("attention-head", "value", 1)],
            changed=["step.value"]),
    }
    rows = {}
    if not args.injection_only:
        for t in range(run.n_steps + 1):  # warm the per-step pattern cache (the first visit of a step computes it)
            S.step_patterns(key, t)
        for name, body in cases.items():
            timed(client, body(steps[0]))  # warm-up
            times, sizes = zip(*(timed(client, body(t)) for t in steps))
            rows[name] = stats(list(times), list(sizes))
        S.clear_caches()
        S.get_run(key)
        cold = [timed(client, cases["Attention: one head's pattern, cached"](t)) for t in range(min(run.n_steps + 1, 8))]
        rows["Attention: one head's pattern, first visit of a step (one model step)"] = stats(*map(list, zip(*cold)))
    injections = {}
    if args.injection_problems:
        S.get_model(args.other)  # both models loaded, and their hook points built, before anything is timed
        time_injections(client, args.model, args.other, [args.seed], args.nodes)
        seeds = list(range(args.seed + 1, args.seed + 1 + args.injection_problems))
        injections = time_injections(client, args.model, args.other, seeds, args.nodes)

    report = {"model": args.model, "nodes": args.nodes, "seed": args.seed, "positions": run.length, "states": run.n_steps + 1,
              "first_run_s": round(first_run_s, 2), "first_pattern_s": round(first_pattern_s, 3), "threads": args.threads,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}",
              "load_average": [round(x, 1) for x in os.getloadavg()], "callbacks": rows,
              "injection_cold": {"other": args.other, "problem_seeds": seeds if args.injection_problems else [],
                                 "variants": injections}}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"N={args.nodes} (seed {args.seed}, {run.length} positions, {run.n_steps + 1} states) on {args.model}; "
          f"first run {first_run_s:.2f} s, first step's patterns {first_pattern_s * 1000:.0f} ms; {report['machine']}; "
          f"load average {report['load_average']}\n")
    if rows:
        print("| callback | calls | p50 ms | p95 ms | max ms | response KB |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, r in rows.items():
            print(f"| {name} | {r['calls']} | {r['p50_ms']} | {r['p95_ms']} | {r['max_ms']} | {r['kb']} |")
    if injections:
        print(f"\nInject, compared with {args.other}, cold (N={args.nodes}, problem seeds {seeds}; side by side):\n")
        print("| injection | problems | median s | each s |")
        print("|---|---:|---:|---|")
        for name, r in injections.items():
            print(f"| {name} | {r['calls']} | {r['median_s']} | {', '.join(map(str, r['all_s']))} |")


if __name__ == "__main__":
    main()
