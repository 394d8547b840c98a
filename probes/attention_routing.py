#!/usr/bin/env python
"""Analysis 3 (paper's 6): attention routing per step, layer and head: copy and induction scores, head roles.

    python probes/attention_routing.py --model default [--count 128 --nodes 16 --threshold 0.25]

Writes models/<name>/probes/routing.json (+ PNG, HTML); see workbench/analysis/routing.py.
"""

import click

from workbench.analysis.script import analysis_command, main


@analysis_command("routing", "Attention routing")
@click.option("--nodes", type=click.IntRange(7), default=16, show_default=True, help="nodes per graph")
@click.option("--count", type=click.IntRange(1), default=256, show_default=True, help="graphs")
@click.option("--depth-cap", type=click.IntRange(1), default=6, show_default=True, help="cap on node depth")
@click.option("--steps", type=click.IntRange(1), default=None, help="loop steps (default: max depth + 2, <= 10)")
@click.option("--mode", type=click.Choice(["free", "teacher"]), default="free", show_default=True)
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.25, show_default=True,
              help="attention mass that makes a head a copy or induction head")
def command(model, *, seed, progress, nodes, count, depth_cap, steps, mode, threshold):
    """Attention mass from result positions to their operand names (copy) and operand values (induction)."""
    from workbench.analysis import routing

    return routing.run(model, n_nodes=nodes, count=count, depth_cap=depth_cap, n_steps=steps, mode=mode,
                       threshold=threshold, seed=seed, progress=progress)


if __name__ == "__main__":
    main(command)
