"""The ``workbench`` command: info, solve, generate, train, eval, compare, app.

Bad input ends with one line on stderr (``error: ...``) and exit code 2, never a traceback; outputs
are written only once everything succeeded.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any
from pathlib import Path

import click

from workbench.errors import WorkbenchError
from workbench.exits import run_command
from workbench.zoo import ZOO
from workbench.records import SCRATCH, check_destination, check_tag, output_folder, parse_sizes, refuse_smaller

MODEL_HELP = "model name in models/ (e.g. default) or path to a model folder"


def model_and_sizes(model_name: str, sizes: str):
    """The model, and ``--sizes`` parsed and checked against its name pool (a graph needs a name per node)."""
    from workbench.model.checkpoint import load_model

    size_list = parse_sizes(sizes)
    model = load_model(model_name)
    if max(size_list) > model.task.n_names:
        raise WorkbenchError(f"--sizes {sizes!r}: graphs of {max(size_list)} nodes need more variables than this "
                             f"model's name pool of {model.task.n_names}; use sizes up to {model.task.n_names}")
    return model, size_list


def read_input(path: str) -> str:
    """Text of FILE, or of stdin for ``-``."""
    if path == "-":
        return sys.stdin.read()
    p = Path(path)
    if not p.is_file():
        raise WorkbenchError(f"problem file '{path}' does not exist; give a file in the text format or - for stdin")
    try:
        return p.read_text()
    except UnicodeDecodeError:
        raise WorkbenchError(f"problem file '{path}' is not UTF-8 text") from None


def write_output(path: str | None, text: str) -> None:
    """Print, or write a file atomically."""
    if path is None or path == "-":
        sys.stdout.write(text)
        return
    from workbench.model.checkpoint import write_text_atomic

    out = Path(path)
    if not out.parent.exists():
        raise WorkbenchError(f"cannot write '{path}': folder '{out.parent}' does not exist")
    write_text_atomic(out, text)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli() -> None:
    """The workbench: looped transformers that reason in latent space, and the tools to watch them think."""


@cli.command()
@click.option("--model", "model_name", default="default", show_default=True, help=MODEL_HELP)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def info(model_name: str, as_json: bool) -> None:
    """Describe a model: size, mechanisms, task, training and evaluation."""
    from workbench.model.checkpoint import load_model
    from workbench.model.info import model_info, format_info

    model = load_model(model_name, device="cpu")
    data = model_info(model)
    click.echo(json.dumps(data, indent=2) if as_json else format_info(data))


def read_batch_line(line: str, number: int, file: str, task) -> tuple[Any, Any]:
    """One batch line: (id, parsed problem), or (id or None, WorkbenchError naming the line)."""
    from workbench.task.text import parse_problem

    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, WorkbenchError(f"{file} line {number}: not JSON ({exc.msg}); each line is {{\"id\": ..., \"problem\": ...}}")
    if not isinstance(item, dict) or not isinstance(item.get("problem"), str) or "id" not in item:
        return (item.get("id") if isinstance(item, dict) else None,
                WorkbenchError(f"{file} line {number}: needs an \"id\" and a \"problem\" string"))
    try:
        return item["id"], parse_problem(item["problem"], task)
    except WorkbenchError as exc:
        return item["id"], WorkbenchError(f"{file} line {number} (id {item['id']!r}): {exc}")


def solve_batch(file: str, text: str, model, *, batch_size: int, max_steps: int | None, seed: int) -> int:
    """Answer every good line of a JSONL batch, in order; a bad line gets ``{"id", "error"}`` and a
    stderr line naming it, and the exit code is 2 when any line failed (no good answer is lost)."""
    from workbench.solving import solve as run_solve

    lines = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise WorkbenchError(f"{file} holds no problems; each line is {{\"id\": ..., \"problem\": ...}}")
    items = [read_batch_line(line, number, file, model.task) for number, line in lines]
    good = [(i, p) for i, p in items if not isinstance(p, WorkbenchError)]
    solutions = iter(run_solve(model, [p for _, p in good], batch_size=batch_size, max_steps=max_steps, seed=seed,
                               progress=True))
    out = []
    for item_id, parsed in items:
        if isinstance(parsed, WorkbenchError):
            out.append(json.dumps({"id": item_id, "error": str(parsed)}))
            click.echo(f"error: {parsed}", err=True)
            continue
        sol = next(solutions)
        out.append(json.dumps({"id": item_id, **sol.to_dict()}))
        if sol.warning():
            click.echo(f"id {item_id!r}: {sol.warning()}", err=True)
    click.echo("\n".join(out))
    return 2 if len(good) < len(items) else 0


@cli.command()
@click.argument("file")
@click.option("--model", "model_name", default="default", show_default=True, help=MODEL_HELP)
@click.option("--json", "as_json", is_flag=True, help="print JSON: one object, or one line per batch line")
@click.option("--max-steps", type=click.IntRange(1), default=None, help="loop cap (default 2 x the number of equations)")
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True, help="problems per forward pass")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the map from your names to the model's names")
def solve(file: str, model_name: str, as_json: bool, max_steps: int | None, batch_size: int, seed: int) -> None:
    """Solve FILE, a problem in the text format (or - for stdin).

    A FILE ending in .jsonl is a batch: each line {"id": str, "problem": str} gives one JSON line out,
    in order, {"id", "values", "iterations", "converged", "complete"}. "complete" is false when some
    variable got no value; a warning line on stderr then names the unsolved variables. A bad line
    gets {"id", "error"} in its place, a stderr line, and exit code 2 once every good line is answered.
    """
    from workbench.model.checkpoint import load_model
    from workbench.solving import solve as run_solve
    from workbench.task.text import parse_problem

    text = read_input(file)
    model = load_model(model_name)
    if file.endswith(".jsonl"):
        return solve_batch(file, text, model, batch_size=batch_size, max_steps=max_steps, seed=seed)
    problem = parse_problem(text, model.task)
    sol = run_solve(model, problem, max_steps=max_steps, seed=seed)
    warning = sol.warning()
    if warning:
        click.echo(warning, err=True)
    if as_json:
        click.echo(json.dumps(sol.to_dict()))
        return
    for eq in sorted(problem.equations, key=lambda e: e.line):
        value = sol.values[eq.name]
        click.echo(f"{eq.name} = {'?' if value is None else value}")
    click.echo(f"# values mod {model.task.modulus}, operations {' '.join(model.task.operations)}")
    state = "converged" if sol.converged else "did NOT converge (values may be wrong)"
    if not sol.complete:
        state += f", INCOMPLETE: {len(sol.unsolved)} variables unsolved"
    click.echo(f"# {sol.iterations} iterations, {state}")


@cli.command()
@click.option("--nodes", type=click.IntRange(7), required=True, help="nodes per graph (6 are leaves)")
@click.option("--count", type=click.IntRange(1), required=True, help="number of problems")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", default=None, help="output JSONL file (default: stdout)")
@click.option("--depth-cap", type=click.IntRange(1), default=None, help="cap on node depth (default: none)")
@click.option("--operations", default="+", show_default=True, help="operations to draw from, e.g. +-*")
@click.option("--modulus", type=click.IntRange(2), default=23, show_default=True)
@click.option("--recent", type=click.IntRange(1), default=None, help="parents only among the RECENT latest nodes (deep chains)")
def generate(nodes: int, count: int, seed: int, out: str | None, depth_cap: int | None, operations: str,
             modulus: int, recent: int | None) -> None:
    """Sample problems; JSONL lines {"id", "problem", "values", "depth"} (the ground truth beside each)."""
    import numpy as np

    from workbench.task.config import TaskConfig
    from workbench.task.graphs import sample_graphs
    from workbench.task.text import format_problem, graphs_to_problems, solve_exact

    ops = tuple(dict.fromkeys(c for c in operations if not c.isspace()))
    task = TaskConfig(modulus=modulus, operations=ops, n_names=max(128, nodes))
    graphs = sample_graphs(nodes, count, rng=np.random.default_rng(seed), task=task, depth_cap=depth_cap, recent=recent)
    lines = []
    for i, problem in enumerate(graphs_to_problems(graphs)):
        lines.append(json.dumps({"id": f"{seed}-{i}", "problem": format_problem(problem),
                                 "values": solve_exact(problem, modulus), "depth": int(graphs.max_depth[i])}))
    write_output(out, "\n".join(lines) + "\n")


@cli.command()
@click.option("--config", "config_path", required=True, help="training config (TOML or JSON)")
@click.option("--resume", is_flag=True, help="continue from the run's last checkpoint")
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads (default: the config's, else all cores)")
@click.option("--export-only", is_flag=True, help="with --resume: export the last checkpoint without training")
def train(config_path: str, resume: bool, threads: int | None, export_only: bool) -> None:
    """Train a model from a config: curriculum phases, live metrics, checkpoints, export and card."""
    from workbench.evaluation import evaluate_sizes
    from workbench.model.card import write_card
    from workbench.training.config import load_train_config
    from workbench.training.loop import train as run_train
    from workbench.cot.train import is_cot_config

    if is_cot_config(config_path):  # kind = "chain-of-thought": the CoT baseline's own loop (workbench.cot.train)
        from workbench.cot.train import load_cot_config, train as train_cot, with_threads

        folder = train_cot(with_threads(load_cot_config(config_path), threads), resume=resume, export_only=export_only)
        if folder is not None:
            click.echo(f"exported {folder}")
        return
    cfg = load_train_config(config_path)
    if threads is not None:
        from dataclasses import replace

        cfg = replace(cfg, threads=threads)

    def evaluate(model, c):
        return {"sizes": [r.to_dict() for r in evaluate_sizes(model, list(c.eval_sizes), c.eval_count, progress=False)]}

    folder = run_train(cfg, resume=resume, evaluate_fn=evaluate, export_only=export_only)
    if folder is not None:
        write_card(folder)
        click.echo(f"exported {folder}")


@cli.command(name="eval")
@click.option("--model", "model_name", default="default", show_default=True, help=MODEL_HELP)
@click.option("--sizes", default="8,16,...,128", show_default=True, help="graph sizes: a list, or a,b,...,c")
@click.option("--count", type=click.IntRange(1), default=512, show_default=True, help="graphs per size")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--depth-cap", type=click.IntRange(1), default=None, help="cap on node depth (default: none)")
@click.option("--recent", type=click.IntRange(1), default=None, help="parents among the RECENT latest nodes: long chains")
@click.option("--family", default="uniform", show_default=True,
              help="graph family: uniform (the paper's law), deep, hub, hub-chain, far or leafy (see 'workbench robustness')")
@click.option("--out", default=None, help=f"folder for eval JSON and plots (default: {SCRATCH}/MODEL)")
@click.option("--record", is_flag=True, help="write into the model's own folder and list the result on its card")
@click.option("--replace", is_flag=True, help="allow replacing a record that covers more graphs")
@click.option("--tag", default=None, help="file stem: TAG.json, TAG.png, TAG.html (default: eval, or eval-FAMILY)")
def evaluate(model_name: str, sizes: str, count: int, seed: int, batch_size: int, depth_cap: int | None,
             recent: int | None, family: str, out: str | None, record: bool, replace: bool, tag: str | None) -> None:
    """Accuracy against graph size: a table on stdout, plus JSON and a plot (PNG and HTML).

    Writes to runs/eval/MODEL unless --out DIR; --record writes into the model's folder and card.
    """
    from workbench.evaluation import evaluate_sizes
    from workbench.model.card import eval_table, write_eval_record
    from workbench.plots.generalization import accuracy_figure, save_accuracy_png
    from workbench.task.families import family as check_family

    check_family(family)
    if family != "uniform" and (depth_cap or recent):
        raise WorkbenchError("--depth-cap and --recent shape the uniform family only; drop them or use --family uniform")
    tag = tag or ("eval" if family == "uniform" else f"eval-{family}")
    check_tag(tag)  # "config" would overwrite the model's config.json
    check_destination(out, record)
    model, size_list = model_and_sizes(model_name, sizes)
    folder, own = output_folder(model, out, record)
    refuse_smaller(folder / f"{tag}.json", count * len(size_list), replace)
    results = [r.to_dict() for r in evaluate_sizes(model, size_list, count, seed=seed, batch_size=batch_size,
                                                    depth_cap=depth_cap, recent=recent, family=family)]
    command = f"workbench eval --model {model_name} --sizes {sizes} --count {count} --seed {seed}" + \
        (f" --depth-cap {depth_cap}" if depth_cap else "") + (f" --recent {recent}" if recent else "") + \
        (f" --family {family}" if family != "uniform" else "") + (" --record" if own else "")
    curves = {model.meta["name"]: results}
    save_accuracy_png(curves, folder / f"{tag}.png")
    accuracy_figure(curves).write_html(folder / f"{tag}.html", include_plotlyjs="cdn")
    # the plot first, so that the refreshed card shows it; the card only lives in the model's own folder
    write_eval_record(folder, tag, model.meta["name"], command, results, card=own)
    click.echo(eval_table(results))
    click.echo(f"wrote {folder / (tag + '.json')}, {tag}.png, {tag}.html")


@cli.command()
@click.option("--model", "model_name", default="default", show_default=True, help=MODEL_HELP)
@click.option("--families", default="all", show_default=True, help="comma-separated families, or all")
@click.option("--sizes", default="32,64,128", show_default=True, help="graph sizes: a list, or a,b,...,c")
@click.option("--count", type=click.IntRange(1), default=64, show_default=True, help="graphs per family and size")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--out", default=None, help=f"folder for robustness.json (default: {SCRATCH}/MODEL)")
@click.option("--record", is_flag=True, help="write into the model's own folder: its card and the app then show it")
@click.option("--replace", is_flag=True, help="allow replacing a record that covers more graphs")
def robustness(model_name: str, families: str, sizes: str, count: int, seed: int, batch_size: int, out: str | None,
               record: bool, replace: bool) -> None:
    """Accuracy on every graph family (size, depth, fan-out, distance, leaves): a table and robustness.json.

    Writes to runs/eval/MODEL unless --out DIR; --record writes into the model's folder and card.
    """
    from workbench.evaluation import FAMILIES, evaluate_families
    from workbench.model.card import ROBUSTNESS_FILE, robustness_table, write_robustness_record
    from workbench.task.families import family as check_family

    names = list(FAMILIES) if families.strip() == "all" else [f.strip() for f in families.split(",") if f.strip()]
    if not names:
        raise WorkbenchError("--families is empty; give comma-separated family names or all")
    for name in names:
        check_family(name)
    check_destination(out, record)
    model, size_list = model_and_sizes(model_name, sizes)
    folder, own = output_folder(model, out, record)
    refuse_smaller(folder / ROBUSTNESS_FILE, count * len(size_list) * len(names), replace)
    results = evaluate_families(model, names, size_list, count, seed=seed, batch_size=batch_size)
    rows = {f: [r.to_dict() for r in by_size] for f, by_size in results.items()}
    command = f"workbench robustness --model {model_name} --families {families} --sizes {sizes} --count {count} --seed {seed}" + \
        (" --record" if own else "")
    write_robustness_record(folder, model.meta["name"], command, rows, card=own)
    click.echo(robustness_table(rows))
    click.echo(f"wrote {folder / ROBUSTNESS_FILE}")


@cli.command()
@click.option("--models", default=",".join(ZOO), show_default=True,
              help="comma-separated model names (or folders), each already evaluated with 'workbench eval'")
@click.option("--out", default="docs", show_default=True, help="folder for zoo.md, zoo.png and zoo.html")
def compare(models: str, out: str) -> None:
    """The zoo side by side: one accuracy-vs-N figure and table with the paper's curves beside them."""
    from workbench.zoo import write_comparison

    names = [m.strip() for m in models.split(",") if m.strip()]
    if not names:
        raise WorkbenchError("--models is empty; give comma-separated model names such as default,feedforward")
    paths = write_comparison(names, out)
    click.echo(Path(paths[0]).read_text())
    click.echo("wrote " + ", ".join(p.as_posix() for p in paths))


@cli.command()
@click.option("--model", "model_name", default="default", show_default=True, help=MODEL_HELP)
@click.option("--run", "run_dir", default=None, help="run folder holding log.jsonl (default: the model's run/)")
def curves(model_name: str, run_dir: str | None) -> None:
    """Training curves of a model: training.png and training.html from its run's log, shown on its card."""
    from workbench.model.card import write_card
    from workbench.model.checkpoint import resolve_model
    from workbench.training.curves import LOG, write_training_curves

    folder = resolve_model(model_name)
    source = Path(run_dir) if run_dir else folder / "run"
    written = write_training_curves(folder, source)
    if not written:
        raise WorkbenchError(f"no training log at {source / LOG}; pass --run with the run folder that holds {LOG}")
    write_card(folder)
    click.echo("wrote " + ", ".join(p.as_posix() for p in written) + f" and refreshed {folder / 'card.md'}")


#: the entry point group an app registers in (the repository's own: ``default = "app.app:serve"`` in pyproject.toml)
APP_GROUP = "workbench.apps"


def find_app(name: str = "default") -> Callable[..., None]:
    """The installed app's ``serve(model, host, port)``, found through the ``workbench.apps`` entry points.

    The library never imports an app; an app installs itself under this group (``pip install -e .`` in a
    clone registers the repository's ``app/``).
    """
    from importlib.metadata import distributions

    # every distribution, not entry_points(): that keeps one per name, and a stale workbench.egg-info in
    # the working directory (an old build) would hide the installed one's entry points
    found = [ep for dist in distributions() for ep in dist.entry_points.select(group=APP_GROUP, name=name)]
    if not found:
        raise WorkbenchError(f"no app is installed (entry point group {APP_GROUP!r}); "
                             "run pip install -e . in a clone of the repository")
    return found[0].load()


@cli.command()
@click.option("--model", "model_name", default="default", show_default=True, help="the model shown first (a name in models/)")
@click.option("--host", default="127.0.0.1", show_default=True, help="interface to listen on (0.0.0.0: every interface)")
@click.option("--port", type=click.IntRange(1, 65535), default=8050, show_default=True)
def app(model_name: str, host: str, port: int) -> None:
    """Serve the Dash app: watch a looped model think, step by step (Ctrl+C stops it)."""
    serve = find_app()
    serve(model_name, host, port)


def _workbench_hint(exc: click.UsageError) -> str:
    if exc.ctx and exc.ctx.info_name != "workbench":
        return f" (see 'workbench {exc.ctx.info_name} --help')"
    return " (see 'workbench --help')"


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI; user errors become one line on stderr and exit code 2."""
    run_command(cli, argv, "workbench", _workbench_hint)


if __name__ == "__main__":
    main()
