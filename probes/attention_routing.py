#!/usr/bin/env python
"""Analysis 3 (paper's 6): attention routing per step, layer and head, from every kind of query: operand
lookup, gather and induction masses, head roles, and the causal check of each role (head and group ablations,
the lookup -> gather path test).

    python probes/attention_routing.py --model default [--count N --nodes N --threshold T]

Option defaults are those of ``workbench.analysis.routing.run`` (``--help`` shows them).

Writes models/<name>/probes/routing.json (+ PNG, HTML); see workbench/analysis/routing.py.
"""

import click

from workbench.analysis import routing
from workbench.analysis.script import analysis_command, default_of, main, sample_options


@analysis_command("routing", "Attention routing")
@sample_options(routing.run, "--nodes", "--count", "--depth-cap", "--steps", "--mode",
                n_steps="loop steps (default: max depth + 2, <= 10)")
@click.option("--threshold", type=click.FloatRange(0, 1), default=default_of(routing.run, "threshold"),
              show_default=True,
              help="attention mass that gives a head a role (workbench.analysis.routing.ROLE_THRESHOLD)")
def command(model, *, seed, progress, nodes, count, depth_cap, steps, mode, threshold):
    """Operand lookup, gather and induction masses per step and head, roles, and their ablation checks."""
    return routing.run(model, n_nodes=nodes, count=count, depth_cap=depth_cap, n_steps=steps, mode=mode,
                       threshold=threshold, seed=seed, progress=progress)


if __name__ == "__main__":
    main(command)
