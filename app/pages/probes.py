"""Probes: the analyses that probes/ saved for a model, as a report: contents, the comparison first, then one
section per analysis (what it shows, its headline numbers, its figures), from saved JSON."""

from __future__ import annotations

import math

import dash
from dash import Input, Output, State, callback, dcc, html, no_update

from app import ids
from app.common import GRAPH_CONFIG, error_box, failure_text, safe, session_model

dash.register_page(__name__, path="/probes", name="Probes", order=4, title="Probes · workbench")
ID = ids.scoped(__name__)
SCHEMA = "workbench-analysis/1"

#: analyses whose result compares mechanisms or models (the paper's §5); shown first when a model has one
COMPARISONS = ("comparison", "circuits", "mechanisms")
#: what each analysis shows, in one sentence (the section's first line)
ABOUT = {
    "comparison": "The paper's §5 comparison: how the mechanisms differ, side by side.",
    "circuits": "The paper's §5 comparison: which circuit each mechanism uses, side by side.",
    "probes": "Linear probes read each node's value (and its operands') from the residual stream at every step and "
              "residual point; selectivity subtracts a control task, so a high number means the value is really there.",
    "lens": "The bottleneck lens decodes every intermediate residual point through the output heads: where inside a "
            "step a node's value first becomes readable.",
    "routing": "Where attention from a node's defining position goes: its operand names (copy), their values "
               "(induction), by operand slot and at the frontier of nodes a step must compute.",
    "attribution": "Controlled experiments on equation templates: which heads carry each operand, grouped by role, and "
                   "how strongly each head's OV circuit amplifies each factor.",
    "mlp": "What the MLPs add beside attention, what breaks when they are ablated, and the Fourier structure of the last "
           "MLP over Z_p³ (how the modular sum is computed).",
    "codebook": "Which codes the discrete bottleneck writes in free runs, and how node values move from the state a step "
                "reads to the state it writes.",
    "correction": "Stepwise solving and halting on free runs, and injected errors: how often a wrong value is repaired "
                  "and the whole graph recovers.",
    "patching": "Cross-step activation patching from a clean into a corrupted run: which step and component carries a "
                "changed leaf's information to the end.",
    "fanout": "The name lookup under fan-out: attention on the defining position against the number of look-alikes, and "
              "where a free run first goes wrong.",
}
HEADLINES = 3  # summary numbers per analysis in the comparison table


def layout(**_):
    from app.state import model_names

    return html.Div(className="page", children=[
        dcc.Store(id=ID("init"), data=True),  # makes the page's callbacks fire when it opens
        html.H2("Probes and analyses", id=ID("top")),
        html.Div("Results the scripts in probes/ saved for a model (models/<name>/probes/*.json), as a report: the "
                 "comparison first, then one section per analysis.", className="hint"),
        html.Div(className="inline controls", children=[
            html.Span("model"), dcc.Dropdown(id=ID("model"), options=model_names(), clearable=False, className="pick model"),
        ]),
        html.Div(id=ID("results")),
    ])


@callback(Output(ID("model"), "value"), Input(ids.RUN, "data"), Input(ID("init"), "data"))
@safe(lambda msg: no_update)
def default_model(data, _init):
    return session_model(data)


def number(value) -> str:
    """A summary value as a person reads it: 3 significant digits, lists and mappings spelled out."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "n/a"}[value]
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(number(v) for v in value) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {number(v)}" for k, v in value.items()) or "none"
    return str(value)


def label(key: str) -> str:
    """A summary or parameter key as a label (``depth_cap`` -> ``depth cap``)."""
    return str(key).replace("_", " ")


def params_line(params: dict) -> str:
    """What the analysis was computed on, in one line (the model's name is the page's)."""
    parts = [f"{label(k)} {number(v)}" for k, v in (params or {}).items() if k != "model" and v is not None]
    return "Computed with " + ", ".join(parts) + "." if parts else ""


def anchor(name: str) -> str:
    return ID("section-" + "".join(c if c.isalnum() else "-" for c in name))


def result_section(name: str, data) -> html.Section:
    """One results file: its title, what it shows, headline numbers and figures (or why it cannot be shown)."""
    if isinstance(data, str):
        return html.Section([html.H3(name), error_box(data)], className="result", id=anchor(name))
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return html.Section([html.H3(name), html.P(f"not an analysis result (schema {SCHEMA}); skipped", className="hint")],
                            className="result", id=anchor(name))
    parts = [html.Div([html.H3(data.get("title", name)), html.A("↑ contents", href=f"#{ID('contents')}", className="up")],
                      className="section-head")]
    about = ABOUT.get(str(data.get("analysis")))
    if about:
        parts.append(html.P(about, className="about"))
    training = (data.get("model") or {}).get("training") or {}
    if training and not training.get("finished", True):
        parts.append(html.P(f"Model partially trained (step {training.get('steps')} of {training.get('total_steps')}, "
                            f"phase {training.get('phase')!r}): read the numbers as work in progress.", className="hint"))
    summary = data.get("summary") or {}
    if summary:
        parts.append(html.Table([html.Tr([html.Th("measure"), html.Th("value")]),
                                 *[html.Tr([html.Td(label(k)), html.Td(number(v))]) for k, v in summary.items()]],
                                className="summary"))
    line = params_line(data.get("params") or {})
    if line:
        parts.append(html.P(f"{line} File: {name}.", className="hint"))
    try:
        from workbench.analysis.results import figures_for
        from workbench.plots.analysis import to_plotly

        parts += [dcc.Graph(figure=to_plotly(f), config=GRAPH_CONFIG) for f in figures_for(data)]
    except Exception as exc:  # a result from a newer or older analysis: show what we can
        parts.append(error_box(f"cannot draw this result's figures: {failure_text(exc)}"))
    return html.Section(parts, className="result", id=anchor(name))


def is_comparison(data) -> bool:
    return isinstance(data, dict) and data.get("analysis") in COMPARISONS


def title_of(name: str, data) -> str:
    return (data.get("title") if isinstance(data, dict) else None) or name


def models_table(model: str, files: list) -> html.Section | None:
    """The comparison when no saved comparison exists: the headline numbers of every model with saved results,
    side by side, this model first (read from their JSON, nothing recomputed); None with fewer than two models."""
    from app.saved import probe_results
    from app.state import model_names

    saved = {m: (files if m == model else probe_results(m)) for m in model_names()}
    by_model = {m: {d["analysis"]: d for _, d in f if isinstance(d, dict) and d.get("schema") == SCHEMA}
                for m, f in saved.items()}
    by_model = {m: r for m, r in by_model.items() if r}
    if len(by_model) < 2:
        return None
    models = sorted(by_model, key=lambda m: (m != model, m))
    rows = []
    for analysis in sorted({a for r in by_model.values() for a in r}):
        keys = next(list((r[analysis].get("summary") or {}))[:HEADLINES] for r in by_model.values() if analysis in r)
        for key in keys:
            cells = [number(((by_model[m].get(analysis) or {}).get("summary") or {}).get(key, "")) for m in models]
            rows.append(html.Tr([html.Td(analysis), html.Td(label(key)), *[html.Td(c) for c in cells]]))
    return html.Section([
        html.Div([html.H3("Comparison across models"), html.A("↑ contents", href=f"#{ID('contents')}", className="up")],
                 className="section-head"),
        html.P("The headline numbers of each analysis, for every model with saved results (this model first).",
               className="about"),
        html.Table([html.Tr([html.Th("analysis"), html.Th("measure"), *[html.Th(m) for m in models]]), *rows],
                   className="summary"),
    ], className="result", id=anchor("comparison"))


def contents(entries: list[tuple[str, str]]) -> html.Nav:
    """The table of contents: one link per section."""
    return html.Nav([html.B("Contents"), html.Ol([html.Li(html.A(title, href=f"#{target}")) for title, target in entries])],
                    className="contents", id=ID("contents"))


@callback(Output(ID("results"), "children"), Input(ID("model"), "value"))
@safe(lambda msg: error_box(msg))
def show(model):
    return report(model) if model else ""


def report(model: str) -> list | html.Div:
    """The page for ``model``: contents, the comparison, one section per saved result (or how to compute them)."""
    from app.saved import probe_results

    files = probe_results(model)
    if not files:
        return missing(model)
    saved = [(n, d) for n, d in files if is_comparison(d)]
    rest = [(n, d) for n, d in files if not is_comparison(d)]
    table = None if saved else models_table(model, rest)
    first = [result_section(n, d) for n, d in saved] + ([table] if table is not None else [])
    entries = [(title_of(n, d), anchor(n)) for n, d in saved]
    entries += [("Comparison across models", anchor("comparison"))] if table is not None else []
    entries += [(title_of(n, d), anchor(n)) for n, d in rest]
    return [contents(entries), *first, *[result_section(n, d) for n, d in rest]]


def missing(model: str) -> html.Div:
    """No saved results: how to compute them, and a button that runs the quick ones in the background."""
    from app import jobs

    running = jobs.job(model)
    return html.Div([
        html.P(f"No probe results for model {model} yet.", className="empty"),
        html.P(["Run the analyses in probes/ to compute them, e.g. ",
                html.Code(f".venv/bin/python probes/reproduce_paper.py --models {model}"),
                f"; each script writes models/{model}/probes/<analysis>.json, which this page reads."]),
        html.Div(className="inline", children=[
            html.Button(f"Run the quick analyses ({', '.join(a for _, a, _ in jobs.QUICK)}; a few minutes on a CPU)",
                        id=ID("run-quick"), className="primary"),
            html.Div(progress(running) if running else "", id=ID("progress")),
        ]),
        dcc.Store(id=ID("offer"), data=jobs.offer(model)),
        dcc.Interval(id=ID("poll"), interval=1500, disabled=not (running and not running.finished)),
    ], className="message note")


def progress(job) -> list:
    """The progress indicator of a background job: a bar and a line."""
    if job.error:
        return [error_box(job.error)]
    line = (f"{job.done}/{job.total} done" + (f", running {job.current}…" if job.current else "")
            + (" — finished; the results are below." if job.finished else ""))
    return [html.Progress(value=str(job.done), max=str(job.total), className="job"), html.Span(line, className="hint")]


@callback(Output(ID("poll"), "disabled"), Output(ID("progress"), "children"), Input(ID("run-quick"), "n_clicks"),
          State(ID("offer"), "data"), prevent_initial_call=True)
@safe(lambda msg: (True, error_box(msg)))
def run_quick(clicks, token):
    """Start the quick analyses of the offered model; the interval then polls their progress."""
    from app import jobs

    if not clicks:
        return no_update, no_update
    return False, progress(jobs.start(token))


@callback(Output(ID("progress"), "children", allow_duplicate=True), Output(ID("poll"), "disabled", allow_duplicate=True),
          Output(ID("results"), "children", allow_duplicate=True), Input(ID("poll"), "n_intervals"),
          State(ID("model"), "value"), prevent_initial_call=True)
@safe(lambda msg: (error_box(msg), True, no_update))
def poll(_n, model):
    """Progress while the job runs; when it ends, the report of the results it wrote."""
    from app import jobs

    job = jobs.job(model) if isinstance(model, str) else None
    if job is None:
        return no_update, True, no_update
    if not job.finished:
        return progress(job), False, no_update
    return progress(job), True, (report(model) if not job.error else no_update)
