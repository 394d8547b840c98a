"""The quick analyses a model without saved probe results can get from the Probes page, run in the background.

Each analysis is its own ``probes/`` script in a subprocess (the same command a person would type, with a
small ``--count``), one after another, so the app's model lock and the served sessions are never held up;
the page polls ``job(model)`` for progress. A run starts only with a one-time token the page was given
when it offered the button (``offer``): a stray or hand-made request cannot start work.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import WorkbenchError

PROBES = Path(__file__).resolve().parents[1] / "probes"
#: (script, analysis, options): the analyses that take about a minute each on a CPU at these sizes
QUICK = (("codebook_usage.py", "codebook", ("--count", "32")), ("bottleneck_lens.py", "lens", ("--count", "32")),
         ("attention_routing.py", "routing", ("--count", "32")))
_LOCK = threading.Lock()
_JOBS: dict[str, "Job"] = {}
_OFFERS: dict[str, str] = {}  # one-time token -> model


@dataclass
class Job:
    """One model's quick analyses: how many are done, which one runs, the first failure."""

    model: str
    total: int
    done: int = 0
    current: str = ""
    error: str | None = None
    finished: bool = False


def offer(model: str) -> str:
    """A one-time token that lets the page that offered the button start ``model``'s quick analyses."""
    token = secrets.token_urlsafe(16)
    with _LOCK:
        _OFFERS[token] = model
        while len(_OFFERS) > 1000:  # old offers of closed pages
            _OFFERS.pop(next(iter(_OFFERS)))
    return token


def start(token: str) -> Job:
    """Start the quick analyses the token was offered for (or return the job already running for that model)."""
    with _LOCK:
        model = _OFFERS.pop(token, None) if isinstance(token, str) else None
        if model is None:
            raise WorkbenchError("this button has expired; reload the page to run the analyses")
        running = _JOBS.get(model)
        if running is not None and not running.finished:
            return running
        if not PROBES.is_dir():
            raise WorkbenchError(f"the probes/ scripts are not here ({PROBES}); run them from a checkout of the repository")
        job = _JOBS[model] = Job(model, len(QUICK))
    threading.Thread(target=_run, args=(job,), daemon=True, name=f"quick-analyses-{model}").start()
    return job


def job(model: str) -> Job | None:
    """The model's latest job, running or finished; None when none was started in this process."""
    with _LOCK:
        return _JOBS.get(model)


def _run(job: Job) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for script, analysis, options in QUICK:
        job.current = analysis
        done = subprocess.run([sys.executable, str(PROBES / script), "--model", job.model, "--quiet", "--threads", "1",
                               *options], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            job.error = f"{analysis} failed: {last}"
            break
        job.done += 1
    job.current, job.finished = "", True
