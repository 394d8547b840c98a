#!/usr/bin/env python
"""Analyses 7 and 8 (paper's list): MLP contribution and ablation, 3-D Fourier analysis of the last MLP.

    python probes/mlp_analysis.py --model default [--count N --layer L]

Option defaults are those of ``workbench.analysis.mlp.run`` (``--help`` shows them).

Writes models/<name>/probes/mlp.json (+ PNG, HTML); see workbench/analysis/mlp.py.
"""

import click

from workbench.analysis import mlp
from workbench.analysis.script import analysis_command, default_of, main, sample_options


@analysis_command("mlp", "MLP analysis")
@sample_options(mlp.run, "--nodes", "--count", "--depth-cap", "--steps",
                count="graphs (contribution, ablation)", n_steps="teacher-forced steps (default: max depth + 1)")
@click.option("--layer", type=click.IntRange(0), default=default_of(mlp.run, "layer"),
              help="the MLP of the Fourier sweep (default: the last)")
def command(model, *, seed, progress, nodes, count, depth_cap, steps, layer):
    """Relative residual change and ablation of every MLP; DFT over Z_p^3 of one MLP at a template rhs."""
    return mlp.run(model, n_nodes=nodes, count=count, depth_cap=depth_cap, n_steps=steps, layer=layer, seed=seed,
                   progress=progress)


if __name__ == "__main__":
    main(command)
