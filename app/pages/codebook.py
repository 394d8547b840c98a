"""Codebook: which codes the discrete bottleneck writes, per factor and state; entropy; what changes between states."""

from __future__ import annotations

import dash
from dash import Input, Output, callback, dcc, html, no_update

from app import ids
from app.common import GRAPH_CONFIG, blank, error_box, safe

dash.register_page(__name__, path="/codebook", name="Codebook", order=2, title="Codebook · workbench")
ID = ids.scoped(__name__)

FACTOR_OPTIONS = [{"label": name, "value": f} for f, name in enumerate(("syntax", "variable", "operation", "value"))]


def layout(**_):
    return html.Div(className="page", children=[
        dcc.Store(id=ID("init"), data=True),  # makes the page's callbacks fire when it opens
        html.H2("Codebook"),
        html.Div("Every position of the latent state is four codes (syntax, variable, operation, value), each the "
                 "argmax of its factor's head: the discrete bottleneck between steps.", className="hint"),
        html.Div(id=ID("message"), className="message-slot"),
        html.Div(className="inline controls", children=[
            html.Span("factor"),
            dcc.Dropdown(id=ID("factor"), options=FACTOR_OPTIONS, value=3, clearable=False, searchable=False, className="pick"),
        ]),
        html.Div(className="columns", children=[
            html.Div(dcc.Graph(id=ID("usage"), config=GRAPH_CONFIG), className="panel half"),
            html.Div(dcc.Graph(id=ID("transitions"), config=GRAPH_CONFIG), className="panel half"),
        ]),
        html.Div(className="columns", children=[
            html.Div(dcc.Graph(id=ID("entropy"), config=GRAPH_CONFIG), className="panel half"),
            html.Div(dcc.Graph(id=ID("changes"), config=GRAPH_CONFIG), className="panel half"),
        ]),
    ])


@callback(Output(ID("usage"), "figure"), Output(ID("transitions"), "figure"), Output(ID("entropy"), "figure"),
          Output(ID("changes"), "figure"), Output(ID("message"), "children"),
          Input(ids.STEP, "value"), Input(ids.RUN, "data"), Input(ID("factor"), "value"))
@safe(lambda msg: (blank(), blank(), blank(), blank(), error_box(msg)))
def show(state, data, factor):
    from app.state import RunKey, get_run
    from workbench.plots.codebook import changes_figure, entropy_figure, transition_figure, usage_figure

    run = get_run(RunKey.from_json(data))
    f = factor if factor in (0, 1, 2, 3) else 3
    t = run.clamp(state)
    return (usage_figure(run, factor=f, state=t), transition_figure(run, factor=f, state=t),
            entropy_figure(run, state=t), changes_figure(run, state=t), "")
