#!/usr/bin/env python
"""Analysis 8 (paper's 14): cross-step activation patching, layer x component x step effect maps.

    python probes/activation_patching.py --model default [--count N --nodes N]

Option defaults are those of ``workbench.analysis.patching.run`` (``--help`` shows them).

Writes models/<name>/probes/patching.json (+ PNG, HTML); see workbench/analysis/patching.py.
"""

import click

from workbench.analysis import patching
from workbench.analysis.script import analysis_command, default_of, main


@analysis_command("patching", "Cross-step activation patching")
@click.option("--nodes", type=click.IntRange(7), default=default_of(patching.run, "n_nodes"),
              show_default=True, help="nodes per graph")
@click.option("--count", type=click.IntRange(1), default=default_of(patching.run, "count"),
              show_default=True, help="graphs")
@click.option("--steps", type=click.IntRange(1), default=default_of(patching.run, "n_steps"),
              help="loop steps (default: max depth + 1, <= 10)")
def command(model, *, seed, progress, nodes, count, steps):
    """Patch each head, attention and MLP output of every step from a clean run into a corrupted one."""
    return patching.run(model, n_nodes=nodes, count=count, n_steps=steps, seed=seed, progress=progress)


if __name__ == "__main__":
    main(command)
