"""A run's graph and node states: the DAG layered by depth, coloured right / wrong / not yet, and status heatmaps.

Shared by the app's Problem and Error-correction pages and the notebooks. ``dag_figure`` builds the
whole figure; ``dag_state`` gives only what changes from one state to the next (colours, labels,
title), so a slider can patch those arrays instead of rebuilding the figure.

>>> from workbench.run_view import RunView
>>> fig = dag_figure(RunView.example(), state=2)
>>> [trace.name for trace in fig.data], list(fig.data[NODE_TRACE].marker.color)
(['edges', 'nodes', 'selected'], ['#2ca02c', '#2ca02c', '#c8c8c8'])
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from workbench.run_view import NOT_YET, RIGHT, WRONG, RunView

STATUS_COLORS = {NOT_YET: "#c8c8c8", RIGHT: "#2ca02c", WRONG: "#d62728"}
#: a discrete colour scale for heatmaps of statuses (zmin 0, zmax 2)
STATUS_SCALE = [[0.0, STATUS_COLORS[NOT_YET]], [1 / 3, STATUS_COLORS[NOT_YET]], [1 / 3, STATUS_COLORS[RIGHT]],
                [2 / 3, STATUS_COLORS[RIGHT]], [2 / 3, STATUS_COLORS[WRONG]], [1.0, STATUS_COLORS[WRONG]]]
EDGE_TRACE, NODE_TRACE, SELECTED_TRACE = 0, 1, 2
LABEL_LIMIT = 40  # graphs up to this size get node labels on the plot; larger ones only on hover
_PALETTE = np.array([STATUS_COLORS[NOT_YET], STATUS_COLORS[RIGHT], STATUS_COLORS[WRONG]], dtype=object)


def dag_layout(depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` per node: x is the depth, y spreads each depth's nodes (model order) around 0."""
    depth = np.asarray(depth)
    x, y = depth.astype(float), np.zeros(len(depth))
    for d in np.unique(depth):
        idx = np.nonzero(depth == d)[0]
        y[idx] = np.arange(len(idx)) - (len(idx) - 1) / 2
    return x, -y


def dag_state(run: RunView, state: int) -> dict:
    """What changes with the state: node colours, labels (``name=value``) and the title."""
    t = run.clamp(state)
    status = run.status(t)
    values = [run.value_label(v) for v in run.values[t].tolist()]
    text = [f"{n}={v}" for n, v in zip(run.names, values)]
    right = int((status == RIGHT).sum())
    wrong = int((status == WRONG).sum())
    title = (f"State {t} of {run.n_steps} ({'input' if t == 0 else f'after step {t - 1}'}): "
             f"{right} right, {wrong} wrong, {run.n_nodes - right - wrong} not yet")
    return {"color": _PALETTE[status].tolist(), "text": text, "title": title}


def dag_figure(run: RunView, state: int, *, selected: int | None = None, height: int | None = None) -> go.Figure:
    """The DAG at ``state``: one edge per parent, nodes coloured by status; ``selected`` highlights a node's inputs."""
    x, y = dag_layout(run.depth)
    ex, ey = [], []
    for child, ps in enumerate(run.parents):
        for p in ps:
            ex += [x[p], x[child], None]
            ey += [y[p], y[child], None]
    now = dag_state(run, state)
    hover = [f"<b>{eq}</b><br>true value {int(v)}, depth {int(d)}" for eq, v, d in zip(run.equations, run.truth, run.depth)]
    small = run.n_nodes <= LABEL_LIMIT
    fig = go.Figure([
        go.Scatter(x=ex, y=ey, mode="lines", name="edges", line={"width": 0.8, "color": "#b0b0b0"}, hoverinfo="skip"),
        go.Scatter(x=x, y=y, mode="markers+text" if small else "markers", name="nodes", text=now["text"],
                   textposition="top center", textfont={"size": 10}, hovertext=hover, customdata=list(range(run.n_nodes)),
                   hovertemplate="%{hovertext}<br>now: %{text}<extra></extra>",
                   marker={"size": 16 if small else 10, "color": now["color"], "line": {"width": 1, "color": "#555"}}),
        _selected_trace(run, x, y, selected),
    ])
    rows = max(int(np.bincount(run.depth).max()), 1)
    fig.update_layout(title={"text": now["title"], "font": {"size": 14}}, showlegend=False, template="plotly_white",
                      height=height or int(min(900, max(320, 60 + 28 * rows))), margin={"l": 10, "r": 10, "t": 40, "b": 30},
                      xaxis={"title": "depth", "dtick": 1, "zeroline": False}, uirevision=run.model + str(run.n_nodes),
                      yaxis={"visible": False}, clickmode="event")
    return fig


def _selected_trace(run: RunView, x: np.ndarray, y: np.ndarray, selected: int | None) -> go.Scatter:
    if selected is None or not 0 <= selected < run.n_nodes:
        return go.Scatter(x=[], y=[], mode="lines+markers", name="selected", hoverinfo="skip")
    sx, sy = [], []
    for p in run.parents[selected]:
        sx += [x[p], x[selected], None]
        sy += [y[p], y[selected], None]
    sx.append(x[selected])
    sy.append(y[selected])
    return go.Scatter(x=sx, y=sy, mode="lines+markers", name="selected", hoverinfo="skip",
                      line={"width": 2.5, "color": "#ff7f0e"},
                      marker={"size": [0] * (len(sx) - 1) + [24], "color": "rgba(0,0,0,0)",
                              "line": {"width": 3, "color": "#ff7f0e"}})


def status_hover(values: np.ndarray, truth: np.ndarray, names: list[str], label) -> list[list[str]]:
    """[node][state] hover lines ``name in state t: value (true v)`` for a status heatmap."""
    vals = values.tolist()
    return [[f"{name} in state {t}: {label(vals[t][n])} (true {int(truth[n])})" for t in range(len(vals))]
            for n, name in enumerate(names)]


def status_heatmap(status: np.ndarray, names: list[str], *, title: str, state: int | None = None,
                   hover: list[list[str]] | None = None) -> go.Figure:
    """Node x state heatmap of statuses [state, node] (rows in model order, deepest at the bottom)."""
    n_nodes = status.shape[1]
    rows = [f"{i}: {n}" for i, n in enumerate(names)]  # unique row labels even if names repeat across views
    fig = go.Figure(go.Heatmap(z=status.T, x=list(range(status.shape[0])), y=rows, zmin=0, zmax=2,
                               colorscale=STATUS_SCALE, showscale=False, hovertext=hover,
                               hoverinfo="text" if hover is not None else "x+y", xgap=1, ygap=0 if n_nodes > 40 else 1))
    if state is not None:
        fig.add_vline(x=state, line={"color": "#1f77b4", "width": 2, "dash": "dot"})
    fig.update_layout(title={"text": title, "font": {"size": 14}}, template="plotly_white",
                      xaxis={"title": "state (0 = input)", "dtick": 1 if status.shape[0] <= 30 else None},
                      yaxis={"autorange": "reversed", "type": "category", "showticklabels": n_nodes <= 64},
                      height=int(min(700, max(300, 80 + 14 * n_nodes))), margin={"l": 10, "r": 10, "t": 40, "b": 40})
    return fig


def row_label(index: int, name: str) -> str:
    """The y label of node ``index`` in a status heatmap."""
    return f"{index}: {name}"


__all__ = ["STATUS_COLORS", "STATUS_SCALE", "dag_layout", "dag_state", "dag_figure", "status_heatmap", "status_hover", "row_label",
           "EDGE_TRACE", "NODE_TRACE", "SELECTED_TRACE"]
