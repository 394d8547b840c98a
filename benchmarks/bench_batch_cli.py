"""Batch solving from the CLI: ``workbench solve FILE.jsonl --json`` end to end, and where its time goes.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_batch_cli.py                # 1,000 problems of N=128
    PYTHONPATH=. .venv/bin/python benchmarks/bench_batch_cli.py --count 50     # a quick run of the script
    PYTHONPATH=. .venv/bin/python benchmarks/bench_batch_cli.py --json         # the same, as JSON

1. ``workbench generate --nodes N --count C`` writes the problems (ground truth beside each); the batch
   file keeps ``{"id", "problem"}`` per line, the public batch format of ``workbench solve --help``.
2. ``workbench solve FILE.jsonl --json --model M`` runs in a subprocess with one thread: the CLI sets no
   thread count of its own, so torch takes ``OMP_NUM_THREADS`` (set to 1 here, and checked).
3. In this process, one thread, the same library path stage by stage: read the file, parse each line
   (``cli.read_batch_line``, then ``read_problems`` as ``solve`` does), encode (names to the model's pool,
   tokenize), the model (``run_chunked``), decode (``decode_values`` into ``Solution``s), JSON (the
   output lines, written to a file). Start-up (interpreter and imports, timed in a fresh subprocess) and
   loading the model are timed too, so the stages add up to about the end-to-end time.

The answers of the CLI and of the staged run must agree line for line (asserted); the share of problems
solved exactly (every value equal to ``generate``'s ground truth) is reported beside the speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the installed console script beside this interpreter (what a user types), else the module
_SCRIPT = Path(sys.executable).parent / "workbench"
WORKBENCH = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "workbench.cli"]
IMPORTS = "import torch, click, workbench.cli, workbench.solving, workbench.model.checkpoint"


def one_thread_env() -> dict[str, str]:
    """The environment of the subprocesses: one OpenMP/MKL thread, this checkout importable."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def write_batch(folder: Path, nodes: int, count: int, seed: int) -> tuple[Path, dict[str, dict[str, int]], float]:
    """The batch file of ``count`` generated problems, their true values by id, and seconds to generate."""
    generated = folder / "generated.jsonl"
    start = time.perf_counter()
    subprocess.run(WORKBENCH + ["generate", "--nodes", str(nodes), "--count", str(count), "--seed", str(seed),
                                "--out", str(generated)], check=True, env=one_thread_env())
    seconds = time.perf_counter() - start
    rows = [json.loads(line) for line in generated.read_text().splitlines() if line.strip()]
    batch = folder / "batch.jsonl"
    batch.write_text("".join(json.dumps({"id": r["id"], "problem": r["problem"]}) + "\n" for r in rows))
    return batch, {r["id"]: r["values"] for r in rows}, seconds


def run_cli(batch: Path, model: str, out: Path, batch_size: int) -> dict:
    """Wall time of ``workbench solve batch --json --model model --batch-size n`` in a one-thread subprocess."""
    env = one_thread_env()
    threads = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=env,
                             check=True, capture_output=True, text=True).stdout.strip()
    with open(out, "w") as stdout, open(out.with_suffix(".stderr"), "w") as stderr:
        start = time.perf_counter()
        proc = subprocess.run(WORKBENCH + ["solve", str(batch), "--json", "--model", model,
                                                 "--batch-size", str(batch_size)], env=env,
                              stdout=stdout, stderr=stderr)
        wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"workbench solve exited {proc.returncode}: {out.with_suffix('.stderr').read_text()[-2000:]}")
    return {"wall_s": wall, "torch_threads": int(threads)}


def startup_seconds(repeats: int = 3) -> float:
    """Median seconds of a fresh interpreter importing what ``workbench solve`` imports."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", IMPORTS], env=one_thread_env(), check=True)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def staged(batch: Path, model_name: str, out: Path, batch_size: int) -> tuple[dict[str, float], list[str]]:
    """Seconds of each stage of the CLI's batch path, run here one stage at a time; and the output lines."""
    import torch

    torch.set_num_threads(1)
    from workbench.cli import read_batch_line
    from workbench.model.checkpoint import load_model
    from workbench.solving import Solution, decode_values, run_chunked
    from workbench.task.encoding import encode, read_problems

    clock, t = time.perf_counter, {}
    start = clock()
    model = load_model(model_name, device="cpu")
    t["load model"] = clock() - start

    start = clock()
    text = batch.read_text()
    t["read file"] = clock() - start

    start = clock()
    lines = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    items = [read_batch_line(line, number, str(batch), model.task) for number, line in lines]
    parsed = read_problems([p for _, p in items], model.task)
    t["parse (JSON lines, text format)"] = clock() - start

    start = clock()
    tb, _ = encode(parsed, model.task, seed=0)
    t["encode (names, tokenize)"] = clock() - start

    start = clock()
    finals, iterations, converged = run_chunked(model, tb, batch_size=batch_size, progress=True)
    t["model (`run_chunked`)"] = clock() - start

    start = clock()
    values = decode_values(tb, finals, parsed, model.task.modulus)
    solutions = [Solution(v, int(i), bool(c)) for v, i, c in zip(values, iterations, converged)]
    t["decode (`decode_values`)"] = clock() - start

    start = clock()
    lines_out = [json.dumps({"id": item_id, **sol.to_dict()}) for (item_id, _), sol in zip(items, solutions)]
    out.write_text("\n".join(lines_out) + "\n")
    t["JSON (dumps, write)"] = clock() - start
    return t, lines_out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--nodes", type=int, default=128, help="nodes per graph (issue #23: N=128)")
    ap.add_argument("--count", type=int, default=1000, help="problems in the batch (issue #23: 1,000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=64, help="problems per forward pass (the CLI's default: 64)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_batch_cli_") as tmp:
        folder = Path(tmp)
        batch, truth, gen_s = write_batch(folder, args.nodes, args.count, args.seed)
        cli = run_cli(batch, args.model, folder / "cli.jsonl", args.batch_size)
        cli_lines = (folder / "cli.jsonl").read_text().splitlines()
        startup = startup_seconds()
        stages, lines = staged(batch, args.model, folder / "staged.jsonl", args.batch_size)
    assert cli_lines == lines, "the CLI and the staged run answered differently"
    answers = [json.loads(line) for line in lines]
    exact = sum(a["values"] == truth[a["id"]] for a in answers)

    stages = {"start-up (interpreter, imports)": startup, **stages}
    total = sum(stages.values())
    report = {
        "model": args.model, "nodes": args.nodes, "count": args.count, "batch_size": args.batch_size, "generate_s": gen_s,
        "cli_wall_s": cli["wall_s"], "cli_graphs_per_s": args.count / cli["wall_s"], "cli_torch_threads": cli["torch_threads"],
        "stages_s": stages, "stages_total_s": total, "staged_graphs_per_s": args.count / total,
        "model_graphs_per_s": args.count / stages["model (`run_chunked`)"],
        "exact": exact, "complete": sum(a["complete"] for a in answers), "converged": sum(a["converged"] for a in answers),
        "mean_iterations": sum(a["iterations"] for a in answers) / len(answers),
        "machine": (f"{platform.machine()} ({platform.processor() or 'CPU'}), {os.cpu_count()} cores, Python "
                    f"{platform.python_version()}"),
        "load_average_before": load_before[0], "load_average_after": os.getloadavg()[0],
    }
    print(json.dumps(report, indent=2) if args.json else markdown(report))


def markdown(r: dict) -> str:
    lines = [
        f"`workbench solve batch.jsonl --json --model {r['model']} --batch-size {r['batch_size']}` "
        f"on {r['count']} generated problems of N={r['nodes']} "
        f"(`workbench generate`, {r['generate_s']:.1f} s), one subprocess, torch threads {r['cli_torch_threads']} "
        f"(`OMP_NUM_THREADS=1`): **{r['cli_wall_s']:.1f} s end to end, {r['cli_graphs_per_s']:.2f} graphs/s**. "
        f"{r['machine']}; load average {r['load_average_before']:.1f} before, {r['load_average_after']:.1f} after. "
        f"Answers: {r['exact']} of {r['count']} exactly right, {r['complete']} complete, {r['converged']} converged, "
        f"{r['mean_iterations']:.1f} iterations on average; the staged run below gave the same output, line for line.",
        "",
        f"The same path in one process, one stage at a time (`benchmarks/bench_batch_cli.py`; start-up timed in a "
        f"fresh interpreter, median of 3):",
        "",
        "| stage | seconds | share |",
        "|---|---:|---:|",
    ]
    total = r["stages_total_s"]
    for name, s in r["stages_s"].items():
        lines.append(f"| {name} | {s:.2f} | {s / total:.1%} |")
    lines += [f"| **sum** | **{total:.1f}** | {total / r['cli_wall_s']:.0%} of the CLI's wall time |", "",
              f"Model alone: {r['model_graphs_per_s']:.2f} graphs/s; whole staged path {r['staged_graphs_per_s']:.2f} graphs/s."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
