#!/usr/bin/env python
"""Analyses 7 and 8 (paper's list): MLP contribution and ablation, 3-D Fourier analysis of the last MLP.

    python probes/mlp_analysis.py --model default [--count N --layer L]

Option defaults are those of ``workbench.analysis.mlp.run`` (``--help`` shows them).

Writes models/<name>/probes/mlp.json (+ PNG, HTML); see workbench/analysis/mlp.py.
"""

import click

from workbench.analysis import mlp
from workbench.analysis.script import analysis_command, default_of, main


@analysis_command("mlp", "MLP analysis")
@click.option("--nodes", type=click.IntRange(7), default=default_of(mlp.run, "n_nodes"),
              show_default=True, help="nodes per graph")
@click.option("--count", type=click.IntRange(1), default=default_of(mlp.run, "count"),
              show_default=True, help="graphs (contribution, ablation)")
@click.option("--depth-cap", type=click.IntRange(1), default=default_of(mlp.run, "depth_cap"),
              show_default=True, help="cap on node depth")
@click.option("--steps", type=click.IntRange(1), default=default_of(mlp.run, "n_steps"),
              help="teacher-forced steps (default: max depth + 1)")
@click.option("--layer", type=click.IntRange(0), default=default_of(mlp.run, "layer"),
              help="the MLP of the Fourier sweep (default: the last)")
def command(model, *, seed, progress, nodes, count, depth_cap, steps, layer):
    """Relative residual change and ablation of every MLP; DFT over Z_p^3 of one MLP at a template rhs."""
    return mlp.run(model, n_nodes=nodes, count=count, depth_cap=depth_cap, n_steps=steps, layer=layer, seed=seed,
                   progress=progress)


if __name__ == "__main__":
    main(command)
