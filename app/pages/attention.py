"""Attention routing: which positions every head reads at the selected step, against the true parents."""

from __future__ import annotations

import dash
from dash import Input, Output, State, callback, ctx, dcc, html, no_update

from app import ids
from app.common import GRAPH_CONFIG, blank, error_box, note, safe

dash.register_page(__name__, path="/attention", name="Attention routing", order=1, title="Attention · workbench")
ID = ids.scoped(__name__)


def layout(**_):
    return html.Div(className="page", children=[
        dcc.Store(id=ID("init"), data=True),  # makes the page's callbacks fire when it opens
        html.H2("Attention routing"),
        html.Div("Three routing measures per head and step, from the library's one definition "
                 "(workbench.analysis.routing): from each operand token onto its variable's defining position "
                 "(lookup), and from each result position onto its own operand tokens (gather) and onto its parents' "
                 "defining positions (induction). In the patterns, queries are each node's defining position; × marks "
                 "its own operand tokens, ○ its parents' defining positions.", className="hint"),
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
        html.Div("The clicked node's circuit at this step: each operand token looks its variable up at its "
                 "defining position (lookup), the result reads the operand tokens (gather) and the definitions "
                 "directly (induction); each arc names its strongest head and that head's weight.", className="hint"),
        dcc.Graph(id=ID("chain"), config=GRAPH_CONFIG),
        dcc.Graph(id=ID("roles"), config=GRAPH_CONFIG),
        html.Div(id=ID("role-table"), className="roles"),
    ])


def _run(data):
    from app.state import RunKey, get_run

    key = RunKey.from_json(data)
    return key, get_run(key)


@callback(Output(ID("layer"), "options"), Output(ID("head"), "options"), Output(ID("layer"), "value"),
          Output(ID("head"), "value"), Output(ID("roles"), "figure"), Output(ID("role-table"), "children"),
          Input(ids.RUN, "data"), Input(ID("init"), "data"), State(ID("layer"), "value"), State(ID("head"), "value"))
@safe(lambda msg: (no_update,) * 4 + (blank(msg), error_box(msg)))
def on_run(data, _init, layer, head):
    """Per problem: the layer and head choices, and every head's role across steps."""
    from workbench.plots.attention import roles_figure

    from workbench.analysis.routing import ROLE_THRESHOLD
    from app.saved import saved_head_effects

    key, run = _run(data)
    effects = saved_head_effects(key.model)  # (layer, head) -> (verdict, drop) from probes/routing.json, if run
    groups = {}
    for r in run.head_roles():
        if r["role"] == "other":
            continue
        slot = f", v{r['slot']}" if r["slot"] is not None else ""
        held = f"{100 * r['stability']:.0f}% of steps" if r["stability"] is not None else "no steps"
        causal = effects.get((r["layer"], r["head"]))
        tested = f"; ablation: {causal[0]}, accuracy −{causal[1]:.2f}" if causal else ""
        groups.setdefault(r["role"], []).append(f"L{r['layer']}H{r['head']} ({held}{slot}{tested})")
    table = [html.Div([html.B(f"{role}: "), "; ".join(heads)]) for role, heads in sorted(groups.items())]
    if not groups:
        table.append(html.Div("No head reaches the role threshold on this problem."))
    table.append(html.Div(f"A head's role is the measure it serves most, if its mean mass reaches {ROLE_THRESHOLD:.0%}. "
                          "The ablation verdict (zero or mean ablation of the head alone and of its role's group, at every "
                          "step of 128 random graphs) comes from `python probes/attention_routing.py --model "
                          f"{key.model}`" + ("" if effects else ": not run for this model yet") + ".", className="hint"))
    layers = [{"label": f"L{l}", "value": l} for l in range(run.n_layers)]
    heads = [{"label": f"H{h}", "value": h} for h in range(run.n_heads)]
    layer = layer if isinstance(layer, int) and 0 <= layer < run.n_layers else 0
    head = head if isinstance(head, int) and 0 <= head < run.n_heads else 0
    return layers, heads, layer, head, roles_figure(run), table


@callback(Output(ID("scores"), "figure"), Output(ID("grid"), "figure"), Output(ID("message"), "children"),
          Input(ids.STEP, "value"), Input(ids.RUN, "data"), Input(ID("init"), "data"))
@safe(lambda msg: (blank(), blank(), error_box(msg)))
def show_step(state, data, _init):
    """Per state: parent-attention scores and every head's pattern."""
    from app.state import pattern_state, step_patterns
    from workbench.plots.attention import at_step, heads_grid_figure, scores_figure

    key, run = _run(data)
    t = pattern_state(run, state)  # the one step whose numbers and titles this page shows
    scores = scores_figure(run.head_scores(t), title=f"Routing {at_step(t)}: attention mass per head (blank: no such query)")
    grid = heads_grid_figure(step_patterns(key, t), state=t)
    return scores, grid, step_note(run, state, t)


def step_note(run, state, step: int):
    """Why the page shows another step than the slider's state (a one-pass model, a run that hit the cap)."""
    if step == run.clamp(state):
        return ""
    why = ("a one-pass model runs step 0 only" if not run.looped else
           f"no step read state {run.clamp(state)}: the run stopped at the step cap")
    return note(f"Showing step {step}, the last step run ({why}).")


@callback(Output(ID("dag"), "figure"), Input(ids.STEP, "value"), Input(ids.RUN, "data"), Input(ids.NODE, "data"),
          Input(ID("init"), "data"))
@safe(lambda msg: blank(msg))
def show_graph(state, data, node, _init):
    """The graph to pick a node from, coloured at the selected state, the selected node's inputs highlighted."""
    from workbench.plots.run import dag_figure, dag_height

    _, run = _run(data)
    sel = node if isinstance(node, int) and 0 <= node < run.n_nodes else None
    return dag_figure(run, run.clamp(state), selected=sel, height=max(420, dag_height(run)), width_px=560)


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
@safe(lambda msg: blank(msg))
def show_head(state, data, layer, head):
    """The selected head's full pattern (nodes x positions) at the selected step."""
    from app.state import pattern_state, step_patterns
    from workbench.plots.attention import pattern_figure

    key, run = _run(data)
    t = pattern_state(run, state)
    layer = layer if isinstance(layer, int) and 0 <= layer < run.n_layers else 0
    head = head if isinstance(head, int) and 0 <= head < run.n_heads else 0
    return pattern_figure(step_patterns(key, t)[layer, head], run, state=t, layer=layer, head=head)


@callback(Output(ID("node"), "figure"), Output(ID("chain"), "figure"), Input(ids.STEP, "value"), Input(ids.RUN, "data"),
          Input(ids.NODE, "data"), Input(ID("init"), "data"))
@safe(lambda msg: (blank(msg), blank(msg)))
def show_node(state, data, node, _init):
    """What the selected node's defining position reads in every head, and its circuit chain (operand token
    <- definition, result <- operand token, result <- definition) drawn on its tokens, from one step's patterns."""
    from app.state import pattern_state, step_operand_lookups, step_patterns
    from workbench.plots.attention import circuit_chain_figure, node_attention_figure
    from workbench.plots.common import empty_figure

    key, run = _run(data)
    if not isinstance(node, int) or not 0 <= node < run.n_nodes:
        return (empty_figure("click a node in the graph (or a row of the pattern above)", height=420),
                empty_figure("click a node in the graph to draw its circuit", height=340))
    t = pattern_state(run, state)
    rows = step_patterns(key, t)[:, :, node]
    reads = node_attention_figure(rows, run, node=node, state=t)
    if not run.parents[node]:
        return reads, empty_figure(f"{run.names[node]} is a constant: it reads no variable", height=340)
    return reads, circuit_chain_figure(run, node=node, state=t, result_rows=rows,
                                       lookups=step_operand_lookups(key, t)[:, :, node])
