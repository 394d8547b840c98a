#!/usr/bin/env python
"""Analysis 2 (and 11): the bottleneck lens, and drift of the hidden state across steps.

    python probes/bottleneck_lens.py --model default [--count N --nodes N --mode free|teacher]

Option defaults are those of ``workbench.analysis.lens.run`` (``--help`` shows them).

Writes models/<name>/probes/lens.json (+ PNG, HTML); see workbench/analysis/lens.py.
"""

import click

from workbench.analysis import lens
from workbench.analysis.script import analysis_command, default_of, main


@analysis_command("lens", "Bottleneck lens")
@click.option("--nodes", type=click.IntRange(7), default=default_of(lens.run, "n_nodes"),
              show_default=True, help="nodes per graph")
@click.option("--count", type=click.IntRange(1), default=default_of(lens.run, "count"),
              show_default=True, help="graphs")
@click.option("--depth-cap", type=click.IntRange(1), default=default_of(lens.run, "depth_cap"),
              show_default=True, help="cap on node depth")
@click.option("--steps", type=click.IntRange(1), default=default_of(lens.run, "n_steps"),
              help="loop steps (default: max depth + 2, <= 10)")
@click.option("--mode", type=click.Choice(["free", "teacher"]), default=default_of(lens.run, "mode"), show_default=True)
def command(model, *, seed, progress, nodes, count, depth_cap, steps, mode):
    """Decode every residual point of every step through the final norm and the factor heads."""
    return lens.run(model, n_nodes=nodes, count=count, depth_cap=depth_cap, n_steps=steps, mode=mode, seed=seed,
                    progress=progress)


if __name__ == "__main__":
    main(command)
