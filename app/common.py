"""What every page shares: the error guard of callbacks, and a few small layout pieces.

No traceback ever reaches a page: ``safe`` turns a ``WorkbenchError`` into its one line and anything
else into a short message (the traceback goes to the server log).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from dash import html, no_update
from dash.exceptions import PreventUpdate

from workbench.errors import WorkbenchError

log = logging.getLogger("workbench.app")


def failure_text(exc: BaseException) -> str:
    """The one line a page shows for ``exc``."""
    if isinstance(exc, WorkbenchError):
        return str(exc)
    return f"Something went wrong ({type(exc).__name__}); the details are in the server log."


def safe(on_error: Callable[[str], Any]) -> Callable:
    """Decorate a callback so that any failure becomes ``on_error(message)`` (the callback's outputs).

        @callback(Output(ID("graph"), "figure"), Output(ID("message"), "children"), Input(...))
        @safe(lambda msg: (no_update, error_box(msg)))
        def show(...): ...
    """
    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def guarded(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except PreventUpdate:
                raise
            except WorkbenchError as exc:
                return on_error(failure_text(exc))
            except Exception as exc:  # a bug: log it whole, show one line
                log.exception("callback %s failed", fn.__name__)
                return on_error(failure_text(exc))
        guarded.workbench_guard = True  # what the suite checks every registered callback for
        return guarded
    return wrap


def error_box(message: str) -> html.Div:
    return html.Div(message, className="message error", role="alert")


def blank(message: str = "not drawn: see the message above", height: int = 240):
    """What an error leaves in a figure's place: a figure saying why, never the previous problem's numbers."""
    from workbench.plots.common import empty_figure

    return empty_figure(message, height=height)


def note(message: str) -> html.Div:
    return html.Div(message, className="message note")


def as_int(value: Any, what: str) -> int | None:
    """A number input's value as an int (None when blank); ``WorkbenchError`` for a fraction."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
        raise WorkbenchError(f"{what} must be a whole number, got {value!r}")
    return int(value)


GRAPH_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}


def session_model(data: Any) -> Any:
    """The model of the session's run key (``ids.RUN``), or ``no_update`` while it holds none: pages with
    their own model picker start on the model the session is looking at."""
    return data.get("model") if isinstance(data, dict) and isinstance(data.get("model"), str) else no_update
