#!/usr/bin/env python
"""Analysis 6 (paper's 12): codebook usage of the discrete bottleneck per factor and step.

    python probes/codebook_usage.py --model default [--nodes N --count N]

Option defaults are those of ``workbench.analysis.codebook.run`` (``--help`` shows them).

Writes models/<name>/probes/codebook.json (+ PNG, HTML); see workbench/analysis/codebook.py.
"""

import click

from workbench.analysis import codebook
from workbench.analysis.script import analysis_command, main, sample_options


@analysis_command("codebook", "Codebook usage")
@sample_options(codebook.run, "--nodes", "--count", "--depth-cap", "--steps",
                n_steps="loop steps (default: max depth + 3, <= 24)")
def command(model, *, seed, progress, nodes, count, depth_cap, steps):
    """Codes written per factor and step, entropy, invalid combinations, value transitions."""
    return codebook.run(model, n_nodes=nodes, count=count, depth_cap=depth_cap, n_steps=steps, seed=seed,
                        progress=progress)


if __name__ == "__main__":
    main(command)
