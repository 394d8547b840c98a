"""What ``workbench info`` says about a model."""

from __future__ import annotations

from typing import Any

from workbench.model.looped import LoopedModel


def model_info(model: LoopedModel) -> dict[str, Any]:
    """Name, size, mechanisms, task, training summary and evaluation table of a loaded model."""
    meta = getattr(model, "meta", {})
    training = meta.get("training") or {}
    cfg = training.get("config", {})
    trained_on = None
    if cfg:
        phases = cfg.get("phases", [])
        done, seen = training.get("steps", 0), 0
        reached = []
        for p in phases:  # only the phases this checkpoint has trained on
            if seen >= done:
                break
            reached.append(p)
            seen += p["steps"]
        phases = reached or phases[:1]
        trained_on = {"steps": training.get("steps"), "tokens": training.get("tokens"),
                      "wall_time_s": training.get("wall_time_s"), "hardware": training.get("hardware"),
                      "max_nodes": max((p["nodes"][1] for p in phases), default=None),
                      "depth_cap": max((p.get("depth_cap") or 0 for p in phases), default=None),
                      "phases": [p["name"] for p in phases], "finished": training.get("finished", True)}
    evaluation = None
    path = meta.get("path")
    if path:
        import json
        from pathlib import Path

        ev = Path(path) / "eval.json"
        if ev.exists():
            evaluation = json.loads(ev.read_text())["sizes"]
    cot = getattr(model, "kind", None) == "chain-of-thought"  # a causal language model on solution traces
    shape = ("n_layers", "n_heads", "d_model", "n_ctx", "positions") if cot else ("n_layers", "n_heads", "d_model", "rel_window")
    return {"name": meta.get("name", "(unsaved)"), "path": path, "parameters": sum(p.numel() for p in model.parameters()),
            "mechanisms": {"kind": "chain-of-thought", "supervision": "next-word on solution traces"} if cot else model.cfg.mechanisms,
            "architecture": {k: model.cfg.to_dict()[k] for k in shape},
            "modulus": model.task.modulus, "operations": list(model.task.operations),
            "max_variables": model.task.n_names, "max_fan_in": model.task.max_fan_in,
            "trained_on": trained_on, "eval": evaluation}


def format_info(info: dict[str, Any]) -> str:
    """Human-readable ``workbench info``."""
    from workbench.model.card import eval_table

    lines = [f"model       {info['name']}  ({info['path']})", f"parameters  {info['parameters']:,}",
             "mechanisms  " + ", ".join(f"{k}: {v}" for k, v in info["mechanisms"].items()),
             "architecture " + ", ".join(f"{k}={v}" for k, v in info["architecture"].items()),
             f"task        modulus {info['modulus']}, operations {' '.join(info['operations'])}, "
             f"max_variables {info['max_variables']}, max_fan_in {info['max_fan_in']}"]
    t = info["trained_on"]
    if t:
        lines.append(f"trained on  N <= {t['max_nodes']}, depth <= {t['depth_cap']}; {t['steps']} steps, "
                     f"{t['tokens']:,} tokens, {t['wall_time_s'] / 60:.1f} min on {t['hardware']}")
        lines.append(f"curriculum  {' -> '.join(t['phases'])}" + ("" if t.get("finished", True) else "  (training in progress)"))
    else:
        lines.append("trained on  (no training record)")
    lines.append("evaluation")
    lines.append(eval_table(info["eval"]) if info["eval"] else "  (none yet: run `workbench eval --model NAME`)")
    return "\n".join(lines)
