#!/usr/bin/env python
"""Analysis 1: linear probes on the residual stream at every (step, layer, site), with control tasks.

    python probes/linear_probes.py --model default [--count N --nodes N --mode free|teacher --probe ridge|logistic]

Option defaults are those of ``workbench.analysis.probes.run`` and ``LinearProbe`` (``--help`` shows them).

Writes models/<name>/probes/probes.json (+ PNG, HTML); see workbench/analysis/probes.py.
"""

import click

from workbench.analysis import probes
from workbench.analysis.probes import PROBE_KINDS, LinearProbe
from workbench.analysis.script import analysis_command, default_list, default_of, main, sample_options


@analysis_command("probes", "Linear probes on the residual stream")
@sample_options(probes.run, "--nodes", "--depth-cap", "--steps", "--mode",
                n_steps="loop steps to probe (default: max depth + 2, <= 10)")
@click.option("--count", type=click.IntRange(4), default=default_of(probes.run, "count"),
              show_default=True, help="graphs (split 3:1 by graph)")
@click.option("--probe", "probe_kind", type=click.Choice(list(PROBE_KINDS)), default=default_of(LinearProbe, "kind"),
              show_default=True)
@click.option("--alpha", type=float, default=default_of(LinearProbe, "alpha"), show_default=True, help="ridge penalty")
@click.option("--C", "C", type=float, default=default_of(LinearProbe, "C"),
              show_default=True, help="logistic inverse penalty")
@click.option("--tasks", default=default_list(probes.run, "tasks"),
              show_default=True, help="comma-separated probing tasks")
@click.option("--random-baseline/--no-random-baseline", default=default_of(probes.run, "random_baseline"),
              show_default=True, help="probe a random-weight model of the same architecture too")
def command(model, *, seed, progress, nodes, count, depth_cap, steps, mode, probe_kind, alpha, C, tasks, random_baseline):
    """Linear probes (value, computed, depth, operand names) per step and residual point, with selectivity."""
    task_list = [t.strip() for t in tasks.split(",") if t.strip()]
    return probes.run(model, n_nodes=nodes, count=count, depth_cap=depth_cap, n_steps=steps, mode=mode,
                      tasks=task_list, probe={"kind": probe_kind, "alpha": alpha, "C": C},
                      random_baseline=random_baseline, seed=seed, progress=progress)


if __name__ == "__main__":
    main(command)
