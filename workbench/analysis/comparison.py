"""The paper's findings beside ours, row by row, and the facts that read across analyses.

``comparison(res)`` gives one model's ``(finding, paper, ours, verdict)`` rows: each verdict follows a stated
rule on the numbers (``ROWS``), and a finding the model's training has not reached yet (``trained_for``) says
so instead of "differs". ``synthesis(res)`` gives the bullets that combine analyses. Both read each result's
typed summary (``workbench.analysis.summary.summary_of``) and its arrays; ``report`` puts them on the page.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from workbench.analysis.summary import summary_of


# ------------------------------------------------------------------------------------------- helpers
def fmt_number(x, digits: int = 2) -> str:
    """A number as the page shows it: ``digits`` decimals for a float, "n/a" for a missing one.

    >>> fmt_number(0.98062), fmt_number(None), fmt_number(44)
    ('0.98', 'n/a', '44')
    """
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def fmt_percent(x) -> str:
    """A share as a percentage (``0.859`` -> ``"85.9 %"``), "n/a" for a missing one."""
    return "n/a" if x is None else f"{100 * x:.1f} %"


_f, _pct = fmt_number, fmt_percent


def trained_for(model: dict) -> dict[str, bool]:
    """What the model's training has reached: ``addition2``, ``addition3``, ``error_correction``, ``finished``."""
    tr = model.get("training") or {}
    finished = bool(tr.get("finished")) or tr.get("steps") is None
    fan = max((tr.get("phase_info") or {}).get("fan_in") or [3])
    phases = tr.get("phases") or []
    phase = tr.get("phase")
    ec_phase = "error-correction" in phases and phase in phases and phases.index(phase) >= phases.index("error-correction")
    return {"finished": finished, "addition2": finished or fan >= 2, "addition3": finished or fan >= 3,
            "error_correction": finished or ec_phase}


def status_line(model: dict) -> str:
    """One line on how far the model trained."""
    tr = model.get("training") or {}
    if trained_for(model)["finished"]:
        return f"`{model['name']}`: fully trained."
    info = tr.get("phase_info") or {}
    what = ""
    if info:
        fan = max(info.get("fan_in") or [3])
        seen = {1: "copying only: no addition seen yet", 2: "copies and sums of two operands, not of three"}.get(fan, "sums of up to three operands")
        if info.get("modulus") and info["modulus"] != model.get("modulus"):
            seen += f", wrap-free (modulus {info['modulus']})"
        what = f" (fan-in {info.get('fan_in')}, N {info.get('nodes')}: {seen})"
    return (f"`{model['name']}` is **PARTIALLY TRAINED**: step {tr.get('steps')} of {tr.get('total_steps')}, "
            f"phase `{tr.get('phase')}`{what}.")


# ------------------------------------------------------------------------------ the paper, row by row
def _roles(res: dict, layer: int, role: str) -> list[dict]:
    return [r for r in res["routing"]["results"]["roles"] if r["layer"] == layer and r["role"] == role]


def _ov_top(res: dict, layer: int, heads: list[int]) -> list[str]:
    ov = res["attribution"]["results"]["ov"]
    return [ov["factors"][int(np.argmax(ov["ratio"][layer][h]))] for h in heads]


def _describe(heads: list[dict]) -> str:
    """``[2 (v0, used), 5 (v1, attends, not used)]``: head, slot where it has one, and the causal verdict."""
    def one(r: dict) -> str:
        bits = [f"v{r['slot']}"] if r.get("slot") is not None else []
        bits += [r["verdict"]] if r.get("verdict") else []
        return f"{r['head']} ({', '.join(bits)})" if bits else str(r["head"])
    return "[" + ", ".join(one(r) for r in heads) + "]"


def _row_copy(res):
    """The paper's layer-1 heads read the operand *names* from the result position, one head per slot
    (our ``gather``). A model may instead look values up at the operand tokens first (``lookup``)."""
    heads = _roles(res, 0, "gather")
    slots = {r["slot"] for r in heads if r["slot"] is not None}
    groups = res["attribution"]["results"]["groups"][-1][0] if res.get("attribution") else {}
    ours = f"L0 gather heads {_describe(heads)}; attribution groups (fan-in 3) {groups or 'none'}"
    lookup = _roles(res, 0, "lookup")
    if not heads and lookup:
        r = res["routing"]["results"]
        later = [x for x in r["roles"] if x["layer"] > 0 and x["role"] == "gather"]
        mass = max(x["operand_lookup"] for x in lookup)
        ours = (f"differs: L0 heads {_describe(lookup)} look each operand's value up at the operand token "
                f"(mass on the definition up to {_f(mass)}); the result position then gathers the operand tokens "
                f"by slot in L1: {_describe(later)}")
        return ours, "differs", None
    verdict = "agrees" if len(heads) >= 2 and len(slots) >= 3 else "partly" if heads else "not seen"
    return ours, verdict, "addition2" if len(slots) < 3 else None


def _row_ov_var(res):
    heads = [r["head"] for r in _roles(res, 0, "gather")] or list(range(res["routing"]["results"]["heads"]))
    top = _ov_top(res, 0, heads)
    share = top.count("variable") / len(top)
    return (f"top factor of L0 {'gather' if _roles(res, 0, 'gather') else 'all'} heads: {', '.join(top)}",
            "agrees" if share > 0.5 else "partly" if share > 0 else "differs", None)


def _row_mlp0(res):
    v = summary_of(res["mlp"]).rel_change[0]
    return f"L0 MLP relative change {_f(v)}", "agrees" if v < 0.1 else "differs", None


def _row_induction(res):
    last = res["routing"]["results"]["layers"] - 1
    heads = _roles(res, last, "induction")
    some = [r for r in res["routing"]["results"]["roles"] if r["layer"] == last and "induction" in r["steps"]]
    when = ", ".join(f"{r['head']} (steps {[t for t, x in enumerate(r['steps']) if x == 'induction']})" for r in some)
    ours = f"L{last} induction heads over all steps {_describe(heads)}; at some step: {when or 'none'}"
    gather = _roles(res, last, "gather")
    if not heads and not some and gather:
        r = res["routing"]["results"]
        ours = (f"differs: no head reads the parents' definitions from the result position (max induction mass "
                f"{_f(max(x['induction'] for x in r['roles']))}); L{last} gathers the looked-up values from the operand "
                f"tokens by slot instead: {_describe(gather)}")
        return ours, "differs", None
    verdict = "agrees" if len(heads) >= 2 else "partly" if heads or some else "not seen"
    return ours, verdict, None


def _row_ov_val(res):
    last = res["routing"]["results"]["layers"] - 1
    heads = [r["head"] for r in _roles(res, last, "induction")] or list(range(res["routing"]["results"]["heads"]))
    top = _ov_top(res, last, heads)
    share = top.count("value") / len(top)
    return (f"top factor of L{last} {'induction' if _roles(res, last, 'induction') else 'all'} heads: {', '.join(top)}",
            "agrees" if share > 0.5 else "partly" if share > 0 else "differs", None)


def _row_fourier(res):
    f = res["mlp"]["results"]["fourier"]["fractions"]
    share = {s: f[s]["diagonal"] / max(1 - f[s]["bias"], 1e-9) for s in f}
    ours = (f"pre: bias {_f(f['pre']['bias'])}; diagonal share of the non-bias power: post {_f(share['post'])}, "
            f"out {_f(share['out'])}, logits {_f(share['logits'])}")
    verdict = "agrees" if share["logits"] > 0.5 and share["post"] > share["pre"] else \
        "partly" if share["logits"] > 0.2 else "differs"
    return ours, verdict, "addition3"


def _row_template(res):
    acc = res["attribution"]["results"]["accuracy"][-1]
    k = res["attribution"]["results"]["fan_ins"][-1]
    return f"{_pct(acc)} right (fan-in {k})", "agrees" if acc > 0.9 else "partly" if acc > 0.5 else "differs", \
        "addition3"


def _row_stepwise(res):
    st = res["correction"]["results"]["stepwise"]
    n = "32" if "32" in st else max(st, key=int)
    s = st[n]["solved"]
    at = lambda t: _pct(s[t]) if t < len(s) else "n/a"  # noqa: E731
    ours = f"N={n}: {at(10)} after iteration 10, {at(12)} after 12 (ran {len(s)})"
    best = max(v for v in s if v is not None) if s else 0
    return ours, "agrees" if best >= 0.95 else "partly" if best >= 0.5 else "differs", "addition3"


def _row_repair(res):
    v = summary_of(res["correction"]).one_step_repair
    return f"one-step repair of 1 injected error: {_pct(v)}", "agrees" if v >= 0.9 else \
        "partly" if v >= 0.5 else "differs", "error_correction"


#: (finding, the paper's number or claim, rule -> (ours, verdict, what training it needs), analyses it reads)
ROWS: list[tuple[str, str, Callable, tuple[str, ...]]] = [
    ("Layer-1 heads copy operand names to the result, grouped by slot", "v0 {4, 8}, v1 {5, 12}, v2 {3, 7, 11, 14}",
     _row_copy, ("routing", "attribution")),
    ("Layer-1 OV circuits amplify the variable factor", "yes", _row_ov_var, ("routing", "attribution")),
    ("Layer-1 MLP nearly inert", "< 10 % relative L2 change", _row_mlp0, ("mlp",)),
    ("Layer-2 heads fetch operand values by induction, grouped by slot", "v0 {0, 8, 15}, v1 {5, 10}, v2 {2, 3, 4, 7, 9}",
     _row_induction, ("routing",)),
    ("Layer-2 OV circuits amplify the value factor", "yes", _row_ov_val, ("routing", "attribution")),
    ("Last MLP adds mod p with Fourier features", "bias dominates pre-act.; diagonal (a,a,a) after ReLU and in the output",
     _row_fourier, ("mlp",)),
    ("Controlled experiment: written value = true sum", "the model solves it", _row_template, ("attribution",)),
    ("Stepwise: depth-d graphs solved at iteration d", "N = 32: 99 % by iteration 10, 100 % by 12", _row_stepwise,
     ("correction",)),
    ("One-step error correction", "near 100 % (4-layer model)", _row_repair, ("correction",)),
]


def comparison(res: dict) -> list[tuple[str, str, str, str]]:
    """``(finding, paper, ours, verdict)`` rows for one model's results ``{analysis: result}``."""
    model = next(iter(res.values()))["model"]
    reached = trained_for(model)
    rows = []
    for finding, paper, rule, needs in ROWS:
        if not all(a in res for a in needs):
            rows.append((finding, paper, "not run", "—"))
            continue
        ours, verdict, requires = rule(res)
        if verdict != "agrees" and requires is not None and not reached[requires]:
            verdict += f" — not trained for it yet ({requires.replace('_', ' ')})"
        rows.append((finding, paper, ours, verdict))
    return rows


def synthesis(res: dict) -> list[str]:
    """Bullets that read across analyses (each a fact with its numbers), for one model's results."""
    out = []
    if "routing" in res:
        roles = res["routing"]["results"]["roles"]
        for role, what in (("lookup", "look operand values up at the operand tokens"),
                           ("gather", "gather operand tokens into the result position by slot"),
                           ("induction", "read the parents' definitions from the result position")):
            heads = [r for r in roles if r["role"] == role]
            if heads:
                used = [r for r in heads if r.get("verdict", "used").startswith("used")]
                names = ", ".join("L%dh%d" % (r["layer"], r["head"]) for r in heads)
                out.append(f"Heads {names} {what} (routing); {len(used)} of {len(heads)} pass the ablation check.")
    if "attribution" in res:
        a = res["attribution"]["results"]
        groups = a["groups"][-1]
        slots = sorted({slot for g in groups for slot in g if slot != "rhs"})
        out.append(f"With a fan-in-{a['fan_ins'][-1]} template, head outputs at the result follow the operand slots "
                   f"{slots or 'none'} (attribution groups {groups}).")
    if "mlp" in res:
        axes = res["mlp"]["results"]["fourier"]["axis_by_operand"]["logits"]
        f = res["mlp"]["results"]["fourier"]["fractions"]["logits"]
        top = int(np.argmax(axes))
        out.append(f"Over Z_p^3 the value logits put {_f(axes[top])} of their power on operand v{top}'s own axis and "
                   f"{_f(f['diagonal'])} on the sum's diagonal (mlp): the written value follows "
                   f"{'one operand, not the sum' if axes[top] > f['diagonal'] else 'the sum'}.")
    if "lens" in res:
        by_point = summary_of(res["lens"]).acc_at_depth_by_point
        pts = res["lens"]["results"]["points"]
        if by_point:
            jump = int(np.argmax(np.diff([0.0] + list(by_point))))
            where = f"written by the sublayer just before {pts[jump]}" if jump else "already in the input"
            out.append(f"At the step that computes a node, its value first becomes decodable at {pts[jump]} "
                       f"({_f(by_point[jump])}; lens): {where}.")
    if "correction" in res:
        st = res["correction"]["results"]["stepwise"]
        n = max(st, key=int)
        iters = st[n]["iterations_by_depth"]
        d = np.array([int(k) for k in iters], dtype=float)
        v = np.array(list(iters.values()), dtype=float)
        slope = float(np.polyfit(d, v, 1)[0]) if len(d) > 1 else float("nan")
        out.append(f"At N={n} the loop reaches its fixed point after {_f(float(v.mean()), 1)} steps on average, "
                   f"{_f(slope)} more per unit of graph depth (a perfect model: depth + 1, slope 1; correction).")
    return out


__all__ = ["fmt_number", "fmt_percent", "trained_for", "status_line", "ROWS", "comparison", "synthesis"]
