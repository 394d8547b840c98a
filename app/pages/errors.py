"""Error correction: the run's value events on a timeline; inject an error and watch the recovery, on two models."""

from __future__ import annotations

import dash
from dash import Input, Output, State, callback, dcc, html, no_update
from dash.exceptions import PreventUpdate

from app import ids
from app.common import GRAPH_CONFIG, as_int, blank, error_box, safe

dash.register_page(__name__, path="/errors", name="Error correction", order=3, title="Error correction · workbench")
ID = ids.scoped(__name__)
NONE = "(none)"


def layout(**_):
    from app.state import model_names
    from workbench.plots.common import empty_figure

    first = empty_figure("choose a state and a node, then press Inject", height=300)
    return html.Div(className="page", children=[
        dcc.Store(id=ID("init"), data=True),  # makes the page's callbacks fire when it opens
        html.H2("Error correction"),
        html.Div(id=ID("message"), className="message-slot"),
        dcc.Graph(id=ID("events"), config=GRAPH_CONFIG),
        html.H3("Inject an error"),
        html.Div("Overwrite one node's value in a state (step t reads state t), let the model run on until its state "
                 "stops changing, and see whether it repairs the value. A repair needs a value to corrupt: inject into "
                 "a state where the clean run has already written the node. The same injection runs on a second "
                 "model side by side (e.g. one trained without error correction).", className="hint"),
        html.Div(className="inline controls", children=[
            html.Span("into state"), dcc.Input(id=ID("state"), type="number", step=1, value=1, className="num"),
            html.Span("node"), dcc.Dropdown(id=ID("node"), options=[], clearable=False, className="pick wide"),
            html.Span("value"), dcc.Input(id=ID("value"), type="number", step=1, placeholder="random wrong",
                                          className="num wide"),
            html.Span("compare with"), dcc.Dropdown(id=ID("other"), options=[NONE, *model_names()], value=NONE,
                                                    clearable=False, className="pick model"),
            html.Button("Inject", id=ID("inject"), className="primary"),
        ]),
        html.Div(id=ID("inject-message"), className="message-slot"),
        html.Div(className="columns", children=[
            html.Div([html.Div(id=ID("report-a"), className="report"), dcc.Graph(id=ID("fig-a"), figure=first, config=GRAPH_CONFIG)],
                     className="panel half"),
            html.Div([html.Div(id=ID("report-b"), className="report"), dcc.Graph(id=ID("fig-b"), figure=first, config=GRAPH_CONFIG)],
                     className="panel half"),
        ]),
    ])


@callback(Output(ID("events"), "figure"), Output(ID("message"), "children"),
          Input(ids.STEP, "value"), Input(ids.RUN, "data"), Input(ID("init"), "data"))
@safe(lambda msg: (blank(msg, 300), error_box(msg)))
def show_events(state, data, _init):
    from app.state import RunKey, get_run
    from workbench.plots.corruption import events_figure

    run = get_run(RunKey.from_json(data))
    return events_figure(run, state=run.clamp(state)), ""


@callback(Output(ID("node"), "options"), Output(ID("node"), "value"),
          Input(ids.RUN, "data"), Input(ids.NODE, "data"), Input(ID("init"), "data"))
@safe(lambda msg: (no_update, no_update))
def node_choices(data, selected, _init):
    """The problem's nodes (the selected node first chosen, else the first of depth 1: computed early, so an
    injection at a later state overwrites a value the model already wrote)."""
    from app.state import RunKey, get_run

    run = get_run(RunKey.from_json(data))
    options = [{"label": f"{run.names[i]}  ({run.equations[i]})", "value": i} for i in range(run.n_nodes)]
    first = [i for i in range(run.n_nodes) if run.depth[i] == 1] or [0]
    pick = selected if isinstance(selected, int) and 0 <= selected < run.n_nodes else first[0]
    return options, pick


@callback(Output(ID("state"), "value"), Input(ids.STEP, "value"), Input(ID("init"), "data"))
@safe(lambda msg: no_update)
def follow_slider(state, _init):
    return state if isinstance(state, int) else no_update


def _side(key, state: int, node: int, value, seed: int = 0):
    """The report lines and figure of one model's injection."""
    from app.injection import injection
    from workbench.plots.corruption import injection_figure

    view = injection(key, state, node, value, seed)
    return [html.P(line) for line in view.report()], injection_figure(view)


@callback(Output(ID("report-a"), "children"), Output(ID("fig-a"), "figure"), Output(ID("report-b"), "children"),
          Output(ID("fig-b"), "figure"), Output(ID("inject-message"), "children"),
          Input(ID("inject"), "n_clicks"), State(ids.RUN, "data"), State(ID("state"), "value"),
          State(ID("node"), "value"), State(ID("value"), "value"), State(ID("other"), "value"),
          prevent_initial_call=True)
@safe(lambda msg: (None, blank("no injection: see the message above", 300), None, blank("no injection", 300), error_box(msg)))
def inject(clicks, data, state, node, value, other):
    """Inject into this run, and the same into the other model's run of the same problem."""
    from app.state import RunKey, make_key
    from workbench.errors import WorkbenchError
    from workbench.plots.common import empty_figure

    if not clicks:  # the page just opened
        raise PreventUpdate

    key = RunKey.from_json(data)
    state, value = as_int(state, "the state"), as_int(value, "the value")
    if state is None or not isinstance(node, int):
        raise WorkbenchError("choose a state and a node to overwrite")
    report_a, fig_a = _side(key, state, node, value)
    if other in (None, NONE):
        return report_a, fig_a, html.P("Pick a second model to compare.", className="hint"), empty_figure("no second model"), ""
    try:
        report_b, fig_b = _side(make_key(other, key.text, key.seed), state, node, value)
    except WorkbenchError as exc:  # the problem may not fit the other model, or the state lies past its run
        report_b, fig_b = error_box(f"{other}: {exc}"), empty_figure(f"{other}: no injection")
    return report_a, fig_a, report_b, fig_b, ""
