"""Attention routing: which positions every head reads at the selected step, against the true parents."""

from __future__ import annotations

import dash
from dash import Input, Output, State, callback, ctx, dcc, html, no_update

from app import ids
from app.common import GRAPH_CONFIG, error_box, safe

dash.register_page(__name__, path="/attention", name="Attention routing", order=1, title="Attention · workbench")
ID = ids.scoped(__name__)


def layout(**_):
    return html.Div(className="page", children=[
        dcc.Store(id=ID("init"), data=True),  # makes the page's callbacks fire when it opens
        html.H2("Attention routing"),
        html.Div("Queries are each node's defining position (where its value is written). Marks: × the node's own "
                 "operand tokens (a copy head reads these), ○ its parents' defining positions (a lookup head reads "
                 "their values there).", className="hint"),
        html.Div(id=ID("message"), className="message-slot"),
        html.Div(className="columns", children=[
            html.Div(dcc.Graph(id=ID("scores"), config=GRAPH_CONFIG), className="panel wide"),
        ]),
        html.Div(className="columns", children=[
            html.Div(dcc.Graph(id=ID("grid"), config=GRAPH_CONFIG), className="panel wide"),
        ]),
        html.Div(className="inline controls", children=[
            html.Span("layer"), dcc.Dropdown(id=ID("layer"), options=[], clearable=False, className="pick"),
            html.Span("head"), dcc.Dropdown(id=ID("head"), options=[], clearable=False, className="pick"),
            html.Span("(or click a head above)", className="hint"),
        ]),
        dcc.Graph(id=ID("pattern"), config=GRAPH_CONFIG),
        html.H3("Click a node to see what it attends to"),
        html.Div(className="columns", children=[
            html.Div(dcc.Graph(id=ID("dag"), config=GRAPH_CONFIG), className="panel half"),
            html.Div(dcc.Graph(id=ID("node")), className="panel half"),
        ]),
        dcc.Graph(id=ID("roles"), config=GRAPH_CONFIG),
        html.Div(id=ID("role-table"), className="roles"),
    ])


def _run(data):
    from workbench.app_state import RunKey, get_run

    key = RunKey.from_json(data)
    return key, get_run(key)


@callback(Output(ID("layer"), "options"), Output(ID("head"), "options"), Output(ID("layer"), "value"),
          Output(ID("head"), "value"), Output(ID("roles"), "figure"), Output(ID("role-table"), "children"),
          Input(ids.RUN, "data"), Input(ID("init"), "data"), State(ID("layer"), "value"), State(ID("head"), "value"))
@safe(lambda msg: (no_update,) * 5 + (error_box(msg),))
def on_run(data, _init, layer, head):
    """Per problem: the layer and head choices, and every head's role across steps."""
    from workbench.plots.attention import roles_figure

    _, run = _run(data)
    roles = run.head_roles()
    groups = {}
    for r in roles:
        groups.setdefault(r["role"], []).append(f"L{r['layer']}H{r['head']} ({100 * r['held']:.0f}% of steps)")
    table = [html.Div([html.B(f"{role}: "), ", ".join(heads)]) for role, heads in sorted(groups.items())]
    table.append(html.Div("A head is 'copy' at a step when ≥ 40% of a node's attention lands on its own operand tokens, "
                          "'lookup' when ≥ 40% lands on its parents' defining positions.", className="hint"))
    layers = [{"label": f"L{l}", "value": l} for l in range(run.n_layers)]
    heads = [{"label": f"H{h}", "value": h} for h in range(run.n_heads)]
    layer = layer if isinstance(layer, int) and 0 <= layer < run.n_layers else 0
    head = head if isinstance(head, int) and 0 <= head < run.n_heads else 0
    return layers, heads, layer, head, roles_figure(run), table


@callback(Output(ID("scores"), "figure"), Output(ID("grid"), "figure"), Output(ID("message"), "children"),
          Input(ids.STEP, "value"), Input(ids.RUN, "data"), Input(ID("init"), "data"))
@safe(lambda msg: (no_update, no_update, error_box(msg)))
def show_step(state, data, _init):
    """Per state: parent-attention scores and every head's pattern."""
    from workbench.app_state import pattern_state, step_patterns
    from workbench.plots.attention import heads_grid_figure, scores_figure

    key, run = _run(data)
    t = pattern_state(run, state)
    copy, lookup = run.head_scores(min(t, run.n_steps - 1) if run.n_steps else 0)
    scores = scores_figure(copy, lookup, title=f"Parent-attention scores at step {t} (mean over the nodes that have parents)")
    grid = heads_grid_figure(step_patterns(key, t), state=t)
    note = "" if t == run.clamp(state) else f"This model's patterns exist up to state {t}; showing that."
    return scores, grid, note


@callback(Output(ID("dag"), "figure"), Input(ids.STEP, "value"), Input(ids.RUN, "data"), Input(ids.NODE, "data"),
          Input(ID("init"), "data"))
@safe(lambda msg: no_update)
def show_graph(state, data, node, _init):
    """The graph to pick a node from, coloured at the selected state, the selected node's inputs highlighted."""
    from workbench.plots.run import dag_figure

    _, run = _run(data)
    sel = node if isinstance(node, int) and 0 <= node < run.n_nodes else None
    return dag_figure(run, run.clamp(state), selected=sel, height=420)


@callback(Output(ID("layer"), "value", allow_duplicate=True), Output(ID("head"), "value", allow_duplicate=True),
          Input(ID("scores"), "clickData"), Input(ID("grid"), "clickData"), State(ids.RUN, "data"),
          prevent_initial_call=True)
@safe(lambda msg: (no_update, no_update))
def pick_head(score_click, grid_click, data):
    """A click on a score cell (``H3`` at ``L1``) or on a thumbnail (trace k = layer * heads + head) selects that head."""
    if ctx.triggered_id == ID("scores") and score_click:
        p = score_click["points"][0]
        return int(str(p["y"]).lstrip("L")), int(str(p["x"]).lstrip("H"))
    if ctx.triggered_id == ID("grid") and grid_click:
        _, run = _run(data)
        k = int(grid_click["points"][0]["curveNumber"])
        return divmod(k, run.n_heads)
    return no_update, no_update


@callback(Output(ids.NODE, "data", allow_duplicate=True), Input(ID("dag"), "clickData"), Input(ID("pattern"), "clickData"),
          State(ids.RUN, "data"), prevent_initial_call=True)
@safe(lambda msg: no_update)
def pick_node(dag_click, pattern_click, data):
    """A node clicked in the graph, or a row (its name) clicked in the pattern heatmap."""
    if ctx.triggered_id == ID("dag"):
        value = ((dag_click or {}).get("points") or [{}])[0].get("customdata")
        return value if isinstance(value, int) else no_update
    name = ((pattern_click or {}).get("points") or [{}])[0].get("y")
    _, run = _run(data)
    return run.names.index(name) if name in run.names else no_update


@callback(Output(ID("pattern"), "figure"), Input(ids.STEP, "value"), Input(ids.RUN, "data"),
          Input(ID("layer"), "value"), Input(ID("head"), "value"))
@safe(lambda msg: no_update)
def show_head(state, data, layer, head):
    """The selected head's full pattern (nodes x positions) at the selected step."""
    from workbench.app_state import pattern_state, step_patterns
    from workbench.plots.attention import pattern_figure

    key, run = _run(data)
    t = pattern_state(run, state)
    layer = layer if isinstance(layer, int) and 0 <= layer < run.n_layers else 0
    head = head if isinstance(head, int) and 0 <= head < run.n_heads else 0
    return pattern_figure(step_patterns(key, t)[layer, head], run, state=t, layer=layer, head=head)


@callback(Output(ID("node"), "figure"), Input(ids.STEP, "value"), Input(ids.RUN, "data"), Input(ids.NODE, "data"),
          Input(ID("init"), "data"))
@safe(lambda msg: no_update)
def show_node(state, data, node, _init):
    """What the selected node's defining position reads, in every head."""
    from workbench.app_state import pattern_state, step_patterns
    from workbench.plots.attention import node_attention_figure
    from workbench.plots.common import empty_figure

    key, run = _run(data)
    if not isinstance(node, int) or not 0 <= node < run.n_nodes:
        return empty_figure("click a node in the graph (or a row of the pattern above)", height=420)
    t = pattern_state(run, state)
    return node_attention_figure(step_patterns(key, t)[:, :, node], run, node=node, state=t)
