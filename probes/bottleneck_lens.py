#!/usr/bin/env python
"""Analysis 2 (and 11): the bottleneck lens, and drift of the hidden state across steps.

    python probes/bottleneck_lens.py --model default [--count N --nodes N --mode free|teacher]

Option defaults are those of ``workbench.analysis.lens.run`` (``--help`` shows them).

Writes models/<name>/probes/lens.json (+ PNG, HTML); see workbench/analysis/lens.py.
"""

import click

from workbench.analysis import lens
from workbench.analysis.script import analysis_command, main, sample_options


@analysis_command("lens", "Bottleneck lens")
@sample_options(lens.run, "--nodes", "--count", "--depth-cap", "--steps", "--mode",
                n_steps="loop steps (default: max depth + 2, <= 10)")
def command(model, *, seed, progress, nodes, count, depth_cap, steps, mode):
    """Decode every residual point of every step through the final norm and the factor heads."""
    return lens.run(model, n_nodes=nodes, count=count, depth_cap=depth_cap, n_steps=steps, mode=mode, seed=seed,
                    progress=progress)


if __name__ == "__main__":
    main(command)
