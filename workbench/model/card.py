"""Model cards: ``card.md`` written from a model folder's ``config.json`` and ``eval.json``.

Hand-written notes survive regeneration: everything below the line ``<!-- notes -->`` is kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workbench.model.checkpoint import CARD, CONFIG, write_text_atomic

EVAL_FILE = "eval.json"
ROBUSTNESS_FILE = "robustness.json"  # written by ``workbench robustness``: accuracy per graph family and size
TRAINING_PNG, TRAINING_HTML = "training.png", "training.html"  # written by workbench.training.curves
FAILED_GLOB = "failed-*.jsonl"  # failed branches of a run, kept in its folder beside log.jsonl
NOTES_MARK = "<!-- notes -->"


def eval_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of an evaluation: one row per graph size (and name-map seed, when the record has them).

    ``% complete`` (every variable got a value) shows when the rows carry it: a fixed point with EMPTY
    slots converges without being complete.
    """
    seeded = any("name_seed" in r for r in rows)
    complete = any("complete" in r for r in rows)
    head = "| N |" + (" name seed |" if seeded else "") + " graphs | % fully solved | % nodes right |" + \
        (" % complete |" if complete else "") + " mean steps | % converged | mean / max depth |"
    lines = [head, "|---|" + ("---|" if seeded else "") + "---|---|---|" + ("---|" if complete else "") + "---|---|---|"]
    for r in rows:
        lines.append(f"| {r['n_nodes']} |" + (f" {r.get('name_seed', 0)} |" if seeded else "")
                     + f" {r['count']} | {100 * r['graph_acc']:.1f} | {100 * r['node_acc']:.1f} |"
                     + (f" {100 * r['complete']:.1f} |" if complete and "complete" in r else (" – |" if complete else ""))
                     + f" {r['mean_iterations']:.1f} | {100 * r['converged']:.1f} | {r['mean_depth']:.1f} / {r['max_depth']} |")
    return "\n".join(lines)


def robustness_table(families: dict[str, list[dict[str, Any]]]) -> str:
    """Markdown table: one row per graph family, % of graphs fully solved per N (nodes right in brackets)."""
    from workbench.task.families import FAMILIES

    sizes = sorted({r["n_nodes"] for rows in families.values() for r in rows})
    lines = ["| family | stresses | " + " | ".join(f"N={n}" for n in sizes) + " |", "|---|---|" + "---|" * len(sizes)]
    for name, rows in families.items():
        by_n = {r["n_nodes"]: r for r in rows}
        cells = [f"{100 * by_n[n]['graph_acc']:.1f} ({100 * by_n[n]['node_acc']:.1f})" if n in by_n else "–" for n in sizes]
        axis = FAMILIES[name].axis if name in FAMILIES else "?"
        lines.append(f"| {name} | {axis} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def read_robustness(folder: str | Path) -> dict[str, Any] | None:
    """A folder's ``robustness.json`` ({model, command, families: {name: rows}}); None when absent or malformed."""
    try:
        rec = json.loads((Path(folder) / ROBUSTNESS_FILE).read_text())
        families = rec["families"]
        if isinstance(families, dict) and families and all(isinstance(rows, list) and rows for rows in families.values()):
            return rec
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        pass
    return None


def robustness_section(folder: Path) -> list[str]:
    """Card lines for the folder's ``robustness.json`` ([] when absent or unreadable)."""
    rec = read_robustness(folder)
    if rec is None:
        return []
    families = rec["families"]
    count = next(iter(families.values()))[0].get("count", "?")
    return ["## Robustness", "",
            f"`{rec.get('command', 'workbench robustness')}`: {count} fresh graphs per family and N, free-running until the "
            "state stops changing. % of graphs fully solved (% of nodes right). Each family is the paper's law with one "
            "axis pushed (`workbench.task.families`): `hub` has two variables each read by 30-60 later equations, "
            "`hub-chain` is `v_i = v_(i-1) + w` through every node.", "",
            robustness_table(families), ""]


def write_robustness_record(folder: str | Path, model: str, command: str, families: dict[str, list[dict[str, Any]]],
                            *, card: bool = True) -> Path:
    """Write ``robustness.json`` ({model, command, families: {name: rows}}) and refresh the card when ``card``."""
    folder = Path(folder)
    path = folder / ROBUSTNESS_FILE
    write_text_atomic(path, json.dumps({"model": model, "command": command, "families": families}, indent=2) + "\n")
    if card:
        write_card(folder)
    return path


def hubs_cell(phase: dict[str, Any]) -> str:
    """The phases table's hub column: '-' or the share of rewired graphs and their reader cap."""
    if not phase.get("hubs"):
        return "-"
    return f"{phase['hubs']:g} of graphs, <= {phase.get('max_fan_out', 12)} readers"


def phases_table(phases: list[dict[str, Any]], lr: float | None = None) -> str:
    """Markdown table of the curriculum; ``lr`` is the run's rate, shown where a phase keeps it."""
    lines = ["| phase | steps | lr | N | fan-in | modulus | leaf values | zero leaves | operand lookup | depth cap | corruption | hubs |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in phases:
        lines.append(f"| {p['name']} | {p['steps']} | {p.get('lr') or lr} | {p['nodes'][0]}-{p['nodes'][1]} | {','.join(map(str, p['fan_in']))} | "
                     f"{p.get('modulus') or 'task'} | {p.get('leaf_values') or 'all'} | {p.get('zero_leaves', 0)} | "
                     f"{p.get('operand_lookup', 0)} | {p.get('depth_cap')} | "
                     f"{'model default' if p.get('corruption_prob') is None else p['corruption_prob']} | "
                     f"{hubs_cell(p)} |")
    return "\n".join(lines)


def training_mode(model: dict[str, Any], cfg: dict[str, Any]) -> str:
    """What one training example is, for each kind of model (the card's batch line)."""
    if model.get("recurrence") == "feedforward":
        return f"one pass of {model['n_layers']} distinct blocks, end to end"
    if model.get("latent") == "discrete":
        return f"{cfg['steps_per_graph']} sampled teacher-forced steps"
    return f"an unrolled loop of depth + 1 steps (at most {cfg.get('unroll_cap')}), backpropagated through"


def hardware_line(training: dict[str, Any]) -> str:
    """Where the steps ran: one machine, or each stretch of a run trained over several sittings
    (neighbouring stretches on the same machine are merged)."""
    merged: list[dict[str, Any]] = []
    for st in training.get("stretches") or []:
        if merged and merged[-1]["hardware"] == st["hardware"] and merged[-1]["steps"][1] == st["steps"][0]:
            merged[-1] = {**st, "steps": [merged[-1]["steps"][0], st["steps"][1]],
                          "wall_time_s": merged[-1]["wall_time_s"] + st["wall_time_s"]}
        else:
            merged.append(st)
    if len(merged) <= 1:
        return f"- hardware: {training['hardware']}"
    parts = [f"steps {st['steps'][0]:,}-{st['steps'][1]:,} on {st['hardware'] or 'a machine not recorded'} "
             f"({st['wall_time_s'] / 60:.1f} min)" for st in merged]
    return "- hardware, by stretch of training: " + "; ".join(parts)


def record_section(path: Path, *, main: bool = False) -> list[str]:
    """Card lines for one evaluation record (``eval.json`` or another ``*.json`` with sizes and a command),
    with its plot when one sits beside it; [] for JSON files that are not evaluation records."""
    try:
        ev = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return []
    if not isinstance(ev, dict) or not isinstance(ev.get("sizes"), list) or not ev["sizes"] or ("command" not in ev and not main):
        return []
    how = ("depth uncapped, free-running until the discrete state stops changing (cap 2 x N steps), no oracle step count"
           if main else "free-running until the state stops changing")
    lines = [] if main else [f"### `{path.stem}`", ""]
    lines += [f"`{ev.get('command', 'workbench eval')}`: {ev['sizes'][0]['count']} fresh graphs per N, {how}.", "",
              eval_table(ev["sizes"]), ""]
    plot = path.with_suffix(".png")
    if plot.exists():
        lines += [f"![{'accuracy against N' if main else path.stem}]({plot.name})", ""]
    return lines


def recipe_path(cfg: dict, shown: str) -> str:
    """The training config that made a model: ``train.toml`` beside its run folder (the config's ``out``), which
    for a model exported into its own folder is that folder and for a checkpoint kept elsewhere (e.g.
    ``models/x/run/at-1000``) is still the recipe in ``models/x``; ``{shown}/train.toml`` when that is not there."""
    from workbench.model.checkpoint import models_dir

    out = Path(str(cfg.get("out", "")).replace("{name}", str(cfg.get("name", ""))))
    candidate = out.parent / "train.toml"
    return candidate.as_posix() if str(out) and (models_dir().parent / candidate).is_file() else f"{shown}/train.toml"


def render_card(folder: str | Path) -> str:
    """The card's markdown for a model folder (does not write it)."""
    folder = Path(folder)
    meta = json.loads((folder / CONFIG).read_text())
    model, task, training = meta["model"], meta["task"], meta.get("training")
    from workbench.model.config import ModelConfig

    mech = ModelConfig.from_dict(model).mechanisms
    out = [f"# Model card: `{meta.get('name', folder.name)}`", "",
           "A looped transformer for modular arithmetic on random computational graphs (workbench format "
           f"`{meta.get('format')}`: `model.safetensors` + `config.json`).", "",
           "## Mechanisms", "", *[f"- **{k.replace('_', ' ')}**: {v}" for k, v in mech.items()], "",
           "## Task", "",
           f"- modulus p = {task['modulus']}, operations {task['operations']}, name pool {task['n_names']}, "
           f"max fan-in {task['max_fan_in']}, value codes {task.get('n_values') or task['modulus']}", "",
           "## Architecture", "",
           f"- {model['n_layers']} layers x {model['n_heads']} heads x d_model {model['d_model']}, "
           f"relative-position window {model['rel_window']}, dropout {model['dropout']}", ""]
    from workbench.model.checkpoint import models_dir

    shown = f"models/{folder.name}" if folder.resolve().parent == models_dir().resolve() else folder.as_posix()
    if training:
        cfg = training["config"]
        recipe = recipe_path(cfg, shown)
        status = [] if training.get("finished", True) else [
            f"**Training is still in progress**: this export is the checkpoint at step {training['steps']} of "
            f"{training.get('total_steps')} (phase `{training.get('last_phase')}`; the phases after it "
            f"have not run yet); resume it with "
            f"`workbench train --config {recipe} --resume`.", ""]
        out += ["## Training", "", *status,
                f"- steps: {training['steps']}, tokens: {training['tokens']:,}, wall time: {training['wall_time_s'] / 60:.1f} min",
                hardware_line(training),
                f"- batch: {cfg['batch_graphs']} graphs x {training_mode(model, cfg)}; "
                f"AdamW lr {cfg['lr']} (warm-up {cfg['warmup_steps']}), weight decay {cfg['weight_decay']}, "
                f"value-loss weight {cfg['value_weight']}, seed {cfg['seed']}",
                (f"- fine-tuned: started from the weights of `{cfg['init']}` (the config's `init`), then trained "
                 "the phases below; the notes name the config file" if cfg.get("init") else
                 f"- reproduce: `workbench train --config {recipe}`"), "",
                phases_table(cfg["phases"], cfg.get("lr")), ""]
        if training.get("evals"):
            out += ["### Evaluations during training (free-running, until the state stops changing)", "",
                    "| step | phase | " + " | ".join(f"N={s['n_nodes']} % solved" for s in training["evals"][-1]["sizes"]) + " |",
                    "|---|---|" + "---|" * len(training["evals"][-1]["sizes"])]
            for e in training["evals"]:
                out.append(f"| {e['step']} | {e['phase']} | " + " | ".join(f"{100 * s['graph_acc']:.1f}" for s in e["sizes"]) + " |")
            out.append("")
        if (folder / TRAINING_PNG).exists():
            out += ["### Training curves", "",
                    "Loss, training accuracy (teacher-forced models: the frontier slots of one step; unrolled models: "
                    "every node's value after the last unrolled step) and the evaluations above, against the step; "
                    "dotted lines mark where each phase starts"
                    + (f"; dashed curves are failed branches kept in `run/{FAILED_GLOB}`"
                       if any((folder / "run").glob(FAILED_GLOB)) else "")
                    + f". Interactive: `{TRAINING_HTML}`.", "",
                    f"![training curves]({TRAINING_PNG})", ""]
    if (folder / EVAL_FILE).exists():
        out += ["## Evaluation", "", *record_section(folder / EVAL_FILE, main=True)]
    out += robustness_section(folder)
    for extra in sorted(folder.glob("*.json")):
        if extra.name not in (CONFIG, EVAL_FILE, ROBUSTNESS_FILE):
            out += record_section(extra)
    out += ["## Hooks", "", "Hook names: `loop.{t}.blocks.{l}.attn.hook_pattern` and friends (see ARCHITECTURE.md).", ""]
    old = (folder / CARD).read_text() if (folder / CARD).exists() else ""
    notes = old.split(NOTES_MARK, 1)[1] if NOTES_MARK in old else "\n\n_No notes yet._\n"
    return "\n".join(out) + "\n" + NOTES_MARK + notes


def write_eval_record(folder: str | Path, tag: str, model: str, command: str, rows: list[dict[str, Any]],
                      *, card: bool = True) -> Path:
    """Write an evaluation record ``TAG.json`` (the one format ``workbench eval`` and the independent
    check share: model, the command that reproduces it, one row per size) and, when ``card``, refresh
    the folder's card so the record is listed there."""
    folder = Path(folder)
    path = folder / f"{tag}.json"
    write_text_atomic(path, json.dumps({"model": model, "command": command, "sizes": rows}, indent=2) + "\n")
    if card:
        write_card(folder)
    return path


def write_card(folder: str | Path) -> Path:
    """Regenerate ``card.md`` in a model folder, keeping its hand-written notes."""
    folder = Path(folder)
    write_text_atomic(folder / CARD, render_card(folder))
    return folder / CARD
