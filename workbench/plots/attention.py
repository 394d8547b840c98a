"""Attention routing of a looped model: per step, which positions each head reads from a node's defining position.

``patterns`` arrays are [layer, head, node, pos]: the attention rows at every node's defining
position (the app's ``step_patterns``). The true parents are overlaid: ``x`` marks a node's
own operand tokens (what a *copy* head reads), ``o`` its parents' defining positions (what a *lookup*
head reads, where their values are written).

>>> import numpy as np
>>> from workbench.run_view import RunView
>>> run = RunView.example()
>>> fig = pattern_figure(np.full((3, 12), 1 / 12), run, state=1, layer=0, head=1)
>>> [trace.name for trace in fig.data]
['attention', 'own operand tokens', "parents' defining positions"]
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.plots.common import category_axis, empty_figure
from workbench.run_view import RunView


def head_label(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


def at_step(step: int) -> str:
    """The one phrase every attention title uses, so a title's step is the step its numbers come from.

    >>> at_step(4)
    'at step 4 (reading state 4)'
    """
    return f"at step {step} (reading state {step})"


def _parent_marks(run: RunView, nodes: list[int]) -> tuple[list, list, list, list]:
    """Operand-token and parent-position coordinates ``(x, y)`` for the rows ``nodes`` (y = row index)."""
    ox, oy, px, py = [], [], [], []
    for row, n in enumerate(nodes):
        for pos in run.operand_pos[n][run.operand_pos[n] >= 0].tolist():
            ox.append(pos)
            oy.append(row)
        for p in run.parents[n]:
            px.append(int(run.rhs_pos[p]))
            py.append(row)
    return ox, oy, px, py


def position_labels(run: RunView, state: int) -> list[str]:
    """One unique label per position, ``"17 total=12"``: the position and its token in ``state``."""
    return [f"{p} {label}" for p, label in enumerate(run.token_labels(state))]


def pattern_figure(rows: np.ndarray, run: RunView, *, state: int, layer: int, head: int) -> go.Figure:
    """One head's attention at the step reading ``state``: rows [node, pos], one row per node, parents overlaid.

    The axes are categorical (node names, ``"pos token"`` labels), so hover shows both without per-cell text.
    """
    xs = position_labels(run, state)
    nodes = list(range(run.n_nodes))
    ox, oy, px, py = _parent_marks(run, nodes)
    names = run.names
    fig = go.Figure([
        go.Heatmap(z=rows.astype(np.float32), x=xs, y=names, colorscale="Blues", zmin=0, zmax=1, name="attention",
                   hovertemplate="%{y} reads %{x}: %{z:.3f}<extra></extra>", colorbar={"title": "attn", "thickness": 12}),
        go.Scatter(x=[xs[p] for p in ox], y=[names[n] for n in oy], mode="markers", name="own operand tokens",
                   hoverinfo="skip", marker={"symbol": "x-thin", "size": 7, "color": "#ff7f0e",
                                             "line": {"width": 1.5, "color": "#ff7f0e"}}),
        go.Scatter(x=[xs[p] for p in px], y=[names[n] for n in py], mode="markers", name="parents' defining positions",
                   hoverinfo="skip", marker={"symbol": "circle-open", "size": 8, "color": "#d62728", "line": {"width": 1.5}}),
    ])
    short = run.length <= 80
    height = int(min(1000, max(320, 100 + 12 * run.n_nodes)))
    fig.update_layout(
        title={"text": f"{head_label(layer, head)} {at_step(state)}: rows = each node's defining position",
               "font": {"size": 14}},
        template="plotly_white", height=height,
        margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"},
        xaxis={"title": "key position", "type": "category", "showticklabels": short, "tickangle": -60, "tickfont": {"size": 9}},
        yaxis=category_axis(names, (height - 150) / max(run.n_nodes, 1), autorange="reversed", tickfont={"size": 9}),
        clickmode="event")
    return fig


MEASURE_TITLES = {"operand_lookup": "operand token → its definition (lookup)",
                  "gather": "result → its own operand tokens (gather)",
                  "induction": "result → its parents' definitions (induction)"}


def scores_figure(scores: dict[str, np.ndarray], *, title: str) -> go.Figure:
    """Layer x head heatmaps of the routing measures (``workbench.analysis.routing``): lookup, gather, induction."""
    shown = [m for m in MEASURE_TITLES if m in scores]
    n_layers, n_heads = scores[shown[0]].shape
    fig = make_subplots(1, len(shown), subplot_titles=[MEASURE_TITLES[m] for m in shown], horizontal_spacing=0.06)
    for col, m in enumerate(shown, 1):
        fig.add_trace(go.Heatmap(z=scores[m], x=[f"H{h}" for h in range(n_heads)], y=[f"L{l}" for l in range(n_layers)],
                                 zmin=0, zmax=1, colorscale="Viridis", showscale=col == len(shown), texttemplate="%{z:.2f}",
                                 hovertemplate="%{y} %{x}: %{z:.3f}<extra></extra>"), 1, col)
        fig.update_yaxes(autorange="reversed", row=1, col=col)
    fig.update_layout(title={"text": title, "font": {"size": 14}}, template="plotly_white",
                      height=max(200, 110 + 45 * n_layers), margin={"l": 10, "r": 10, "t": 60, "b": 10}, clickmode="event")
    return fig


def roles_figure(run: RunView) -> go.Figure:
    """Head roles across steps: the lookup, gather and induction mass of every head (rows) at every step (columns)."""
    if run.routing is None or not len(run.routing["operand_lookup"]):
        return empty_figure("no attention scores for this run")
    heads = [head_label(l, h) for l in range(run.n_layers) for h in range(run.n_heads)]
    steps = len(run.routing["operand_lookup"])
    fig = make_subplots(1, 3, subplot_titles=[f"{MEASURE_TITLES[m]} by step" for m in MEASURE_TITLES], horizontal_spacing=0.06)
    for col, m in enumerate(MEASURE_TITLES, 1):
        z = run.routing[m].reshape(steps, -1).T  # [layer * head, step]
        fig.add_trace(go.Heatmap(z=z, x=list(range(steps)), y=heads, zmin=0, zmax=1, colorscale="Viridis",
                                 showscale=col == 3, hovertemplate="%{y} step %{x}: %{z:.3f}<extra></extra>"), 1, col)
        fig.update_xaxes(title_text="step", row=1, col=col, dtick=1 if steps <= 30 else None)
        fig.update_yaxes(autorange="reversed", row=1, col=col, showticklabels=col == 1)
    fig.update_layout(title={"text": "Head roles across steps (blank: no such query at that step)", "font": {"size": 14}},
                      template="plotly_white", height=max(260, 90 + 16 * len(heads)), margin={"l": 10, "r": 10, "t": 60, "b": 30})
    return fig


def _png(img: np.ndarray) -> str:
    """A grey-scale uint8 image [rows, cols] as a PNG data URI."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img, mode="L").save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def heads_grid_figure(patterns: np.ndarray, *, state: int, max_columns: int = 320) -> go.Figure:
    """Every head at once (layers down, heads across): thumbnails of [node, pos] patterns, sent as PNG images.

    Long sequences are max-pooled to ``max_columns`` columns, so a sharp attention peak stays visible.
    """
    n_layers, n_heads, n_rows, n_cols = patterns.shape
    if n_cols > max_columns:
        edges = np.linspace(0, n_cols, max_columns + 1).astype(int)[:-1]
        patterns = np.maximum.reduceat(patterns, edges, axis=-1)
    width = patterns.shape[-1]
    imgs = (255 * (1 - np.sqrt(np.clip(patterns, 0, 1)))).astype(np.uint8)  # sqrt: faint heads stay visible
    data, layout, notes = [], {}, []
    gap_x, gap_y = 0.01, 0.12 / max(n_layers, 1)
    for l in range(n_layers):
        for h in range(n_heads):
            k = l * n_heads + h
            sfx = "" if k == 0 else str(k + 1)
            x0 = h / n_heads + gap_x / 2
            x1 = (h + 1) / n_heads - gap_x / 2
            y1 = 1 - l / n_layers - gap_y
            y0 = 1 - (l + 1) / n_layers + gap_y / 4
            data.append({"type": "image", "source": _png(imgs[l, h]), "xaxis": f"x{sfx}", "yaxis": f"y{sfx}",
                         "dx": 1, "dy": width / max(n_rows, 1), "hovertemplate": f"{head_label(l, h)}<extra></extra>"})
            layout[f"xaxis{sfx}"] = {"domain": [x0, x1], "anchor": f"y{sfx}", "visible": False}
            layout[f"yaxis{sfx}"] = {"domain": [y0, y1], "anchor": f"x{sfx}", "visible": False, "autorange": "reversed"}
            notes.append({"text": head_label(l, h), "x": (x0 + x1) / 2, "y": y1, "xref": "paper", "yref": "paper",
                          "showarrow": False, "yanchor": "bottom", "font": {"size": 10}})
    layout.update(title={"text": f"Every head {at_step(state)} (darker = more attention; click one)",
                         "font": {"size": 14}}, template="plotly_white", height=90 + 120 * n_layers,
                  margin={"l": 10, "r": 10, "t": 60, "b": 10}, clickmode="event", annotations=notes)
    return go.Figure({"data": data, "layout": layout})


def node_attention_figure(rows: np.ndarray, run: RunView, *, node: int, state: int) -> go.Figure:
    """What one node's defining position reads in every head: rows [layer, head, pos] -> heads x positions."""
    n_layers, n_heads, n_pos = rows.shape
    heads = [head_label(l, h) for l in range(n_layers) for h in range(n_heads)]
    labels = run.token_labels(state)
    z = rows.reshape(n_layers * n_heads, n_pos)
    ops = run.operand_pos[node][run.operand_pos[node] >= 0].tolist()
    par = [int(run.rhs_pos[p]) for p in run.parents[node]]
    lo = max(0, min(ops + par + [int(run.rhs_pos[node])]) - 8)
    hi = int(run.rhs_pos[node]) + 2  # causal: nothing after the node's own position is read
    fig = go.Figure(go.Heatmap(z=z[:, lo:hi], x=list(range(lo, hi)), y=heads, zmin=0, zmax=1, colorscale="Blues",
                               customdata=np.broadcast_to(np.array(labels[lo:hi], dtype=object), z[:, lo:hi].shape),
                               hovertemplate="%{y} reads pos %{x} (%{customdata}): %{z:.3f}<extra></extra>",
                               colorbar={"thickness": 12}))
    for pos, symbol, color in [(p, "x-thin", "#ff7f0e") for p in ops] + [(p, "circle-open", "#d62728") for p in par]:
        fig.add_trace(go.Scatter(x=[pos] * len(heads), y=heads, mode="markers", hoverinfo="skip", showlegend=False,
                                 marker={"symbol": symbol, "size": 7, "color": color, "line": {"width": 1.5, "color": color}}))
    short = hi - lo <= 80
    fig.update_layout(
        title={"text": f"What {run.names[node]} ({run.equations[node]}) reads {at_step(state)}",
               "font": {"size": 14}},
        template="plotly_white", height=max(260, 90 + 16 * len(heads)), margin={"l": 10, "r": 10, "t": 40, "b": 10},
        xaxis={"tickmode": "array" if short else "auto", "tickvals": list(range(lo, hi)) if short else None,
               "ticktext": labels[lo:hi] if short else None, "tickangle": -60, "tickfont": {"size": 9}},
        yaxis={"autorange": "reversed"})
    return fig


#: a chain spanning at most this many tokens labels every one; a longer one only the tokens its arcs join
CHAIN_ALL_LABELS = 40
#: the three links of the circuit chain: (name, colour, dash, arcs above (+1) or below (-1) the tokens)
CHAIN_LINKS = (("lookup", "#1f77b4", "solid", 1), ("gather", "#ff7f0e", "solid", 1), ("induction", "#d62728", "dash", -1))


def chain_links(run: RunView, node: int, result_rows: np.ndarray, lookups: np.ndarray) -> list[dict]:
    """The arcs of one node's circuit at one step, each with its strongest head and that head's weight.

    result_rows: [layer, head, pos] attention from the node's defining position (its result);
    lookups: [layer, head, slot] attention from each operand token onto its variable's defining position.
    For every operand slot: ``lookup`` operand token <- its variable's definition, ``gather`` result <-
    operand token, ``induction`` result <- the variable's definition (the paper's one-hop route).

    >>> run = RunView.example()
    >>> rows = np.zeros((1, 2, 12)); rows[0, 1, 9] = 0.8; rows[0, 0, 6] = 0.3
    >>> look = np.zeros((1, 2, 3)); look[0, 0, 1] = 0.9
    >>> [(a["kind"], a["src"], a["dst"], a["head"], round(a["weight"], 2)) for a in chain_links(run, 2, rows, look)
    ...  if a["slot"] == 1]  # node 2's second operand: variable 1, defined at 6, read at 9; node 2's result at 11
    [('lookup', 6, 9, 'L0H0', 0.9), ('gather', 9, 11, 'L0H1', 0.8), ('induction', 6, 11, 'L0H0', 0.3)]
    """
    result = int(run.rhs_pos[node])
    links = []
    for slot, parent in enumerate(run.parents[node]):
        operand, definition = int(run.operand_pos[node, slot]), int(run.rhs_pos[parent])
        for kind, weights, src, dst in (("lookup", lookups[:, :, slot], definition, operand),
                                        ("gather", result_rows[:, :, operand], operand, result),
                                        ("induction", result_rows[:, :, definition], definition, result)):
            layer, head = np.unravel_index(int(np.argmax(weights)), weights.shape)
            links.append({"kind": kind, "slot": slot, "variable": run.names[parent], "src": src, "dst": dst,
                          "head": head_label(int(layer), int(head)), "weight": float(weights[layer, head])})
    return links


def circuit_chain_figure(run: RunView, *, node: int, state: int, result_rows: np.ndarray,
                         lookups: np.ndarray) -> go.Figure:
    """One node's circuit drawn on its token sequence: an arc per link (``chain_links``) from the position
    read to the position reading, labelled with its strongest head and weight, its width the weight.
    Lookup and gather arcs run above the tokens, induction arcs below."""
    links = chain_links(run, node, result_rows, lookups)
    labels = run.token_labels(state)
    result = int(run.rhs_pos[node])
    lo = max(0, min([a["src"] for a in links] + [result]) - 2)
    hi = min(len(labels), result + 2)
    # every token's label when they fit; on a long span only the arcs' ends are named, the rest are dots
    ends = {a["src"] for a in links} | {a["dst"] for a in links}
    shown = [p for p in range(lo, hi) if hi - lo <= CHAIN_ALL_LABELS or p in ends]
    fig = go.Figure(go.Scatter(x=shown, y=[0] * len(shown), mode="text", text=[labels[p] for p in shown],
                               textfont={"size": 10}, hoverinfo="skip", showlegend=False))
    if len(shown) < hi - lo:
        rest = [p for p in range(lo, hi) if p not in ends]
        fig.add_trace(go.Scatter(x=rest, y=[0] * len(rest), mode="markers", marker={"size": 2, "color": "#bbb"},
                                 customdata=[labels[p] for p in rest], hovertemplate="pos %{x}: %{customdata}<extra></extra>",
                                 showlegend=False))
    span = max(hi - lo, 1)
    for kind, color, dash, side in CHAIN_LINKS:
        arcs = [a for a in links if a["kind"] == kind]
        for a in arcs:
            height = side * (0.6 + 2.4 * abs(a["dst"] - a["src"]) / span)
            mid = (a["src"] + a["dst"]) / 2
            fig.add_shape(type="path", path=f"M {a['src']},{0.25 * side} Q {mid},{height} {a['dst']},{0.25 * side}",
                          line={"color": color, "width": 1 + 5 * a["weight"], "dash": dash})
            fig.add_annotation(x=mid, y=height / 2 + 0.12 * side, text=f"{a['head']} {a['weight']:.2f}", showarrow=False,
                               font={"size": 10, "color": color}, bgcolor="rgba(255,255,255,0.8)")
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=kind, line={"color": color, "dash": dash}))
    fig.update_layout(
        title={"text": f"The circuit of {run.names[node]} ({run.equations[node]}) {at_step(state)}", "font": {"size": 14}},
        template="plotly_white", height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10},
        xaxis={"visible": False, "range": [lo - 1, hi]}, yaxis={"visible": False, "range": [-3.2, 3.4]},
        legend={"orientation": "h", "y": -0.02})
    return fig


__all__ = ["MEASURE_TITLES", "head_label", "at_step", "position_labels", "pattern_figure", "scores_figure", "roles_figure", "heads_grid_figure", "node_attention_figure",
           "CHAIN_LINKS", "chain_links", "circuit_chain_figure"]
