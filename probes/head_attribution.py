#!/usr/bin/env python
"""Analyses 4, 5, 9 (paper's list): template-equation head attribution, OV factor amplification, controlled accuracy.

    python probes/head_attribution.py --model default [--templates N --fan-ins 1,2,3]

Option defaults are those of ``workbench.analysis.attribution.run`` (``--help`` shows them).

Writes models/<name>/probes/attribution.json (+ PNG, HTML); see workbench/analysis/attribution.py.
"""

import click

from workbench.analysis import attribution
from workbench.analysis.script import analysis_command, default_list, default_of, int_list, main


@analysis_command("attribution", "Head attribution by controlled experiments")
@click.option("--nodes", type=click.IntRange(7), default=default_of(attribution.run, "n_nodes"),
              show_default=True, help="nodes of each base graph")
@click.option("--templates", type=click.IntRange(1), default=default_of(attribution.run, "templates"),
              show_default=True, help="base graphs per fan-in")
@click.option("--fan-ins", default=default_list(attribution.run, "fan_ins"),
              show_default=True, help="template fan-ins to run")
@click.option("--max-batch", type=click.IntRange(2), default=default_of(attribution.run, "max_batch"),
              show_default=True, help="variations per slot")
def command(model, *, seed, progress, nodes, templates, fan_ins, max_batch):
    """Vary one slot of an appended equation; each head's relative output variance at its rhs."""
    ks = int_list(fan_ins, "--fan-ins", low=1)
    return attribution.run(model, n_nodes=nodes, templates=templates, fan_ins=tuple(ks), max_batch=max_batch,
                           seed=seed, progress=progress)


if __name__ == "__main__":
    main(command)
