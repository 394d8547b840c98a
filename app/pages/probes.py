"""Probes: the probe and lens curves (step x layer) and the other analyses' results, per model, from saved JSON."""

from __future__ import annotations

import dash
from dash import Input, Output, callback, dcc, html, no_update

from app import ids
from app.common import GRAPH_CONFIG, error_box, failure_text, safe, session_model

dash.register_page(__name__, path="/probes", name="Probes", order=4, title="Probes · workbench")
ID = ids.scoped(__name__)
SCHEMA = "workbench-analysis/1"


def layout(**_):
    from workbench.app_state import model_names

    return html.Div(className="page", children=[
        dcc.Store(id=ID("init"), data=True),  # makes the page's callbacks fire when it opens
        html.H2("Probes and analyses"),
        html.Div("Results the scripts in probes/ saved for a model (models/<name>/probes/*.json): linear probes and "
                 "the bottleneck lens (step × layer), routing, codebook, error correction and more.", className="hint"),
        html.Div(className="inline controls", children=[
            html.Span("model"), dcc.Dropdown(id=ID("model"), options=model_names(), clearable=False, className="pick"),
        ]),
        html.Div(id=ID("results")),
    ])


@callback(Output(ID("model"), "value"), Input(ids.RUN, "data"), Input(ID("init"), "data"))
@safe(lambda msg: no_update)
def default_model(data, _init):
    return session_model(data)


def result_section(name: str, data) -> html.Div:
    """One results file: its title, headline numbers and figures (or why it cannot be shown)."""
    if isinstance(data, str):
        return html.Div([html.H3(name), error_box(data)], className="result")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return html.Div([html.H3(name), html.P(f"not an analysis result (schema {SCHEMA}); skipped", className="hint")],
                        className="result")
    parts = [html.H3(f"{data.get('title', name)}  ·  {name}")]
    training = (data.get("model") or {}).get("training") or {}
    if training and not training.get("finished", True):
        parts.append(html.P(f"Model partially trained (step {training.get('steps')} of {training.get('total_steps')}, "
                            f"phase {training.get('phase')!r}): read the numbers as work in progress.", className="hint"))
    summary = data.get("summary") or {}
    if summary:
        parts.append(html.Table([html.Tr([html.Td(str(k)), html.Td(str(v))]) for k, v in summary.items()], className="summary"))
    try:
        from workbench.plots.analysis import figures_for, to_plotly

        parts += [dcc.Graph(figure=to_plotly(f), config=GRAPH_CONFIG) for f in figures_for(data)]
    except Exception as exc:  # a result from a newer or older analysis: show what we can
        parts.append(error_box(f"cannot draw this result's figures: {failure_text(exc)}"))
    return html.Div(parts, className="result")


@callback(Output(ID("results"), "children"), Input(ID("model"), "value"))
@safe(lambda msg: error_box(msg))
def show(model):
    from workbench.app_state import probe_results

    if not model:
        return ""
    files = probe_results(model)
    if not files:
        return html.Div([
            html.P(f"No probe results for model {model} yet.", className="empty"),
            html.P(["Run the analyses in probes/ to compute them, e.g. ",
                    html.Code(f".venv/bin/python probes/reproduce_paper.py --models {model}"),
                    f"; each script writes models/{model}/probes/<analysis>.json, which this page reads."]),
        ], className="message note")
    return [result_section(name, data) for name, data in files]
