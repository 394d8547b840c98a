"""The app's root: navigation, the shared stores, the step bar (slider, play and pause) and the page container.

Per-session state lives in the browser (``dcc.Store``, session storage: the problem's ``RunKey`` and the
selected node); the server keeps only caches keyed by the whole input (``app.state``), so
sessions never see each other's state. Serve with ``workbench app`` or ``python -m app``.
"""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

import dash
from dash import ClientsideFunction, Dash, Input, Output, State, callback, clientside_callback, dcc, html, no_update

from app import ids
from app.common import error_box, log, safe
from workbench.errors import WorkbenchError

try:  # plotly imports pandas (when installed) lazily, from whichever callback thread builds a figure first; two
    import pandas  # noqa: F401  threads at once saw it half-initialized: "partially initialized module 'pandas'
except ImportError:  # has no attribute 'Series'". Imported here, once, before the server starts any thread.
    pass

HERE = Path(__file__).resolve().parent
TITLE = "Looped-transformer workbench"
FIRST_PROBLEM = {"n_nodes": 16, "seed": 0}  # what a new session sees first
NO_STEP_BAR = ("/probes", "/generalization")
_APP: Dash | None = None


def create_app(model: str = "default") -> Dash:
    """The app, serving ``model`` first (built once per process: Dash binds page callbacks to its first app).

    Raises ``WorkbenchError`` when ``model`` does not exist.
    """
    global _APP
    from app import state

    text = state.generate_problem(model, FIRST_PROBLEM["n_nodes"], FIRST_PROBLEM["seed"])
    initial = state.make_key(model, text).to_json()
    if _APP is not None:
        _APP.layout = root_layout(initial)
        return _APP
    app = Dash("app", use_pages=True, pages_folder=str(HERE / "pages"), assets_folder=str(HERE / "assets"),
               title=TITLE, update_title=None, suppress_callback_exceptions=True)
    app.layout = root_layout(initial)
    app.server.register_error_handler(Exception, malformed_request)
    _APP = app
    return app


def malformed_request(exc: Exception):
    """A request Dash itself cannot dispatch (a hand-made or truncated payload) gets one line and HTTP 400,
    never a 500; every callback's own failures are caught earlier by ``safe``. HTTP errors (404...) pass."""
    from werkzeug.exceptions import HTTPException

    if isinstance(exc, HTTPException):
        return exc
    log.warning("malformed request: %s: %s", type(exc).__name__, exc)
    return {"error": f"malformed request ({type(exc).__name__}); reload the page"}, 400


#: Play's shortest frame: a state stays on screen at least this long (5 states a second at most, so that the
#: target of 4 holds with the poll's jitter); a page that takes longer to draw a state plays slower, never
#: skipping one (app/assets/play.js)
PLAY_FRAME_MS = 200
#: how often Play asks whether the page has drawn the state on screen (a fraction of a frame, so a frame
#: that is drawn in time is not held back by the poll)
PLAY_POLL_MS = 40


def root_layout(initial: dict) -> html.Div:
    pages = sorted(dash.page_registry.values(), key=lambda p: p.get("order", 99))
    nav = [dcc.Link(p["name"], href=p["relative_path"], className="nav-link", id=f"nav-{p['module'].rsplit('.', 1)[-1]}")
           for p in pages]
    return html.Div([
        dcc.Location(id=ids.URL),
        dcc.Store(id=ids.RUN, storage_type="session", data=initial),
        dcc.Store(id=ids.NODE, storage_type="session", data=None),
        html.Header([html.Div(TITLE, className="brand"), html.Nav(nav)], className="top"),
        html.Div(id=ids.STEP_BAR, className="step-bar", children=[
            html.Div(id=ids.RUN_INFO, className="run-info"),
            html.Div([
                html.Button("◀", id=ids.STEP_PREV, title="previous state", className="small"),
                html.Button("Play", id=ids.PLAY, title="play through the states", className="small"),
                html.Button("▶", id=ids.STEP_NEXT, title="next state", className="small"),
                html.Div(dcc.Slider(id=ids.STEP, min=0, max=1, step=1, value=0, updatemode="mouseup",
                                    allow_direct_input=False), className="slider"),
            ], className="step-controls"),
            dcc.Interval(id=ids.TICK, interval=PLAY_POLL_MS, disabled=True),
            dcc.Store(id=ids.PLAY_FRAME, data=PLAY_FRAME_MS),
        ]),
        html.Main(dash.page_container, className="content"),
    ])


def _marks(n_steps: int) -> dict:
    every = max(1, -(-n_steps // 24))
    marks = {t: str(t) for t in range(0, n_steps + 1, every)}
    marks[0], marks[n_steps] = "input", str(n_steps)
    return marks


@callback(Output(ids.STEP, "max"), Output(ids.STEP, "marks"), Output(ids.STEP, "value"), Output(ids.RUN_INFO, "children"),
          Input(ids.RUN, "data"))
@safe(lambda msg: (no_update, no_update, no_update, error_box(msg)))
def on_run(data):
    """A new problem: size the slider to its states and show the final one."""
    from app.state import RunKey, get_run
    from workbench.run_view import STEPS_SENTENCE

    run = get_run(RunKey.from_json(data))
    return run.n_steps, _marks(run.n_steps), run.n_steps, run_info(run, STEPS_SENTENCE)


def run_info(run, sentence: str) -> list:
    """The step bar's summary of the run on screen, with the one definition of a step (hover for all of it)."""
    end = "reached a fixed point" if run.converged else "hit the step cap without a fixed point"
    if run.unsolved:
        end = f"stopped with {run.unsolved} variables unsolved ({end})"
    solved = "solved" if run.solved else f"{int((run.values[-1] == run.truth).sum())}/{run.n_nodes} nodes right"
    return [html.B(run.model), f" ({run.arithmetic})",
            f" · {run.n_nodes} nodes, depth {int(run.depth.max())} · {run.n_steps} steps, {end} · {solved}",
            html.Span(f" · {sentence}", className="hint steps-definition")]


# The step buttons and Play run in the browser (app/assets/play.js): moving the slider needs no server
# round trip, and Play paces itself by the page having drawn the last state.
clientside_callback(ClientsideFunction("step_bar", "move"),
                    Output(ids.STEP, "value", allow_duplicate=True), Output(ids.TICK, "disabled", allow_duplicate=True),
                    Output(ids.PLAY, "children", allow_duplicate=True),
                    Input(ids.STEP_PREV, "n_clicks"), Input(ids.STEP_NEXT, "n_clicks"), Input(ids.TICK, "n_intervals"),
                    State(ids.STEP, "value"), State(ids.STEP, "max"), State(ids.PLAY_FRAME, "data"), prevent_initial_call=True)
clientside_callback(ClientsideFunction("step_bar", "toggle"),
                    Output(ids.TICK, "disabled"), Output(ids.PLAY, "children"), Output(ids.STEP, "value", allow_duplicate=True),
                    Input(ids.PLAY, "n_clicks"), State(ids.TICK, "disabled"), State(ids.STEP, "value"), State(ids.STEP, "max"),
                    prevent_initial_call=True)


@callback(Output(ids.STEP_BAR, "style"), Input(ids.URL, "pathname"))
@safe(lambda msg: {})
def show_step_bar(pathname):
    hidden = isinstance(pathname, str) and any(pathname.rstrip("/").endswith(p) for p in NO_STEP_BAR)
    return {"display": "none"} if hidden else {}


def main(argv: list[str] | None = None) -> None:
    """``python -m app [--model M] [--host H] [--port P] [--debug]``."""
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="the model shown first (a name in models/)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: localhost only)")
    parser.add_argument("--port", type=int, default=8050)
    parser.add_argument("--debug", action="store_true", help="Dash dev tools and reloading (never on a shared host)")
    args = parser.parse_args(argv)
    serve(args.model, args.host, args.port, debug=args.debug)


def check_port_free(host: str, port: int) -> None:
    """One line instead of the web server's multi-line exit when the port is taken or the host is wrong."""
    import socket

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server itself binds
            probe.bind((host, port))
    except OSError as exc:
        reason = "already in use" if exc.errno == errno.EADDRINUSE else f"not available ({exc.strerror or exc})"
        raise WorkbenchError(f"port {port} on {host} is {reason}; pass --port with a free port "
                             "or stop the program that holds it") from None


def serve(model: str = "default", host: str = "127.0.0.1", port: int = 8050, *, debug: bool = False) -> None:
    """Build the app and serve it until interrupted; a bad model name ends with one line and exit code 2."""
    try:
        check_port_free(host, port)
        app = create_app(model)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"The workbench app: http://{host}:{port}/  (model {model}; Ctrl+C stops it)", flush=True)
    app.run(host=host, port=port, debug=debug, use_reloader=False)


if __name__ == "__main__":
    main()
