"""The results page: every analysis of every model, with its plots, beside the paper's findings.

``write_page(results, doc, plots)`` takes ``{model: {analysis: result JSON}}`` and writes a markdown page
(``docs/results.md``) with the plots copied beside it (``docs/results/<model>/``). The comparison with
the paper is mechanical: each row's verdict follows a stated rule on the numbers (``ROWS``), and a
finding the model's training has not reached yet says so instead of "differs". The readings are
generated from the numbers too, so the page says what the data say and nothing more.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from workbench.analysis.comparison import (ROWS, comparison, fmt_number, fmt_percent, status_line, synthesis,
                                           trained_for)
from workbench.analysis.summary import summary_of

_f, _pct = fmt_number, fmt_percent

ANALYSES = ("probes", "lens", "routing", "attribution", "mlp", "codebook", "correction", "patching")
SCRIPTS = {"probes": "linear_probes.py", "lens": "bottleneck_lens.py", "routing": "attention_routing.py",
           "attribution": "head_attribution.py", "mlp": "mlp_analysis.py", "codebook": "codebook_usage.py",
           "correction": "error_correction.py", "patching": "activation_patching.py"}
WHAT = {
    "probes": "Linear probes (ridge on standardized residuals, split by graph) for a node's value, whether it is "
              "computed yet, its depth and its operands' names, at every step and residual point, with two "
              "control tasks and a random-weight model of the same architecture as baselines. The paper has no "
              "probes; this extends its Section 5 along the loop.",
    "lens": "The bottleneck lens decodes every residual point of every step through the final norm and the "
            "factor heads: where does a node's value first appear? Also the drift of the final hidden state.",
    "routing": "Attention from each operand token to its variable's definition (lookup), from each result "
               "position to its own operand tokens (gather: the paper's layer-1 heads move operand *names*) and "
               "to the operands' defining positions (induction: its layer-2 heads fetch operand *values*), per "
               "step, layer and head; head roles, and the accuracy lost when a head or a role's group is ablated.",
    "attribution": "The paper's controlled experiment: a template equation appended to a solved state, one slot "
                   "varied across a batch, each head's relative output variance at the result; the head groups it "
                   "implies; OV-circuit amplification per factor; the value written against the true sum.",
    "mlp": "Each MLP's relative residual change and ablation effect (teacher-forced steps), and a 3-D Fourier "
           "analysis over Z_p^3 of the last MLP at a template result position (the paper's modular-addition "
           "mechanism).",
    "codebook": "What the discrete bottleneck writes per factor and step: code histograms, entropy, unused codes, "
                "invalid combinations, and node-value transitions (corrections, new errors).",
    "correction": "Stepwise solved curves per graph size, halting at the fixed point against the oracle stop, "
                  "natural self-corrections, and injected errors: one-step and eventual repair.",
    "patching": "Cross-step activation patching from a clean run into a run whose one leaf value was changed: "
                "per step, layer and component (head, attention, MLP), the effect on that step's output and on "
                "the final state.",
}


# ------------------------------------------------------------------------------------------ readings
def _reading_probes(r: dict) -> str:
    res, s = r["results"], summary_of(r)
    t = res["tasks"]
    out = []
    if "value@rhs" in t:
        bd = np.array(t["value@rhs"]["by_depth"], dtype=float)  # [depth, step, point]
        diag = [f"depth {d}: {_f(bd[d, d, -1])}" for d in range(min(bd.shape[0], bd.shape[1])) if np.isfinite(bd[d, d, -1])]
        out.append(f"A node's value at its defining position: mean accuracy {_f(s.acc['value@rhs'])} after the last "
                   f"layer (majority {_f(s.majority['value@rhs'])}, random-weight model "
                   f"{_f(s.random_init_acc.get('value@rhs'))}). At the step that should compute it (step = depth): "
                   + ", ".join(diag) + ".")
    if "value@operand" in t:
        out.append(f"An operand's value at its occurrence in a later equation (never written there): "
                   f"{_f(s.acc['value@operand'])} (majority {_f(s.majority['value@operand'])}, random weights "
                   f"{_f(s.random_init_acc.get('value@operand'))}).")
    if "operand0@rhs" in t:
        ops = [f"v{k} {_f(s.acc[f'operand{k}@rhs'])}" for k in range(3) if f"operand{k}@rhs" in s.acc]
        out.append(f"Operand names at the result position (chance ~1/{t['operand0@rhs']['n_classes']}): "
                   + ", ".join(ops) + f"; random weights {_f(s.random_init_acc.get('operand0@rhs'))} for v0.")
    if "computed@operand" in t:
        out.append(f"'Computed yet' read at an operand occurrence: {_f(s.acc['computed@operand'])} "
                   f"(majority {_f(s.majority['computed@operand'])}).")
    name, shuffle = list(s.selectivity_name.values()), list(s.selectivity_shuffle.values())
    if name:
        out.append(f"Selectivity against the name control averages {_f(float(np.mean(name)))}: with d_model >= the "
                   f"name pool every function of the variable name is linear, so that control is memorized and "
                   f"selectivity against it is not informative here; against the within-graph shuffle it averages "
                   f"{_f(float(np.mean(shuffle)))}.")
    return " ".join(out)


def _reading_lens(r: dict) -> str:
    s = summary_of(r)
    by_point = s.acc_at_depth_by_point
    pts = r["results"]["points"]
    txt = (f"After the last layer the lens is the output itself; it decodes the true value at {_pct(s.last_acc)} "
           f"of defining positions at the last step. {_pct(s.never_decoded)} of nodes are never decoded right at any "
           f"step or point.")
    if by_point:
        txt += " At the step that should compute a node, by point: " + ", ".join(
            f"{p} {_f(v)}" for p, v in zip(pts, by_point)) + "."
    return txt


def _reading_routing(r: dict) -> str:
    res, s = r["results"], summary_of(r)
    parts = [f"{s.label(f'{role}_heads', layer)}: {heads}"
             for role, by_layer in s.role_heads().items() for layer, heads in by_layer.items()]
    path = ""
    if s.clean_frontier_acc is not None:
        path = (f" Path test: with the lookup heads ablated at the operand tokens only, frontier accuracy is "
                f"{_f(s.lookup_ablated_at_operands)}; ablated everywhere else, "
                f"{_f(s.lookup_ablated_elsewhere)} (clean {_f(s.clean_frontier_acc)}).")
    return (f"Head roles (teacher-forced steps, mean mass >= {res['threshold']}; causal check: ablation drop >= "
            f"{res.get('used_drop', 0.02)}): " + ("; ".join(parts) or "none") + "." +
            f" Max masses: operand lookup {_f(s.max_operand_lookup)}, gather {_f(s.max_gather)}, "
            f"induction {_f(s.max_induction)}." + path)


def _reading_attribution(r: dict) -> str:
    s = summary_of(r)
    acc = ", ".join(f"{s.label('accuracy', k)} {_pct(v)} (range over base graphs "
                    f"{s.shown('accuracy_range', k) if k in s.accuracy_range else 'n/a'})" for k, v in s.accuracy.items())
    groups = "; ".join(f"{s.label('groups', layer)}: {v}" for layer, v in s.groups.items())
    ov = "; ".join(f"{s.label('ov_top', layer)}: {s.shown('ov_top', layer)}" for layer in s.ov_top)
    return f"Written value right at the template result: {acc}. Head groups by relative variance: {groups}. {ov}."


def _reading_mlp(r: dict) -> str:
    s = summary_of(r)
    rel = ", ".join(f"L{layer} {_f(v)}" for layer, v in s.rel_change.items())
    drop = ", ".join(f"L{layer} {_f(v)}" for layer, v in s.ablation_drop.items())
    return (f"Relative residual change by MLP: {rel}. Mean-ablating an MLP drops the frontier accuracy (clean "
            f"{_f(s.clean_frontier_acc)}) by {drop}. Over Z_p^3 the template result is right {_pct(s.sweep_accuracy)} "
            f"of the time; the pre-activation's bias share is {_f(s.pre_bias_share)}, the diagonal share of the "
            f"post-activation {_f(s.diagonal_share['post'], 4)}, of the output {_f(s.diagonal_share['out'], 4)}, of the "
            f"value logits {_f(s.diagonal_share['logits'], 4)}; the logits' power on each operand's own axis "
            f"(following that operand alone) is v0, v1, v2 = {s.shown('logits_axis_share')}.")


def _reading_codebook(r: dict) -> str:
    s, res = summary_of(r), r["results"]
    t = s.transitions
    worst = max(res["invalid"], key=lambda k: np.nanmax(np.array(res["invalid"][k], dtype=float)))
    return (f"{s.unused_value_codes} value codes are never written ({res['sizes'][3] - 2 - r['model']['modulus']} "
            f"spare codes >= p exist). Per node over all steps: empty->right {_f(t['empty->right'])}, "
            f"empty->wrong {_f(t['empty->wrong'])}, corrections {_f(t['corrections (wrong->right)'])}, "
            f"new errors {_f(t['new errors (right->wrong)'])}. The most frequent invalid combination is "
            f"'{worst}' (max rate {_f(s.max_invalid_rate)}).")


def _reading_correction(r: dict) -> str:
    s = summary_of(r)
    solved = "; ".join(f"N={n} {s.shown('solved', n)}" for n in s.solved)
    return (f"Fully solved at the fixed point / with the oracle stop: {solved}. One injected error is repaired in one "
            f"step {_pct(s.one_step_repair)} of the time, eventually {_pct(s.eventual_repair)}; the run ends where "
            f"the clean run ended {_pct(s.ends_as_clean)} of the time.")


def _reading_patching(r: dict) -> str:
    s = summary_of(r)
    comps = "; ".join(f"L{layer} {kind} {_f(v)}" for layer in s.mlp_effect
                      for kind, v in (("mlp", s.mlp_effect[layer]), ("attn", s.attn_effect.get(layer))))
    largest = "n/a" if s.largest_step_effect is None else s.largest_step_effect
    return (f"Sanity: patching the whole clean state restores the clean final state ({_f(s.state_patch_effect)}). "
            f"Largest single effect: {largest}. Mean step effect of whole sublayers: {comps}. "
            f"{s.nodes_differing} node values differ between the clean and corrupted final states.")


READINGS = {"probes": _reading_probes, "lens": _reading_lens, "routing": _reading_routing,
            "attribution": _reading_attribution, "mlp": _reading_mlp, "codebook": _reading_codebook,
            "correction": _reading_correction, "patching": _reading_patching}


# ---------------------------------------------------------------------------------------------- page
FANOUT_PAGE = "fanout.md"
"""The fan-out write-up beside the results page (``probes/fan_out.py``), linked from it when present."""


def write_page(results: dict[str, dict[str, dict]], doc: str | Path, plots: str | Path, *,
               sources: dict[str, Path] | None = None, command: str = "python probes/reproduce_paper.py") -> Path:
    """Write the markdown page ``doc`` and copy every figure into ``plots/<model>/``; returns ``doc``.

    results: {model: {analysis: result}}; sources: {model: folder holding the results' PNGs}.
    """
    doc, plots = Path(doc), Path(plots)
    doc.parent.mkdir(parents=True, exist_ok=True)
    rel = Path(plots).resolve().relative_to(doc.parent.resolve()) if plots.resolve().is_relative_to(doc.parent.resolve()) else plots
    lines = ["# Results: the paper's analyses on our models", ""]
    models = list(results)
    finished = all(trained_for(next(iter(results[m].values()))["model"])["finished"] for m in models)
    if not finished:
        lines += ["> **Preliminary.** " + " ".join(status_line(next(iter(results[m].values()))["model"]) for m in models)
                  + " A partially trained model has learned only some of the task, so most mechanisms below are "
                  "expected to be absent or partial; every number here will be rerun when the trained models land "
                  f"(`{command}`).", ""]
    lines += [f"Generated by `{command}` (deterministic for a given seed and model). Each analysis writes its JSON, "
              "PNG and interactive HTML to `models/<name>/probes/`; the plots here are copies. Verdicts are "
              "mechanical: the rules are in `workbench/analysis/comparison.py`, and a finding the model's training "
              "has not reached yet is marked so rather than counted against it.", ""]
    if (doc.parent / FANOUT_PAGE).exists():
        lines += [f"See also [{FANOUT_PAGE}]({FANOUT_PAGE}): why a model loses its name lookup when one variable is read "
                  "by many equations, measured with the workbench (`python probes/fan_out.py`).", ""]
    lines += ["## The paper's findings beside ours", ""]
    header = "| finding | paper | " + " | ".join(f"`{m}`" for m in models) + " |"
    lines += [header, "|" + "---|" * (2 + len(models))]
    per_model = {m: comparison(results[m]) for m in models}
    for i, (finding, paper, _, _) in enumerate(per_model[models[0]]):
        cells = [f"{per_model[m][i][2]} — **{per_model[m][i][3]}**" for m in models]
        lines.append(f"| {finding} | {paper} | " + " | ".join(cells) + " |")
    lines.append("")
    for m in models:
        bullets = synthesis(results[m])
        if bullets:
            lines += [f"**Across the analyses, `{m}`:**", ""] + [f"- {b}" for b in bullets] + [""]
    for k, analysis in enumerate(ANALYSES, 1):
        present = [m for m in models if analysis in results[m]]
        if not present:
            continue
        first = results[present[0]][analysis]
        lines += [f"## {k}. {first['title']}", "", WHAT[analysis], "",
                  f"Script: `probes/{SCRIPTS[analysis]}`; library: `workbench/analysis/{_module(analysis)}.py`.", ""]
        for m in present:
            r = results[m][analysis]
            lines += [f"**`{m}`** ({_f(r['runtime_s'], 0)} s). {READINGS[analysis](r)}", ""]
            for fig in r.get("figures", []):
                src = (sources or {}).get(m, Path(r["model"].get("path") or ".") / "probes") / fig["png"]
                dst = plots / m / fig["png"]
                if src.is_file():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, dst)
                    lines += [f"![{fig['title']}]({(rel / m / fig['png']).as_posix()})", ""]
            lines += ["<details><summary>numbers</summary>", "", "| quantity | value |", "|---|---|"]
            lines += [f"| {key} | {_f(v, 3) if isinstance(v, float) else v} |" for key, v in r["summary"].items()]
            lines += ["", f"Parameters: `{r['params']}`", "", "</details>", ""]
    lines += ["## Runtimes", "", "| analysis | " + " | ".join(f"`{m}` (s)" for m in models) + " |",
              "|---|" + "---|" * len(models)]
    for analysis in ANALYSES:
        lines.append(f"| {analysis} | " + " | ".join(_f(results[m][analysis]["runtime_s"], 0) if analysis in results[m]
                                                      else "—" for m in models) + " |")
    doc.write_text("\n".join(lines) + "\n")
    return doc


def _module(analysis: str) -> str:
    return analysis


__all__ = ["ANALYSES", "SCRIPTS", "WHAT", "ROWS", "trained_for", "status_line", "comparison", "synthesis", "READINGS",
           "write_page"]
