"""Component ids: the root layout's shared ones, and ``scoped`` for a page's own, derived from its module name."""

from __future__ import annotations

from collections.abc import Callable

URL = "url"
RUN = "run"  # dcc.Store (session): the RunKey of the problem on screen, as JSON
NODE = "node"  # dcc.Store (session): the selected node's index (model order), or None
STEP = "step"  # dcc.Slider: the state on screen (0 = input, t + 1 = after step t)
STEP_BAR = "step-bar"
STEP_PREV, STEP_NEXT, PLAY, TICK = "step-prev", "step-next", "play", "tick"
PLAY_FRAME = "play-frame"  # dcc.Store: Play's shortest frame in ms (app.app.PLAY_FRAME_MS)
RUN_INFO = "run-info"


def scoped(module_name: str) -> Callable[[str], str]:
    """``ID = scoped(__name__)``; ``ID("graph")`` -> ``"problem-graph"`` in ``app/pages/problem.py``.

    >>> scoped("app.pages.problem")("graph")
    'problem-graph'
    """
    prefix = module_name.rsplit(".", 1)[-1]
    return lambda name: f"{prefix}-{name}"
