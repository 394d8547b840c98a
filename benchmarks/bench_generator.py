"""Generator throughput: sample_graphs + tokenize + teacher_values, in graphs per second on one core.

Three settings against the reference generator's rates (task-and-model §1.6, one core of a 2-vCPU
AMD EPYC): N = 32 with depth cap 6 (training), N = 128 with cap 36 (validation), N = 128 uncapped (OOD).
Each setting runs a warm-up batch, then ``--runs`` timed batches; the rate is batch / median time.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_generator.py            # markdown table
    PYTHONPATH=. .venv/bin/python benchmarks/bench_generator.py --json     # one JSON object
"""

from __future__ import annotations

import os

# one core, one thread: set before numpy loads its BLAS (the generator uses none, but be explicit)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from workbench.task.config import TaskConfig  # noqa: E402
from workbench.task.graphs import sample_graphs  # noqa: E402
from workbench.task.tokens import tokenize  # noqa: E402
from workbench.task.vocab import Vocab  # noqa: E402


@dataclass(frozen=True)
class Setting:
    name: str
    n_nodes: int
    depth_cap: int | None
    reference: float  # graphs/s of the reference generator


SETTINGS = (
    Setting("N=32, cap 6 (train)", 32, 6, 430.0),
    Setting("N=128, cap 36 (val)", 128, 36, 68.0),
    Setting("N=128, uncapped (OOD)", 128, None, 67.0),
)


@dataclass
class Result:
    setting: str
    n_nodes: int
    depth_cap: int | None
    batch: int
    runs: int
    graphs_per_s: float  # batch / median wall time
    reference_graphs_per_s: float
    speedup: float
    median_ms: float
    sample_ms: float  # medians of the three stages
    tokenize_ms: float
    teacher_ms: float
    cpu_graphs_per_s: float  # batch / median process CPU time (robust to a busy machine)


def pin_to_core(core: int) -> bool:
    """Pin this process to one core; False where the platform cannot."""
    try:
        os.sched_setaffinity(0, {core})
        return True
    except (AttributeError, OSError):
        return False


def measure(setting: Setting, batch: int, runs: int, warmup: int, seed: int) -> Result:
    """Time ``runs`` batches (after ``warmup`` untimed ones) of the full generator for one setting."""
    task = TaskConfig()
    vocab = Vocab.for_task(task)
    rng = np.random.default_rng(seed)
    stages, walls, cpus = [], [], []
    for r in range(warmup + runs):
        c0, t0 = time.process_time(), time.perf_counter()
        graphs = sample_graphs(setting.n_nodes, batch, rng=rng, task=task, depth_cap=setting.depth_cap)
        t1 = time.perf_counter()
        tokens = tokenize(graphs, vocab)
        t2 = time.perf_counter()
        tokens.teacher_values()
        t3, c3 = time.perf_counter(), time.process_time()
        if r >= warmup:
            stages.append((t1 - t0, t2 - t1, t3 - t2))
            walls.append(t3 - t0)
            cpus.append(c3 - c0)
    wall = statistics.median(walls)
    rate = batch / wall
    sample, tok, teacher = (statistics.median(s[i] for s in stages) for i in range(3))
    return Result(setting.name, setting.n_nodes, setting.depth_cap, batch, runs, rate, setting.reference,
                  rate / setting.reference, 1e3 * wall, 1e3 * sample, 1e3 * tok, 1e3 * teacher,
                  batch / statistics.median(cpus))


def markdown(results: list[Result]) -> str:
    lines = ["| setting | batch | graphs/s | reference | speed-up | sample ms | tokenize ms | teacher ms "
             "| graphs/s (CPU time) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.setting} | {r.batch} | {r.graphs_per_s:,.0f} | {r.reference_graphs_per_s:.0f} | "
                     f"{r.speedup:,.0f}x | {r.sample_ms:.1f} | {r.tokenize_ms:.1f} | {r.teacher_ms:.1f} "
                     f"| {r.cpu_graphs_per_s:,.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-32", type=int, default=4096, help="graphs per batch at N=32 (default 4096)")
    parser.add_argument("--batch-128", type=int, default=1024, help="graphs per batch at N=128 (default 1024)")
    parser.add_argument("--runs", type=int, default=7, help="timed batches per setting (median; default 7)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed batches first (default 1)")
    parser.add_argument("--core", type=int, default=0, help="core to pin to (default 0); -1: no pinning")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    pinned = pin_to_core(args.core) if args.core >= 0 else False
    results = [measure(s, args.batch_32 if s.n_nodes == 32 else args.batch_128, args.runs, args.warmup, args.seed)
               for s in SETTINGS]
    machine = {"python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count(),
               "pinned_core": args.core if pinned else None, "processor": platform.processor() or platform.machine()}
    if args.json:
        print(json.dumps({"machine": machine, "results": [asdict(r) for r in results]}, indent=2))
    else:
        core = f"pinned to core {args.core}" if pinned else "not pinned"
        print(f"Python {machine['python']}, numpy {machine['numpy']}, {machine['cpus']} CPUs, {core}; "
              f"median of {args.runs} runs after {args.warmup} warm-up\n")
        print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
