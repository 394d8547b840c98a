"""A run's graph and node states: the DAG layered by depth, coloured right / wrong / not yet, and status heatmaps.

Shared by the app's Problem and Error-correction pages and the notebooks. ``dag_figure`` builds the
whole figure; ``dag_state`` gives only what changes from one state to the next (colours, labels,
title), so a slider can patch those arrays instead of rebuilding the figure.

>>> from workbench.run_view import RunView
>>> fig = dag_figure(RunView.example(), state=2)
>>> [trace.name for trace in fig.data], list(fig.data[NODE_TRACE].marker.color)
(['edges', 'nodes', 'selected'], ['#2ca02c', '#2ca02c', '#c8c8c8'])
>>> [trace.name for trace in dag_figure(RunView.example(), state=2, selected=1).data]
['edges', 'nodes', 'selected', 'parents', 'children']
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
PARENT_COLOR, CHILD_COLOR = "#ff7f0e", "#9467bd"  # the selected node's inputs, and the nodes that read it
_PALETTE = np.array([STATUS_COLORS[NOT_YET], STATUS_COLORS[RIGHT], STATUS_COLORS[WRONG]], dtype=object)
#: the estimated size of a node label (10 px font): what the label thinning packs without overlap
CHAR_PX, LABEL_PX, LABEL_GAP_PX = 6.2, 13.0, 2.0
MARGIN = {"l": 10, "r": 10, "t": 40, "b": 30}


def dag_layout(depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` per node: x is the depth, y spreads each depth's nodes (model order) around 0."""
    depth = np.asarray(depth)
    x, y = depth.astype(float), np.zeros(len(depth))
    for d in np.unique(depth):
        idx = np.nonzero(depth == d)[0]
        y[idx] = np.arange(len(idx)) - (len(idx) - 1) / 2
    return x, -y


def children_of(run: RunView) -> list[list[int]]:
    """[node] the nodes that read each node (its children in the graph)."""
    out: list[list[int]] = [[] for _ in range(run.n_nodes)]
    for child, ps in enumerate(run.parents):
        for p in ps:
            out[p].append(child)
    return out


def neighbourhood(run: RunView, selected: int | None) -> list[int]:
    """The selected node, its parents and its children (in that order); [] when none is selected."""
    if selected is None or not 0 <= selected < run.n_nodes:
        return []
    return list(dict.fromkeys([selected, *run.parents[selected], *children_of(run)[selected]]))


def axis_ranges(x: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float]]:
    """Fixed axis ranges (room for a label above the top row), so label pixels can be computed before drawing."""
    return [float(x.min()) - 0.6, float(x.max()) + 0.6], [float(y.min()) - 0.6, float(y.max()) + 1.0]


def visible_labels(run: RunView, x: np.ndarray, y: np.ndarray, *, width_px: float, height_px: float,
                   first: list[int] = ()) -> np.ndarray:
    """[node] which labels to draw: greedily, ``first`` (the selected neighbourhood) then model order, each
    label kept only when its box misses every kept one, so a large graph thins out instead of overprinting.

    Boxes are sized for the widest value (``name=N/A``), so the choice holds in every state.

    >>> run = RunView.example()
    >>> x, y = dag_layout(run.depth)
    >>> visible_labels(run, x, y, width_px=600, height_px=300).tolist()
    [True, True, True]
    """
    (x0, x1), (y0, y1) = axis_ranges(x, y)
    px = (x - x0) / (x1 - x0) * width_px
    py = (y1 - y) / (y1 - y0) * height_px - 10  # the label sits above its marker
    widths = np.array([CHAR_PX * (len(name) + 4) for name in run.names])
    keep = np.zeros(run.n_nodes, bool)
    boxes: list[tuple[float, float, float, float]] = []
    for i in list(dict.fromkeys([*first, *range(run.n_nodes)])):
        box = (px[i] - widths[i] / 2, px[i] + widths[i] / 2, py[i] - LABEL_PX / 2, py[i] + LABEL_PX / 2)
        if all(box[1] + LABEL_GAP_PX <= b[0] or b[1] + LABEL_GAP_PX <= box[0] or
               box[3] + LABEL_GAP_PX <= b[2] or b[3] + LABEL_GAP_PX <= box[2] for b in boxes):
            keep[i] = True
            boxes.append(box)
    return keep


def label_mask(run: RunView, selected: int | None, *, height: int | None = None, width_px: float = 780) -> np.ndarray:
    """[node] the labels ``dag_figure`` draws for this selection and size (a patch of the state keeps them)."""
    x, y = dag_layout(run.depth)
    return visible_labels(run, x, y, width_px=width_px - MARGIN["l"] - MARGIN["r"],
                          height_px=(height or dag_height(run)) - MARGIN["t"] - MARGIN["b"], first=neighbourhood(run, selected))


def dag_state(run: RunView, state: int, labels: np.ndarray | None = None) -> dict:
    """What changes with the state: node colours, labels (``name=value``, only where ``labels`` allows;
    every one on hover) and the title."""
    t = run.clamp(state)
    status = run.status(t)
    values = [run.value_label(v) for v in run.values[t].tolist()]
    full = [f"{n}={v}" for n, v in zip(run.names, values)]
    shown = labels if labels is not None else np.ones(run.n_nodes, bool)
    right = int((status == RIGHT).sum())
    wrong = int((status == WRONG).sum())
    title = (f"State {t} of {run.n_steps} ({'input' if t == 0 else f'after step {t - 1}'}): "
             f"{right} right, {wrong} wrong, {run.n_nodes - right - wrong} not yet")
    hover = [f"<b>{eq}</b><br>true value {int(v)}, depth {int(d)}<br>now: {f}"
             for eq, v, d, f in zip(run.equations, run.truth, run.depth, full)]
    return {"color": _PALETTE[status].tolist(), "text": [f if k else "" for f, k in zip(full, shown)],
            "hover": hover, "title": title}


def dag_height(run: RunView) -> int:
    """Room for a label above every marker of the fullest depth (30 px a row), up to 1200 px; beyond, labels thin."""
    rows = max(int(np.bincount(run.depth).max()), 1)
    return int(min(1200, max(320, 80 + 30 * rows)))


def dag_figure(run: RunView, state: int, *, selected: int | None = None, height: int | None = None,
               width_px: float = 780) -> go.Figure:
    """The DAG at ``state``: one edge per parent, nodes coloured by status; ``selected`` highlights a node with its
    parents (orange) and children (purple) and keeps their labels. ``width_px``: the plot's expected width, for
    thinning labels (a wider plot only gains room)."""
    x, y = dag_layout(run.depth)
    ex, ey = [], []
    for child, ps in enumerate(run.parents):
        for p in ps:
            ex += [x[p], x[child], None]
            ey += [y[p], y[child], None]
    height = height or dag_height(run)
    near = neighbourhood(run, selected)
    now = dag_state(run, state, label_mask(run, selected, height=height, width_px=width_px))
    small = run.n_nodes <= 40
    opacity = [1.0] * run.n_nodes if not near else [1.0 if i in near else 0.35 for i in range(run.n_nodes)]
    fig = go.Figure([
        go.Scatter(x=ex, y=ey, mode="lines", name="edges", line={"width": 0.8, "color": "#b0b0b0"}, hoverinfo="skip",
                   opacity=0.5 if near else 1.0),
        go.Scatter(x=x, y=y, mode="markers+text", name="nodes", text=now["text"], hovertext=now["hover"],
                   textposition="top center", textfont={"size": 10}, customdata=list(range(run.n_nodes)),
                   hovertemplate="%{hovertext}<extra></extra>",
                   marker={"size": 16 if small else 10, "color": now["color"], "opacity": opacity,
                           "line": {"width": 1, "color": "#555"}}),
        *_selected_traces(run, x, y, selected),
    ])
    xr, yr = axis_ranges(x, y)
    fig.update_layout(title={"text": now["title"], "font": {"size": 14}}, showlegend=False, template="plotly_white",
                      height=height, margin=MARGIN,
                      xaxis={"title": "depth", "dtick": 1, "zeroline": False, "range": xr}, uirevision=run.model + str(run.n_nodes),
                      yaxis={"visible": False, "range": yr}, clickmode="event")
    return fig


def _selected_traces(run: RunView, x: np.ndarray, y: np.ndarray, selected: int | None) -> list[go.Scatter]:
    """The highlight: edges to the parents and children, rings on them, a large ring on the selected node."""
    if selected is None or not 0 <= selected < run.n_nodes:
        return [go.Scatter(x=[], y=[], mode="lines+markers", name="selected", hoverinfo="skip")]
    traces = []
    for nodes, color, name in ((run.parents[selected], PARENT_COLOR, "parents"),
                               (children_of(run)[selected], CHILD_COLOR, "children")):
        ex, ey = [], []
        for n in nodes:
            ex += [x[n], x[selected], None]
            ey += [y[n], y[selected], None]
        traces.append(go.Scatter(x=ex + [x[n] for n in nodes], y=ey + [y[n] for n in nodes], mode="lines+markers",
                                 name=name, hoverinfo="skip", line={"width": 2.5, "color": color},
                                 marker={"size": [0] * len(ex) + [18] * len(nodes), "color": "rgba(0,0,0,0)",
                                         "line": {"width": 2.5, "color": color}}))
    ring = go.Scatter(x=[x[selected]], y=[y[selected]], mode="markers", name="selected", hoverinfo="skip",
                      marker={"size": 26, "color": "rgba(0,0,0,0)", "line": {"width": 3.5, "color": "#d62728"}})
    return [ring, *traces]


def status_hover(values: np.ndarray, truth: np.ndarray, names: list[str], label) -> list[list[str]]:
    """[node][state] hover lines ``name in state t: value (true v)`` for a status heatmap."""
    vals = values.tolist()
    return [[f"{name} in state {t}: {label(vals[t][n])} (true {int(truth[n])})" for t in range(len(vals))]
            for n, name in enumerate(names)]


def heatmap_height(n_rows: int) -> int:
    """A status heatmap's height: 12 px a row up to 1000 px (N = 128 then shows every second label)."""
    return int(min(1000, max(300, 90 + 12 * n_rows)))


def status_heatmap(status: np.ndarray, names: list[str], *, title: str, state: int | None = None,
                   hover: list[list[str]] | None = None, keep: tuple[int, ...] = ()) -> go.Figure:
    """Node x state heatmap of statuses [state, node] (rows in model order, deepest at the bottom); row labels
    thin out on large graphs, the rows in ``keep`` always labelled."""
    from workbench.plots.common import category_axis

    n_nodes = status.shape[1]
    rows = [row_label(i, n) for i, n in enumerate(names)]  # unique row labels even if names repeat across views
    height = heatmap_height(n_nodes)
    fig = go.Figure(go.Heatmap(z=status.T, x=list(range(status.shape[0])), y=rows, zmin=0, zmax=2,
                               colorscale=STATUS_SCALE, showscale=False, hovertext=hover,
                               hoverinfo="text" if hover is not None else "x+y", xgap=1, ygap=0 if n_nodes > 40 else 1))
    if state is not None:
        fig.add_vline(x=state, line={"color": "#1f77b4", "width": 2, "dash": "dot"})
    fig.update_layout(title={"text": title, "font": {"size": 14}}, template="plotly_white",
                      xaxis={"title": "state (0 = input)", "dtick": 1 if status.shape[0] <= 30 else None},
                      yaxis=category_axis(rows, (height - 150) / max(n_nodes, 1), keep=keep, autorange="reversed",
                                          tickfont={"size": 10}),
                      height=height, margin={"l": 10, "r": 10, "t": 40, "b": 40})
    return fig


def row_label(index: int, name: str) -> str:
    """The y label of node ``index`` in a status heatmap."""
    return f"{index}: {name}"


__all__ = ["STATUS_COLORS", "STATUS_SCALE", "dag_layout", "dag_state", "dag_figure", "visible_labels", "label_mask", "neighbourhood",
           "children_of", "status_heatmap", "status_hover", "row_label",
           "EDGE_TRACE", "NODE_TRACE", "SELECTED_TRACE", "heatmap_height"]
