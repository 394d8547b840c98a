"""Check a model on problems generated independently of the workbench's own generator.

The generator here is written from the task's description with the standard library only (no
``workbench.task`` code): 6 leaves, then nodes with 1-3 distinct parents drawn uniformly among all
earlier nodes (depth uncapped), or among the ``--recent`` latest ones (long chains). Problems use
made-up identifiers, list their equations in a shuffled order, and reach the model only through the
public contract: the text format in a ``.jsonl`` batch fed to ``workbench solve --json`` in a
subprocess. Ground truth comes from this file's own evaluator, so a quirk of our generator, tokenizer
or name map that the model had learned to lean on would show up here as a drop in accuracy.

Families beyond the paper's law (``--family``): ``hub`` makes two of the leaves hubs, each read by 30-60
later equations (as many as N allows) in place of one of their parents; ``chain`` is ``w = c``,
``v0 = c``, ``v_i = v_(i-1) + w``: a chain through every node that re-reads one variable each time.
``--name-seeds`` (e.g. ``0,1,2,3,4``) are passed one by one to ``workbench solve --seed``: the map from the
problem's names to the model's. The same problems are solved under every seed; the record has one row
per size and seed.

Writes ``independent.json`` (or ``--tag``) in the model folder, in the same record format as
``workbench eval`` plus ``complete`` (the share of answers that gave every variable a value), so the
model card lists it.

    python probes/independent_check.py --model default --sizes 8,16,...,128 --count 128
    python probes/independent_check.py --model default --sizes 64 --recent 2 --tag independent-chains
    python probes/independent_check.py --model default --sizes 64,96,128 --family hub --tag independent-hubs
"""

from __future__ import annotations

import json
import random
import string
import subprocess
import sys
import tempfile
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workbench.records import check_tag, parse_sizes  # noqa: E402  (shared with the workbench command)
from workbench.exits import run_command  # noqa: E402

LEAVES = 6
HUB_READERS = (30, 60)  # each hub of the hub family aims at this many readers (fewer where N is small)
FAMILIES = ("uniform", "hub", "chain")


def made_up_names(n: int, rng: random.Random) -> list[str]:
    """``n`` distinct made-up identifiers (letters, digits and underscores, 2-8 characters), in random order."""
    names: set[str] = set()
    while len(names) < n:
        first = rng.choice(string.ascii_letters)
        names.add(first + "".join(rng.choices(string.ascii_lowercase + string.digits + "_", k=rng.randint(1, 7))))
    return rng.sample(sorted(names), n)


def make_problem(n_nodes: int, rng: random.Random, recent: int | None, modulus: int,
                 family: str = "uniform") -> tuple[str, dict[str, int], int]:
    """One problem mod ``modulus``: (text with shuffled lines, true value of every name, max depth)."""
    order = made_up_names(n_nodes, rng)
    if family == "chain":  # w = c, v0 = c, v_i = v_(i-1) + w
        w, rest = order[0], order[1:]
        lines = [f"{w} = {rng.randrange(modulus)}", f"{rest[0]} = {rng.randrange(modulus)}"]
        lines += [f"{b} = {a} + {w}" for a, b in zip(rest, rest[1:])]
    else:
        hubs = rng.sample(order[:LEAVES], 2) if family == "hub" else []
        aim = {h: min(rng.randint(*HUB_READERS), int(0.45 * (n_nodes - LEAVES))) for h in hubs}
        readers = dict.fromkeys(hubs, 0)
        lines = []
        for i, name in enumerate(order):
            if i < LEAVES:
                lines.append(f"{name} = {rng.randrange(modulus)}")
                continue
            pool = order[max(0, i - recent):i] if recent else order[:i]
            parents = rng.sample(pool, min(rng.randint(1, 3), len(pool)))
            for h in hubs:  # node by node, each hub is read with the chance that meets its aim
                left = n_nodes - i
                if h not in parents and readers[h] < aim[h] and rng.random() < (aim[h] - readers[h]) / left:
                    slot = rng.randrange(len(parents))
                    if parents[slot] not in hubs:
                        parents[slot] = h
                readers[h] = readers[h] + (h in parents)
            lines.append(f"{name} = {' + '.join(parents)}")
    values, depth = evaluate_lines(lines, modulus)
    rng.shuffle(lines)
    return "\n".join(lines), values, max(depth.values())


def evaluate_lines(lines: list[str], modulus: int) -> tuple[dict[str, int], dict[str, int]]:
    """Values and depths of ``name = int`` / ``name = a + b + ...`` lines given in a valid order (this file's own evaluator)."""
    values: dict[str, int] = {}
    depth: dict[str, int] = {}
    for line in lines:
        name, rhs = (part.strip() for part in line.split("="))
        if rhs.isdigit():
            values[name], depth[name] = int(rhs) % modulus, 0
        else:
            parents = [p.strip() for p in rhs.split("+")]
            values[name] = sum(values[p] for p in parents) % modulus
            depth[name] = 1 + max(depth[p] for p in parents)
    return values, depth


def solve_batch(model: str, problems: list[str], batch_size: int, name_seed: int = 0) -> list[dict]:
    """The model's answers through the public CLI (``workbench solve FILE.jsonl --json --seed NAME_SEED``)."""
    with tempfile.TemporaryDirectory() as tmp:
        batch = Path(tmp) / "batch.jsonl"
        batch.write_text("".join(json.dumps({"id": str(i), "problem": p}) + "\n" for i, p in enumerate(problems)))
        done = subprocess.run([sys.executable, "-m", "workbench.cli", "solve", str(batch), "--json", "--model", model,
                               "--batch-size", str(batch_size), "--seed", str(name_seed)], capture_output=True, text=True)
    if done.returncode != 0:
        raise click.ClickException(f"workbench solve failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    answers = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return sorted(answers, key=lambda a: int(a["id"]))


@click.command()
@click.option("--model", default="default", show_default=True, help="model name in models/ or a model folder")
@click.option("--sizes", default="8,16,...,128", show_default=True, help="graph sizes: a list, or a,b,...,c")
@click.option("--count", type=click.IntRange(1), default=128, show_default=True, help="problems per size")
@click.option("--recent", type=click.IntRange(1), default=None, help="parents only among the RECENT latest nodes (deep chains)")
@click.option("--seed", type=int, default=12345, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--family", type=click.Choice(FAMILIES), default="uniform", show_default=True,
              help="uniform (the paper's law), hub (two variables read by 30-60 equations) or chain (v_i = v_(i-1) + w)")
@click.option("--name-seeds", default="0", show_default=True,
              help="comma-separated workbench solve --seed values (the map from names to the model's): one row per size and seed")
@click.option("--tag", default="independent", show_default=True, help="record file stem in the model folder")
def command(model: str, sizes: str, count: int, recent: int | None, seed: int, batch_size: int, family: str,
            name_seeds: str, tag: str) -> None:
    """Accuracy on independently generated problems, fed through ``workbench solve``."""
    from workbench.model.card import eval_table, write_eval_record
    from workbench.model.checkpoint import read_config, resolve_model

    check_tag(tag, reserved=("config", "eval"))
    folder = resolve_model(model)
    modulus = int(read_config(folder)["task"]["modulus"])  # the one fact taken from the model: its arithmetic
    size_list = parse_sizes(sizes)
    try:
        seeds = [int(x) for x in name_seeds.split(",") if x.strip()]
    except ValueError:
        raise click.UsageError(f"--name-seeds {name_seeds!r} is not a comma-separated list of integers") from None
    if not seeds:
        raise click.UsageError("--name-seeds is empty; give e.g. 0 or 0,1,2,3,4")
    rng = random.Random(seed)
    rows = []
    with click.progressbar(size_list, label="independent check", item_show_func=lambda n: n and f"N={n}") as bar:
        for n in bar:
            made = [make_problem(n, rng, recent, modulus, family) for _ in range(count)]
            depths = [d for _, _, d in made]
            for name_seed in seeds:
                answers = solve_batch(str(folder), [text for text, _, _ in made], batch_size, name_seed)
                exact = [a["values"] == truth for a, (_, truth, _) in zip(answers, made)]
                nodes = [sum(a["values"].get(k) == v for k, v in truth.items()) / len(truth) for a, (_, truth, _) in zip(answers, made)]
                row = {"n_nodes": n, "count": count, "graph_acc": sum(exact) / count, "node_acc": sum(nodes) / count,
                       "mean_iterations": sum(a["iterations"] for a in answers) / count,
                       "converged": sum(a["converged"] for a in answers) / count,
                       "mean_depth": sum(depths) / count, "max_depth": max(depths),
                       "complete": sum(all(v is not None for v in a["values"].values()) for a in answers) / count}
                rows.append({**row, "name_seed": name_seed} if len(seeds) > 1 else row)
    command = (f"python probes/independent_check.py --model {model} --sizes {sizes} --count {count} --seed {seed}"
               + (f" --recent {recent}" if recent else "") + (f" --family {family}" if family != "uniform" else "")
               + (f" --name-seeds {name_seeds}" if seeds != [0] else ""))
    write_eval_record(folder, tag, folder.name, command, rows)
    click.echo(eval_table(rows))
    click.echo(f"wrote {folder / (tag + '.json')}")


def main(cmd: click.Command = command, argv: list[str] | None = None) -> None:
    """Run the command; bad input is one line on stderr and exit code 2."""
    run_command(cmd, argv, "independent_check.py", lambda exc: " (see 'python probes/independent_check.py --help')")


if __name__ == "__main__":
    main()
