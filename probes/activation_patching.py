#!/usr/bin/env python
"""Analysis 8 (paper's 14): cross-step activation patching, layer x component x step effect maps.

    python probes/activation_patching.py --model default [--count N --nodes N]

Option defaults are those of ``workbench.analysis.patching.run`` (``--help`` shows them).

Writes models/<name>/probes/patching.json (+ PNG, HTML); see workbench/analysis/patching.py.
"""

import click

from workbench.analysis import patching
from workbench.analysis.script import analysis_command, main, sample_options


@analysis_command("patching", "Cross-step activation patching")
@sample_options(patching.run, "--nodes", "--count", "--steps",
                n_steps="loop steps (default: max depth + 1, <= 10)")
def command(model, *, seed, progress, nodes, count, steps):
    """Patch each head, attention and MLP output of every step from a clean run into a corrupted one."""
    return patching.run(model, n_nodes=nodes, count=count, n_steps=steps, seed=seed, progress=progress)


if __name__ == "__main__":
    main(command)
