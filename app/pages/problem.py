"""Problem: generate a graph or paste your own, pick the model, and watch its nodes fill in state by state."""

from __future__ import annotations

from html import escape

import dash
import numpy as np
from dash import ClientsideFunction, Input, Output, Patch, State, callback, clientside_callback, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from app import ids
from app.common import GRAPH_CONFIG, as_int, blank, error_box, note, safe

dash.register_page(__name__, path="/", name="Problem", order=0, title="Problem · workbench")
ID = ids.scoped(__name__)

PLACEHOLDER = "price = 17\ntax = 9\ntotal = price + tax\nshipping = total   # any names, any order, # comments"


def layout(**_):
    from app.state import MAX_NODES, MAX_TEXT_CHARS, MIN_NODES, model_names
    from workbench.task.families import PRESETS

    return html.Div(className="page", children=[
        dcc.Store(id=ID("init"), data=True),  # makes the page's callbacks fire when it opens
        html.Div(className="columns", children=[
            html.Div(className="panel form", children=[
                html.H2("Problem"),
                html.Label("Model", htmlFor=ID("model")),
                dcc.Dropdown(id=ID("model"), options=model_names(), clearable=False, searchable=False),
                html.Div(id=ID("arithmetic"), className="arithmetic"),
                html.Label("Generate a random graph (the paper's law)"),
                html.Div(className="inline", children=[
                    # no min/max on the inputs: the browser would blank an out-of-range number, the app explains it
                    html.Span(f"nodes N ({MIN_NODES}–{MAX_NODES})"),
                    dcc.Input(id=ID("size"), type="number", step=1, value=16, className="num"),
                    html.Span("seed"), dcc.Input(id=ID("seed"), type="number", step=1, value=0, className="num"),
                    html.Button("Generate", id=ID("generate")),
                ]),
                html.Label("…or run a preset that stresses one axis (fan-out: one name read by many equations)",
                           htmlFor=ID("preset")),
                dcc.Dropdown(id=ID("preset"), options=[{"label": k, "value": k} for k in PRESETS], placeholder="presets",
                             clearable=True, searchable=False, optionHeight=48, className="preset"),
                html.Label(f"…or type or paste your own (one equation per line; at most {MAX_NODES} variables and "
                           f"{MAX_TEXT_CHARS:,} characters)", htmlFor=ID("text")),
                dcc.Textarea(id=ID("text"), placeholder=PLACEHOLDER, className="problem-text", spellCheck=False),
                html.Button("Run this problem", id=ID("submit"), className="primary"),
                html.Div(id=ID("message"), className="message-slot"),
            ]),
            html.Div(className="panel wide", children=[
                html.Div(id=ID("node"), className="node-detail"),
                dcc.Graph(id=ID("dag"), config=GRAPH_CONFIG),
                dcc.Store(id=ID("drawn")),  # the run whose graph the figure holds, so a state change can patch it
                dcc.Store(id=ID("step")),  # the state for the server to draw (Play draws from the frames instead)
                dcc.Store(id=ID("frames")),  # every state's colours, title and tokens of the drawn run, for Play
                html.Div("Nodes are coloured by the value the model holds in this state: green right, red wrong, "
                         "grey not written yet. Click a node to follow it here and on the Attention page: it is ringed "
                         "in red, its inputs in orange, the nodes that read it in purple. On large graphs labels thin "
                         "out; hover shows every node.", className="hint"),
            ]),
        ]),
        html.H3("The latent state, token by token"),
        html.Div("One line per equation, in the order the model reads them; a node's value stands at its defining "
                 "position (after '='). Underlined: changed by the step that wrote this state.", className="hint"),
        # one component holding the whole sequence as HTML (``token_html``), not one Dash component per token
        dcc.Markdown(id=ID("tokens"), className="tokens", dangerously_allow_html=True),
    ])


@callback(Output(ID("text"), "value"), Output(ID("model"), "value"), Input(ids.RUN, "data"), Input(ID("init"), "data"))
@safe(lambda msg: (no_update, no_update))
def fill(data, _init):
    """Show the problem on screen (in model order) and its model."""
    from app.state import RunKey

    key = RunKey.from_json(data)
    return key.text, key.model


@callback(Output(ids.RUN, "data"), Output(ID("message"), "children"),
          Input(ID("submit"), "n_clicks"), Input(ID("generate"), "n_clicks"), Input(ID("preset"), "value"),
          State(ID("text"), "value"), State(ID("model"), "value"), State(ID("size"), "value"), State(ID("seed"), "value"),
          prevent_initial_call=True)
@safe(lambda msg: (no_update, error_box(msg)))
def submit(run_clicks, generate_clicks, preset, text, model, size, seed):
    """Run the typed problem, generate one, or run a preset (one click); the run is computed here once and cached."""
    from app.state import generate_problem, get_run, make_key
    from workbench.task.families import PRESETS

    if ctx.triggered_id == ID("preset"):
        if preset not in PRESETS:  # cleared: nothing to run
            raise PreventUpdate
        text, done = PRESETS[preset], f"Preset loaded: {preset}."
    elif not run_clicks and not generate_clicks:  # the page just opened: nothing was clicked
        raise PreventUpdate
    elif ctx.triggered_id == ID("generate"):
        n, s = as_int(size, "the size"), as_int(seed, "the seed")
        if n is None or s is None:
            return no_update, error_box("give the number of nodes and a seed to generate a graph")
        text = generate_problem(model, n, s)
        done = f"Generated a graph of {n} nodes (seed {s})."
    else:
        done = "Problem loaded."
    key = make_key(model, text or "")
    run = get_run(key)
    left = f" It stopped with {run.unsolved} variables unsolved." if run.unsolved else ""
    return key.to_json(), note(f"{done} {run.n_steps} steps on {run.model}.{left}")


def token_frame(run, state: int) -> tuple[list[str], list[str]]:
    """[pos] each token's label in ``state``, HTML-escaped (a problem's names are the user's text), and its CSS
    classes: values coloured by status, changes underlined, a rewritten structure factor outlined."""
    t = run.clamp(state)
    labels = run.token_labels(t)
    now, before, first = run.states[t], run.states[max(t - 1, 0)], run.states[0]
    changed = (now != before).any(-1) if t else np.zeros(run.length, bool)
    odd = (now[:, :3] != first[:, :3]).any(-1)  # a factor other than the value moved: the model rewrote structure
    status = run.status(t)
    kind = np.full(run.length, "", dtype=object)
    kind[run.rhs_pos] = np.array([" notyet", " right", " wrong"], dtype=object)[status]
    return [escape(label) for label in labels], ["tok" + kind[p] + (" changed" if changed[p] else "") + (" odd" if odd[p] else "") for p in range(run.length)]


def token_html(run, state: int) -> str:
    """The token sequence of ``state`` as one HTML block: a ``div.eq`` per equation, a ``span.tok`` per token.

    One Markdown component instead of one Dash component per token: at N = 128 (~800 tokens) the Dash
    renderer's bookkeeping of those components took most of a Play frame in the browser (BENCHMARKS.md,
    App). ``tokenHtml`` in app/assets/problem.js builds the same block from ``play_frames`` while playing.
    """
    labels, classes = token_frame(run, state)
    lines = ("".join(f'<span class="{classes[p]}">{labels[p]}</span>' for p in range(a, b)) for a, b in run.equation_spans())
    return "".join(f'<div class="eq">{line}</div>' for line in lines)


@callback(Output(ID("arithmetic"), "children"), Input(ID("model"), "value"))
@safe(lambda msg: "")
def arithmetic(model):
    """The model's modulus and operations, with what they do to a sum (``17 + 9`` shows as ``3``)."""
    from app.state import model_task

    if not isinstance(model, str) or not model:
        return ""
    task = model_task(model)
    p, ops = task.modulus, " ".join(task.operations)
    a, b = p - 6, 9  # a sum past p shows the wrap-around
    return [html.B(f"Arithmetic mod {p}"), f" (values 0..{p - 1}), operations {ops}: ",
            html.Span(f"{a} + {b} = {a + b} is written {(a + b) % p}.", className="hint")]


def is_error(children) -> bool:
    """Whether a message slot holds an ``error_box`` (as Dash sends it back: a dict of the Div's props)."""
    props = children.get("props") if isinstance(children, dict) else None
    return isinstance(props, dict) and "error" in str(props.get("className", ""))


def selected_node(node, run) -> int | None:
    """The session's selected node when it is one of this run's nodes (a stale session may hold anything)."""
    return node if isinstance(node, int) and not isinstance(node, bool) and 0 <= node < run.n_nodes else None


def node_labels(run, state: int, selected: int | None, *, playing: bool) -> list[str]:
    """[node] the graph's labels: ``name=value`` where the figure has room for one; names alone while playing.

    Play repaints the markers in the browser and leaves the labels as they are (a new label text makes plotly
    recompute and redraw the whole graph: most of a Play frame at N = 128), so a value in a label would go
    stale; the values come back when Play stops (``relabel``).
    """
    from workbench.plots.run import dag_state, label_mask

    if not playing:
        return dag_state(run, state, label_mask(run, selected))["text"]
    return [name if shown else "" for name, shown in zip(run.names, label_mask(run, selected).tolist())]


def state_patch(run, state: int, selected: int | None) -> Patch:
    """What a state change sends to a graph already drawn: node colours, labels, hover texts and the title."""
    from workbench.plots.run import NODE_TRACE, dag_state

    fig, now = Patch(), dag_state(run, state)
    fig["data"][NODE_TRACE]["marker"]["color"] = now["color"]
    fig["data"][NODE_TRACE]["hovertext"] = now["hover"]
    fig["data"][NODE_TRACE]["text"] = node_labels(run, state, selected, playing=False)
    fig["layout"]["title"]["text"] = now["title"]
    return fig


@callback(Output(ID("dag"), "figure"), Output(ID("tokens"), "children"), Output(ID("drawn"), "data"),
          Input(ID("step"), "data"), Input(ids.RUN, "data"), Input(ID("init"), "data"), Input(ids.NODE, "data"),
          Input(ID("message"), "children"), State(ID("drawn"), "data"))
@safe(lambda msg: (blank(msg, 320), [], None))  # the figure says what went wrong
def show_state(state, data, _init, node, message, drawn):
    """The scrubbing callback: a new problem (or a selected node) draws the graph; a new state only patches
    it (``state_patch``). While the form shows an error, the graph of the previous problem is not shown.
    ``state`` is the slider's value as ``route_step`` passes it on: not while Play draws from the frames."""
    from app.state import RunKey, get_run
    from workbench.plots.run import dag_figure

    if is_error(message):
        return blank("not run: fix the problem (see the message on the left)", 320), [], None
    key = RunKey.from_json(data)
    run = get_run(key)
    t = run.clamp(state)
    selected = selected_node(node, run)
    if drawn == key.digest and ctx.triggered_id == ID("step"):  # the figure shows this graph already: send what changed
        fig = state_patch(run, t, selected)
    else:
        fig = dag_figure(run, t, selected=selected)
    return fig, token_html(run, t), key.digest if drawn != key.digest else no_update  # Play's frames follow a new run


@callback(Output(ID("dag"), "figure", allow_duplicate=True), Input(ids.TICK, "disabled"), State(ids.STEP, "value"),
          State(ids.RUN, "data"), State(ids.NODE, "data"), State(ID("drawn"), "data"), prevent_initial_call=True)
@safe(lambda msg: no_update)
def relabel(paused, state, data, node, drawn):
    """Play started or stopped: the graph's labels become names alone while playing and ``name=value`` again
    when it stops. The whole state is sent with them: Play restyles the drawn graph in the browser, so the
    figure Dash holds is the state where Play started until this patch brings it up to date."""
    from app.state import RunKey, get_run
    from workbench.plots.run import NODE_TRACE

    key = RunKey.from_json(data)
    if drawn != key.digest:  # the graph on screen is not this run's (yet): show_state draws it whole
        raise PreventUpdate
    run = get_run(key)
    t, selected = run.clamp(state), selected_node(node, run)
    fig = state_patch(run, t, selected)
    if paused is False:
        fig["data"][NODE_TRACE]["text"] = node_labels(run, t, selected, playing=True)
    return fig


@callback(Output(ID("frames"), "data"), Input(ID("drawn"), "data"), State(ids.RUN, "data"))
@safe(lambda msg: None)
def play_frames(drawn, data):
    """Every state of the drawn run at once (node colours, titles, token labels and classes), sent once a new
    run's graph is drawn, so that Play draws each state in the browser without a server round trip."""
    from app.state import RunKey, get_run
    from workbench.plots.run import NODE_TRACE, dag_state

    key = RunKey.from_json(data)
    if drawn != key.digest:  # no graph on screen (an error), or another run's: Play goes through the server
        return None
    run = get_run(key)
    states = [dag_state(run, t) for t in range(run.n_steps + 1)]
    tokens = [token_frame(run, t) for t in range(run.n_steps + 1)]
    classes = sorted({c for _, cls in tokens for c in cls})
    index = {c: i for i, c in enumerate(classes)}
    return {"digest": key.digest, "trace": NODE_TRACE, "colors": [s["color"] for s in states],
            "titles": [s["title"] for s in states], "spans": run.equation_spans(), "classes": classes,
            "labels": [labels for labels, _ in tokens], "codes": [[index[c] for c in cls] for _, cls in tokens]}


# The slider's state goes to the server (show_state), or, while playing with the frames of the graph on screen,
# is drawn in the browser (app/assets/problem.js)
clientside_callback(ClientsideFunction("problem", "route_step"),
                    Output(ID("step"), "data"), Output(ID("tokens"), "children", allow_duplicate=True),
                    Input(ids.STEP, "value"), State(ids.TICK, "disabled"), State(ID("frames"), "data"),
                    State(ID("drawn"), "data"), State(ID("dag"), "id"), prevent_initial_call="initial_duplicate")


@callback(Output(ids.NODE, "data"), Input(ID("dag"), "clickData"), prevent_initial_call=True)
@safe(lambda msg: no_update)
def pick_node(click):
    """The clicked node (a browser may send anything: only a point with an integer node id counts)."""
    points = click.get("points") if isinstance(click, dict) else None
    point = points[0] if isinstance(points, list) and points and isinstance(points[0], dict) else {}
    node = point.get("customdata")
    return node if isinstance(node, int) and not isinstance(node, bool) else no_update


@callback(Output(ID("node"), "children"), Input(ids.NODE, "data"), Input(ids.RUN, "data"), Input(ID("init"), "data"))
@safe(lambda msg: "")
def node_detail(node, data, _init):
    """The selected node: its equation, parents, children and value in every state (above the graph)."""
    from app.state import RunKey, get_run
    from workbench.plots.run import children_of

    run = get_run(RunKey.from_json(data))
    if not isinstance(node, int) or not 0 <= node < run.n_nodes:
        return html.Span("No node selected: click one in the graph.", className="hint")
    history = " → ".join(run.value_label(v) for v in run.values[:, node].tolist())
    names = lambda nodes: ", ".join(run.names[i] for i in nodes) or "none"  # noqa: E731
    return [html.Div([html.B(run.equations[node]), f"  depth {int(run.depth[node])}, true value {int(run.truth[node])} "
                      f"({run.arithmetic})"]),
            html.Div([html.Span("reads: ", className="parents"), names(run.parents[node]), html.Span(" · read by: ", className="children"),
                      names(children_of(run)[node])]),
            html.Div(f"value by state: {history}", className="history")]
