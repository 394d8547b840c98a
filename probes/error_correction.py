#!/usr/bin/env python
"""Analyses 7 (issue) / 2, 10, 13 (paper's list): self-correction, injected errors, halting, stepwise curves.

    python probes/error_correction.py --model default [--sizes 8,16,32 --compare no_ec_model]

Option defaults are those of ``workbench.analysis.correction.run`` (``--help`` shows them).

Writes models/<name>/probes/correction.json (+ PNG, HTML); see workbench/analysis/correction.py.
"""

import click

from workbench.analysis import correction
from workbench.analysis.script import analysis_command, default_list, default_of, int_list, main


@analysis_command("correction", "Error correction and halting")
@click.option("--sizes", default=default_list(correction.run, "sizes"),
              show_default=True, help="graph sizes of the stepwise curves")
@click.option("--count", type=click.IntRange(1), default=default_of(correction.run, "count"),
              show_default=True, help="graphs per size")
@click.option("--max-steps", type=click.IntRange(1), default=default_of(correction.run, "max_steps"),
              show_default=True, help="cap on loop steps")
@click.option("--inject-nodes", type=click.IntRange(7), default=default_of(correction.run, "inject_nodes"),
              show_default=True, help="graph size of injections")
@click.option("--inject-count", type=click.IntRange(1), default=default_of(correction.run, "inject_count"),
              show_default=True, help="graphs per injection")
@click.option("--inject-steps", default=default_list(correction.run, "inject_steps"),
              show_default=True, help="steps whose input is corrupted")
@click.option("--ks", default=default_list(correction.run, "ks"), show_default=True, help="numbers of values corrupted")
@click.option("--compare", default="", help="other models (e.g. the no-error-correction ablation), comma-separated")
def command(model, *, seed, progress, sizes, count, max_steps, inject_nodes, inject_count, inject_steps, ks, compare):
    """Stepwise solved curves, halting by fixed point, natural self-corrections, injected-error repair."""
    from workbench.model.checkpoint import load_model

    others = [load_model(name) for name in compare.split(",") if name.strip()]
    return correction.run(model, sizes=int_list(sizes, "--sizes", low=7), count=count, max_steps=max_steps,
                          inject_nodes=inject_nodes, inject_count=inject_count,
                          inject_steps=int_list(inject_steps, "--inject-steps"), ks=int_list(ks, "--ks", low=1),
                          compare=others, seed=seed, progress=progress)


if __name__ == "__main__":
    main(command)
