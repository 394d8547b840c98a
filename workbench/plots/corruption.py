"""Error correction: a run's value events on a timeline, and an injected error with the model's recovery.

>>> from workbench.run_view import RunView
>>> fig = events_figure(RunView.example(), state=2)
>>> sorted({trace.name for trace in fig.data[1:]})
['written right', 'written wrong']
"""

from __future__ import annotations

import plotly.graph_objects as go

from workbench.plots.codebook import EVENT_COLORS
from workbench.plots.run import row_label, status_heatmap, status_hover
from workbench.run_view import EVENT_KINDS, RunView

EVENT_SYMBOLS = {"written right": "circle", "written wrong": "x", "corrected": "star", "broken": "diamond",
                 "rewritten wrong": "triangle-up"}


def legend_below(fig: go.Figure) -> dict:
    """Layout keys that put the legend under the x axis title, in pixels (paper units would collide at some heights)."""
    height = fig.layout.height or 450
    plot = height - 40 - 100
    return {"margin": {"l": 10, "r": 10, "t": 40, "b": 100}, "legend": {"orientation": "h", "y": -48 / plot, "yanchor": "top"}}


def events_figure(run: RunView, *, state: int | None = None) -> go.Figure:
    """Node x state statuses of the run, with every change of a node's value marked at the state it appears in."""
    counts = {kind: 0 for kind in EVENT_KINDS}
    hover = status_hover(run.values, run.truth, run.names, run.value_label)
    fig = status_heatmap(run.status_matrix(), run.names, title="", state=state, hover=hover)
    by_kind: dict[str, list] = {kind: [] for kind in EVENT_KINDS}
    for e in run.events():
        by_kind[e.kind].append(e)
        counts[e.kind] += 1
    for kind, events in by_kind.items():
        if not events:
            continue
        fig.add_trace(go.Scatter(
            x=[e.state for e in events], y=[row_label(e.node, run.names[e.node]) for e in events], mode="markers", name=kind,
            marker={"symbol": EVENT_SYMBOLS[kind], "size": 9, "color": EVENT_COLORS[kind], "line": {"width": 1, "color": "#222"}},
            hovertemplate=[f"{run.names[e.node]}: {run.value_label(e.before)} -> {run.value_label(e.after)} "
                           f"({kind}) in state {e.state}<extra></extra>" for e in events]))
    summary = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n) or "no value changed"
    fig.update_layout(title={"text": f"Events of this run: {summary}"}, showlegend=True, **legend_below(fig))
    return fig


def injection_figure(view, *, title: str | None = None) -> go.Figure:
    """The corrupted run's statuses [state, node], the injection starred, nodes that differ from the clean run ringed.

    ``view``: an ``InjectionView`` from the app's server side (``app/state.py``).
    """
    from workbench.run_view import value_label

    label = lambda code: value_label(int(code), view.vocab)  # noqa: E731
    hover = status_hover(view.corrupted, view.truth, view.names, label)
    fig = status_heatmap(view.status(), view.names, hover=hover, keep=(view.node,),
                         title=title or f"{view.model}: after writing {view.name} := {view.value} into state {view.state}")
    n = min(len(view.clean), len(view.corrupted))
    diff_t, diff_n = (view.clean[:n] != view.corrupted[:n]).nonzero()
    fig.add_trace(go.Scatter(x=diff_t.tolist(), y=[row_label(i, view.names[i]) for i in diff_n.tolist()], mode="markers",
                             name="differs from the clean run", hoverinfo="skip",
                             marker={"symbol": "square-open", "size": 11, "line": {"width": 1.5, "color": "#1f77b4"}}))
    fig.add_trace(go.Scatter(x=[view.state], y=[row_label(view.node, view.name)], mode="markers", name="injected",
                             hovertemplate=f"injected {view.name} := {view.value}<extra></extra>",
                             marker={"symbol": "star", "size": 18, "color": "#ffdd00", "line": {"width": 1.5, "color": "#000"}}))
    if view.repair_state >= 0:
        fig.add_vline(x=view.repair_state, line={"color": "#2ca02c", "width": 2, "dash": "dash"},
                      annotation_text="repaired", annotation_position="top")
    fig.update_layout(showlegend=True, **legend_below(fig))
    return fig


__all__ = ["events_figure", "injection_figure", "EVENT_SYMBOLS"]
