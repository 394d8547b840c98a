#!/usr/bin/env python
"""Why a model fails when one variable is read by many equations, measured with the workbench.

For each model: the first-layer lookup heads' attention mass on a name's defining position against how
many earlier uses of the same name precede the query (teacher-forced, so only the lookup is under
test), the value the model reads at the operand after block 0, the nodes a free run gets right by
their operand's recurrence, and a causal test: the first layer's content scores sharpened at inference
(``workbench.analysis.fanout.sharpened``). Writes ``fanout.md``, ``fanout.json``, ``fanout.html`` and
``fanout.png`` to ``--out`` (the write-up page in docs/).

    python probes/fan_out.py --out docs
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workbench.exits import run_command  # noqa: E402  (shared with the workbench command)

SHARPEN = (1.0, 1.5, 2.0)


def solved_share(model, family: str, n: int, count: int, seed: int) -> float:
    """% of ``count`` graphs of the family fully solved by a free run."""
    from workbench.evaluation import evaluate_sizes

    return 100 * evaluate_sizes(model, [n], count, seed=seed, family=family, progress=False)[0].graph_acc


def save_png(curves: dict, runs: dict, path: Path, train_cap: int = 12) -> None:
    """The three panels of ``fanout.figure`` as a PNG (matplotlib: no browser needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4), dpi=110)
    titles = ["lookup heads' mass on the defining position", "value read at the operand after block 0",
              "nodes right in a free run"]
    for name, res in curves.items():
        rows = res.binned()
        x = [r["lo"] for r in rows]
        axes[0].plot(x, [r["lookup_mass"] for r in rows], marker="o", label=name)
        axes[1].plot(x, [r["readout_acc"] for r in rows], marker="o", label=name)
        axes[2].plot([r["lo"] for r in runs[name]], [r["right"] for r in runs[name]], marker="o", label=name)
    for ax, title in zip(axes, titles):
        ax.axvline(train_cap, color="grey", linestyle=":")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("earlier uses of the same name")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Fan-out: the name lookup against same-name look-alikes (dotted: the training cap, {train_cap})")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


@click.command()
@click.option("--models", default="models/default/run/base-28750,models/default/run/after-fanout,default", show_default=True,
              help="comma-separated model names or folders")
@click.option("--nodes", type=click.IntRange(16, 128), default=96, show_default=True, help="nodes per hub graph")
@click.option("--count", type=click.IntRange(1), default=24, show_default=True, help="graphs per measurement")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--out", default="docs", show_default=True, help="folder for fanout.md/.json/.html/.png")
def command(models: str, nodes: int, count: int, seed: int, out: str) -> None:
    """Lookup mass, readout and free-run accuracy against same-name recurrence, and the sharpening test."""
    from tqdm.auto import tqdm

    from workbench.analysis import fanout
    from workbench.errors import WorkbenchError
    from workbench.model.checkpoint import load_model
    from workbench.task.families import sample_family

    names = [m.strip() for m in models.split(",") if m.strip()]
    if not names:
        raise WorkbenchError("--models is empty; give comma-separated model names or folders")
    folder = Path(out)
    if not folder.is_dir():
        raise WorkbenchError(f"--out folder '{out}' does not exist; create it first")
    loaded = {}
    for name in names:
        model = load_model(name, device="cpu")
        loaded[model.meta["name"]] = model
    curves, runs, sharp, heads, first = {}, {}, {}, {}, {}
    for label, model in tqdm(loaded.items(), desc="fan-out", unit="model"):
        rng = np.random.default_rng(seed)
        curves[label] = fanout.measure_lookup(model, sample_family("hub", nodes, count, rng=rng, task=model.task))
        runs[label] = fanout.free_run(model, sample_family("hub", nodes, count, rng=rng, task=model.task))
        heads[label] = [f"L{layer}H{head}" for layer, head in curves[label].lookup_heads]
        errs = fanout.first_errors(model, sample_family("hub", nodes, count, rng=rng, task=model.task))
        rec = np.array([e["recurrence"] for e in errs])
        first[label] = {"graphs": count, "erred": len(errs),
                        "median_recurrence": float(np.median(rec)) if len(errs) else None,
                        "beyond_training_cap": float((rec > 12).mean()) if len(errs) else None,
                        "left_empty": float(np.mean([e["left_empty"] for e in errs])) if errs else None,
                        "errors": errs}
        sharp[label] = {}
        for factor in SHARPEN:
            with fanout.sharpened(model, factor):
                sharp[label][factor] = {"hub N=128": solved_share(model, "hub", 128, count, seed),
                                        "hub-chain N=100": solved_share(model, "hub-chain", 100, max(4, count // 4), seed)}
    record = {"command": f"python probes/fan_out.py --models {models} --nodes {nodes} --count {count} --seed {seed}",
              "lookup": {k: v.binned() for k, v in curves.items()}, "lookup_heads": heads, "free_run": runs,
              "first_errors": first, "sharpened": {k: {str(f): v for f, v in d.items()} for k, d in sharp.items()}}
    (folder / "fanout.json").write_text(json.dumps(record, indent=2) + "\n")
    fanout.figure(curves, runs).write_html(folder / "fanout.html", include_plotlyjs="cdn")
    save_png(curves, runs, folder / "fanout.png")
    (folder / "fanout.md").write_text(render(record, nodes, count))
    click.echo(f"wrote {folder / 'fanout.md'}, fanout.json, fanout.html, fanout.png")


def render(record: dict, nodes: int, count: int) -> str:
    """The write-up page: what fails, the measurements behind why, the causal test and the fix."""
    lines = ["# Fan-out: when one variable is read by many equations", "",
             f"Generated by `{record['command']}`. Hub graphs: the paper's law with two leaves each read by 30-60 later "
             f"equations (`workbench.task.families`, family `hub`), N = {nodes}, {count} graphs per measurement.", "",
             "## What failed", "",
             "Before the fix, `default` (its 28,750-step weights, now `models/default/run/base-28750`) solved graphs of "
             "the paper's law at every N <= 128 but stopped "
             "writing when one variable was read by dozens of equations: a chain `v_i = v_(i-1) + w` of 60 links left "
             "variables EMPTY and still reported a fixed point. The paper's law almost never has such hubs (a variable "
             "is read by at most ~10 equations at N = 128), and the training data never did.", "",
             "## Why: the lookup's attention drowns among look-alikes", "",
             "Every operand occurrence finds its variable's *defining* position by name. Each earlier *use* of the "
             "same name is an EMPTY token that matches the name too. Measured on the solved state (so every "
             "definition already holds its value and only the lookup is under test):", ""]
    models = list(record["lookup"])
    bins = [r["bin"] for r in record["lookup"][models[0]]]
    lines += ["| earlier uses of the name | " + " | ".join(f"`{m}` lookup mass / readout right" for m in models) + " |",
              "|---|" + "---|" * len(models)]
    by = {m: {r["bin"]: r for r in record["lookup"][m]} for m in models}
    for b in bins:
        cells = [f"{by[m][b]['lookup_mass']:.2f} / {100 * by[m][b]['readout_acc']:.1f}%" if b in by[m] else "–" for m in models]
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    lines += ["", "Lookup heads (first-layer heads whose mean mass on the defining position is at least "
              "0.3 with at most 4 look-alikes): " + "; ".join(f"`{m}`: {', '.join(h) or 'none'}" for m, h in record["lookup_heads"].items()) + ".", "",
              "![lookup mass, readout and free-run accuracy against same-name recurrence](fanout.png)", "",
              "Interactive: [fanout.html](fanout.html).", "",
              "Where a free run first goes wrong: the first step whose decoded state differs from the exact one-step "
              "map of the state before it (`workbench.analysis.fanout.first_errors`), on fresh hub graphs:", "",
              "| model | graphs with an error | median recurrence at the first error | first error beyond 12 uses | "
              "first error = a slot left EMPTY |", "|---|---|---|---|---|"]
    for m, f in record["first_errors"].items():
        if f["erred"]:
            lines.append(f"| `{m}` | {f['erred']} of {f['graphs']} | {f['median_recurrence']:.0f} | "
                         f"{100 * f['beyond_training_cap']:.0f}% | {100 * f['left_empty']:.0f}% |")
        else:
            lines.append(f"| `{m}` | 0 of {f['graphs']} | – | – | – |")
    lines += ["",
              "## The causal test: sharpen the first layer at inference", "",
              "If the failure is softmax mass spread over look-alikes, multiplying the first layer's content scores "
              "(q.k) at inference, with no training, must repair it (`workbench.analysis.fanout.sharpened`). "
              "% of graphs fully solved:", "",
              "| model | sharpening | hub N=128 | hub-chain N=100 |", "|---|---|---|---|"]
    for m, d in record["sharpened"].items():
        for factor, cells in d.items():
            lines.append(f"| `{m}` | x{float(factor):g} | {cells['hub N=128']:.1f} | {cells['hub-chain N=100']:.1f} |")
    lines += ["", "## The fix, and where it stands", "",
              "A first attempt changed only the training, continued from the 28,750-step weights (card, notes 12-14): "
              "half the graphs with 1-2 hubs read by at most 12 equations (`Phase.hubs`) and the first block's content "
              "scores divided by 1.5 in training only (`Phase.lookup_temperature`). The result "
              "(`models/default/run/after-fanout`) solved far more hub graphs but fell to 96.5% of N = 128 graphs of the "
              "paper's law under five name maps, so it was not shipped.", "",
              "The shipped fix adds a general mechanism: a **role embedding** (`ModelConfig.role_embedding`), one "
              "learned vector on every defining position (the variable right after `=`), so the first layer's key can "
              "tell the definition of a name from its uses; zero at start, fine-tuned 2,000 steps with the same data "
              "(card, note 15). Through `workbench solve` on the independent generator under name-map seeds 0-4 it "
              "solves 98 of 100 N = 128 hub graphs (target 99%), 18 of 20 long hub-chains and 199 of 200 N = 128 "
              "graphs of the paper's law (the 28,750-step weights: 200 of 200). The tables above show it beside the "
              "two earlier models.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the command; bad input is one line on stderr and exit code 2."""
    run_command(command, argv, "fan_out.py", lambda exc: " (see 'python probes/fan_out.py --help')")


if __name__ == "__main__":
    main()
