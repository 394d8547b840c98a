"""What every ``probes/`` script shares: the common options, model loading, timing, writing, errors.

A script is a click command decorated with ``analysis_command``; it receives the loaded model and the
common options, returns ``(results, summary, params)``, and the wrapper writes the JSON and plots.
``main(command, argv)`` turns a ``WorkbenchError`` into one line on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from typing import Any

import click

from workbench.errors import WorkbenchError
from workbench.exits import run_command

MODEL_HELP = "model name in models/ (e.g. default) or path to a model folder"


def analysis_command(analysis: str, title: str) -> Callable:
    """Decorate ``fn(model, *, seed, progress, **options) -> (results, summary)`` into a click command.

    Adds ``--model``, ``--out``, ``--seed``, ``--threads``, ``--quiet`` and ``--no-plots``; the script's
    own options are recorded as the result's ``params``. The command returns the JSON's path.
    """
    def wrap(fn: Callable) -> click.Command:
        @click.option("--model", "model_name", default="default", show_default=True, help=MODEL_HELP)
        @click.option("--out", default=None, help="output folder (default: models/<name>/probes)")
        @click.option("--seed", type=int, default=0, show_default=True, help="seed of the sampled graphs and splits")
        @click.option("--threads", type=click.IntRange(1), default=1, show_default=True, help="torch CPU threads")
        @click.option("--quiet", is_flag=True, help="no progress bars")
        @click.option("--no-plots", is_flag=True, help="write the JSON only")
        @functools.wraps(fn)
        def command(model_name: str, out: str | None, seed: int, threads: int, quiet: bool, no_plots: bool, **options):
            import torch
            from threadpoolctl import threadpool_limits

            from workbench.analysis.results import make_result, output_dir, save_result
            from workbench.model.checkpoint import load_model

            torch.set_num_threads(threads)
            torch.manual_seed(seed)
            model = load_model(model_name)
            folder = output_dir(model, out)
            start = time.perf_counter()
            with threadpool_limits(limits=threads):  # BLAS threads fight torch's on a busy machine (10x slower)
                results, summary = fn(model, seed=seed, progress=not quiet, **options)
            runtime = time.perf_counter() - start
            result = make_result(analysis, title, model, {"model": model_name, "seed": seed, **options}, results,
                                 summary, runtime)
            path = save_result(result, folder, plots=not no_plots)
            click.echo(f"{analysis}: {runtime:.1f} s; " + "; ".join(f"{k} = {v}" for k, v in result["summary"].items()))
            click.echo(f"wrote {path}")
            return path

        return click.command(name=analysis, help=fn.__doc__)(command)

    return wrap


def main(command: click.Command, argv: list[str] | None = None) -> None:
    """Run ``command``; user errors become one line on stderr and exit code 2."""
    run_command(command, argv, f"{command.name}.py", lambda exc: " (see --help)")


def default_of(fn: Callable, option: str) -> Any:
    """The default of ``fn``'s parameter ``option``: a script's option takes its default from the analysis'
    ``run`` (or a probe's ``__init__``), so each default is written once.

    >>> default_of(int_list, "low")
    0
    """
    parameter = inspect.signature(fn).parameters[option]
    if parameter.default is inspect.Parameter.empty:
        raise TypeError(f"{fn.__qualname__}'s {option!r} has no default")
    return parameter.default


def default_list(fn: Callable, option: str) -> str:
    """``default_of(fn, option)`` (a sequence) as a comma-separated option value.

    >>> default_list(lambda *, sizes=(8, 16): None, "sizes")
    '8,16'
    """
    return ",".join(str(v) for v in default_of(fn, option))


#: the options most analyses share: script option -> (the ``run`` parameter it feeds, click type, help)
SAMPLE_OPTIONS: dict[str, tuple[str, Any, str]] = {
    "--nodes": ("n_nodes", click.IntRange(7), "nodes per graph"),
    "--count": ("count", click.IntRange(1), "graphs"),
    "--depth-cap": ("depth_cap", click.IntRange(1), "cap on node depth"),
    "--steps": ("n_steps", click.IntRange(1), "loop steps"),
    "--mode": ("mode", click.Choice(["free", "teacher"]), "free: the model reads its own states; teacher: step t reads "
               "the teacher state"),
}


def sample_options(run: Callable, *options: str, **helps: str) -> Callable:
    """The shared options ``options`` (keys of ``SAMPLE_OPTIONS``), each defaulting to ``run``'s parameter;
    ``helps`` override a help text by parameter name (``count="graphs (split 3:1 by graph)"``).

    >>> import click
    >>> @click.command()
    ... @sample_options(lambda *, n_nodes=24, count=8: None, "--nodes", "--count")
    ... def cmd(nodes, count): ...
    >>> [(p.name, p.default) for p in cmd.params]
    [('nodes', 24), ('count', 8)]
    """
    def decorate(fn: Callable) -> Callable:
        for option in reversed(options):
            parameter, kind, text = SAMPLE_OPTIONS[option]
            fn = click.option(option, type=kind, default=default_of(run, parameter), show_default=True,
                              help=helps.get(parameter, text))(fn)
        return fn
    return decorate


def int_list(text: str, what: str, *, low: int = 0) -> list[int]:
    """``"1,2,4"`` -> [1, 2, 4]; WorkbenchError naming ``what`` otherwise.

    >>> int_list("8, 16", "--sizes")
    [8, 16]
    """
    try:
        values = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise WorkbenchError(f"{what} {text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < low:
        raise WorkbenchError(f"{what} {text!r}: give integers >= {low}")
    return values


__all__ = ["analysis_command", "main", "default_of", "default_list", "int_list", "MODEL_HELP"]
