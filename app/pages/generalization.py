"""Generalization: accuracy against graph size N for every model in models/, beside the paper's curves,
and how each model got there: its training curves (loss, accuracy and evaluations against the step)."""

from __future__ import annotations

import dash
from dash import Input, Output, callback, dcc, html, no_update

from app import ids
from app.common import GRAPH_CONFIG, error_box, note, safe, session_model

dash.register_page(__name__, path="/generalization", name="Generalization", order=5, title="Generalization · workbench")
ID = ids.scoped(__name__)
PAPER = ("Discrete LSS + error correction", "Discrete LSS", "Continuous LSS", "Chain-of-Thought", "E2E Recurrent",
         "E2E Feedforward")


def layout(**_):
    from app.state import model_names

    return html.Div(className="page", children=[
        dcc.Store(id=ID("init"), data=True),  # makes the page's callbacks fire when it opens
        html.H2("Generalization"),
        html.Div("% of graphs fully solved against their size N, from each model's eval.json (workbench eval), or "
                 "its last evaluation during training when it has none. Trained at N ≤ 32 (shaded).", className="hint"),
        html.Div(className="inline controls", children=[
            html.Span("paper curves"),
            dcc.Checklist(id=ID("paper"), options=list(PAPER), value=list(PAPER[:3]), inline=True),
        ]),
        dcc.Graph(id=ID("figure"), config=GRAPH_CONFIG),
        html.Div(id=ID("table")),
        html.H3("Training curves"),
        html.Div("Loss, training accuracy (teacher-forced: the frontier slots of one step; unrolled: every node after "
                 "the last step) and the evaluations during training, against the "
                 "step, from the model's run/log.jsonl; dotted lines mark the curriculum's phases, dashed curves are "
                 "failed branches (run/failed-*.jsonl).", className="hint"),
        html.Div(className="inline controls", children=[
            html.Span("model"), dcc.Dropdown(id=ID("model"), options=model_names(), clearable=False, className="pick model"),
        ]),
        html.Div(id=ID("training-message")),
        dcc.Graph(id=ID("training"), config=GRAPH_CONFIG),
        html.H3("Robustness: every axis a graph can grow along"),
        html.Div("% of graphs fully solved per graph family and N, from the model's robustness.json "
                 "(workbench robustness): each family is the paper's law with one axis pushed: depth, fan-out (two "
                 "variables each read by 30-60 equations), fan-out with depth (v_i = v_(i-1) + w), distance from "
                 "definition to use, number of leaves.", className="hint"),
        html.Div(id=ID("robustness-message")),
        dcc.Graph(id=ID("robustness"), config=GRAPH_CONFIG),
    ])


@callback(Output(ID("model"), "value"), Input(ids.RUN, "data"), Input(ID("init"), "data"))
@safe(lambda msg: no_update)
def default_model(data, _init):
    return session_model(data)


@callback(Output(ID("training"), "figure"), Output(ID("training-message"), "children"), Input(ID("model"), "value"))
@safe(lambda msg: ({}, error_box(msg)))
def show_training(model):
    from app.saved import training_logs
    from workbench.plots.training import training_figure

    if not model:
        return {}, None
    logs = training_logs(model)
    if "main" not in logs:
        return {}, note(f"Model {model} has no training log (models/{model}/run/log.jsonl): it was not trained here.")
    return training_figure(logs, title=f"Training curves: {model}"), None


@callback(Output(ID("figure"), "figure"), Output(ID("table"), "children"), Input(ID("paper"), "value"))
@safe(lambda msg: ({}, error_box(msg)))
def show(paper):
    from app.saved import model_evaluations
    from workbench.plots.generalization import accuracy_figure

    curves = model_evaluations()
    fig = accuracy_figure(curves, paper=tuple(p for p in PAPER if p in (paper or [])))
    if not curves:
        return fig, html.P("No model has an evaluation yet: run `.venv/bin/workbench eval --model <name>`.", className="note")
    sizes = sorted({r["n_nodes"] for rows in curves.values() for r in rows})
    head = html.Tr([html.Th("model")] + [html.Th(f"N={n}") for n in sizes])
    rows = []
    for name, results in curves.items():
        by_n = {r["n_nodes"]: r for r in results}
        rows.append(html.Tr([html.Td(name)] + [html.Td(f"{100 * by_n[n]['graph_acc']:.1f}% ({100 * by_n[n]['node_acc']:.0f}% nodes)"
                                                       if n in by_n else "") for n in sizes]))
    return fig, html.Table([head, *rows], className="summary")


@callback(Output(ID("robustness"), "figure"), Output(ID("robustness-message"), "children"), Input(ID("model"), "value"))
@safe(lambda msg: ({}, error_box(msg)))
def show_robustness(model):
    from app.saved import model_robustness
    from workbench.plots.generalization import robustness_figure

    if not model:
        return {}, None
    families = model_robustness(model)
    if not families:
        return {}, note(f"Model {model} has no robustness record: run `.venv/bin/workbench robustness --model {model}`.")
    return robustness_figure(families, title=f"Robustness: {model}"), None
