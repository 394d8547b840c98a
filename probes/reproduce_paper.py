#!/usr/bin/env python
"""Run every analysis on the shipped models and write the results page beside the paper's findings.

    python probes/reproduce_paper.py                      # all models in models/, full default sizes
    python probes/reproduce_paper.py --models default --reuse   # rewrite the page from existing JSONs
    python probes/reproduce_paper.py --quick --out /tmp/x       # tiny sizes (tests, smoke runs)

Each analysis writes models/<name>/probes/<analysis>.json (+ PNG, HTML), or <out>/<name>/ with --out;
the page goes to docs/results.md with the plots copied to docs/results/<name>/.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

import click

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from workbench.analysis.report import ANALYSES, SCRIPTS, write_page  # noqa: E402
from workbench.analysis.script import main  # noqa: E402

#: small sizes for --quick (smoke tests): every analysis in seconds on a tiny model
QUICK = {
    "probes": ["--count", "12", "--nodes", "8", "--steps", "2", "--tasks", "value@rhs,computed@operand,operand0@rhs"],
    "lens": ["--count", "4", "--nodes", "8", "--steps", "2"],
    "routing": ["--count", "4", "--nodes", "8", "--steps", "2"],
    "attribution": ["--templates", "1", "--nodes", "8", "--fan-ins", "1,3", "--max-batch", "3"],
    "mlp": ["--count", "4", "--nodes", "8", "--steps", "2"],
    "codebook": ["--count", "4", "--nodes", "8", "--steps", "3"],
    "correction": ["--sizes", "8", "--count", "4", "--inject-nodes", "8", "--inject-count", "4", "--inject-steps", "1",
                   "--ks", "1", "--max-steps", "4"],
    "patching": ["--count", "3", "--nodes", "8", "--steps", "2"],
}


def no_error_correction_twins(name: str, names: list[str]) -> list[str]:
    """Other models with error correction off and the same architecture: the ablation to compare injections with."""
    from workbench.model.checkpoint import read_config, resolve_model

    meta = read_config(resolve_model(name))["model"]
    if meta.get("corruption_prob", 0) == 0:
        return []
    twins = []
    for other in names:
        if other == name:
            continue
        m = read_config(resolve_model(other))["model"]
        same = all(m.get(k) == meta.get(k) for k in ("n_layers", "n_heads", "d_model", "recurrence", "latent"))
        if same and m.get("corruption_prob", 0) == 0:
            twins.append(other)
    return twins


@click.command(name="reproduce_paper")
@click.option("--models", "model_names", default="", help="comma-separated models (default: every model in models/)")
@click.option("--only", default=",".join(ANALYSES), show_default=True, help="analyses to run")
@click.option("--out", default=None, help="results root: <out>/<model>/ (default: models/<model>/probes)")
@click.option("--doc", default=str(HERE.parent / "docs" / "results.md"), show_default=True, help="the results page")
@click.option("--plots", default=None, help="where the page's plots go (default: <doc folder>/results)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True)
@click.option("--quick", is_flag=True, help="tiny sizes (smoke test)")
@click.option("--reuse", is_flag=True, help="reuse existing result JSONs instead of rerunning")
@click.option("--quiet", is_flag=True, help="no progress bars")
def command(model_names, only, out, doc, plots, seed, threads, quick, reuse, quiet):
    """Run all analyses on the shipped models and write docs/results.md."""
    from tqdm.auto import tqdm

    from workbench.analysis.results import load_result
    from workbench.errors import WorkbenchError
    from workbench.model.checkpoint import available_models, resolve_model

    names = [n.strip() for n in model_names.split(",") if n.strip()] or available_models()
    if not names:
        raise WorkbenchError("no models to analyse: models/ is empty; give --models")
    analyses = [a.strip() for a in only.split(",") if a.strip()]
    bad = [a for a in analyses if a not in ANALYSES]
    if bad:
        raise WorkbenchError(f"unknown analyses {bad}; the analyses are {list(ANALYSES)}")
    results, sources = {}, {}
    jobs = [(m, a) for m in names for a in analyses]
    bar = tqdm(jobs, desc="analyses", disable=quiet, dynamic_ncols=True)
    for name, analysis in bar:
        bar.set_postfix_str(f"{name}: {analysis}")
        key = Path(name).name  # a model given by path is listed by its folder's name
        folder = Path(out) / key if out else resolve_model(name) / "probes"
        sources[key] = folder
        path = folder / f"{analysis}.json"
        if not (reuse and path.is_file()):
            script = importlib.import_module(SCRIPTS[analysis].removesuffix(".py"))
            args = ["--model", name, "--out", str(folder), "--seed", str(seed), "--threads", str(threads), "--quiet"]
            args += QUICK[analysis] if quick else []
            if analysis == "correction":
                twins = no_error_correction_twins(name, names)
                args += ["--compare", ",".join(twins)] if twins else []
            start = time.perf_counter()
            script.command.main(args=args, standalone_mode=False)
            bar.write(f"{name}: {analysis} done in {time.perf_counter() - start:.0f} s")
        results.setdefault(key, {})[analysis] = load_result(path)
    doc_path = Path(doc)
    page = write_page(results, doc_path, Path(plots) if plots else doc_path.parent / "results", sources=sources)
    click.echo(f"wrote {page}")


if __name__ == "__main__":
    main(command)
