"""Small figure helpers shared by the figure builders."""

from __future__ import annotations

import plotly.graph_objects as go


def empty_figure(message: str, height: int = 240) -> go.Figure:
    """A blank figure that says why it is blank.

    >>> empty_figure("nothing yet").layout.annotations[0].text
    'nothing yet'
    """
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, font={"size": 14, "color": "#666"}, xref="paper", yref="paper",
                       x=0.5, y=0.5)
    fig.update_layout(template="plotly_white", height=height, xaxis={"visible": False}, yaxis={"visible": False},
                      margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return fig


def thinned_ticks(labels: list[str], px_per_label: float, *, keep: tuple[int, ...] = (), min_px: float = 12.0) -> list[str]:
    """The labels of a dense categorical axis that fit without overlap: every k-th (k from the pixels per
    category) plus the ones in ``keep`` (e.g. a selected or injected row), whose near neighbours make room.
    Hover still names every category.

    >>> thinned_ticks([f"n{i}" for i in range(10)], 5.0, keep=(4,))
    ['n0', 'n4', 'n9']
    >>> thinned_ticks(["a", "b", "c"], 20.0)
    ['a', 'b', 'c']
    """
    step = max(1, int(-(-min_px // max(px_per_label, 1e-6))))
    if step == 1:
        return list(labels)
    kept = sorted({k for k in keep if 0 <= k < len(labels)})
    chosen = [i for i in range(0, len(labels), step) if all(abs(i - k) >= step for k in kept)]
    return [labels[i] for i in sorted(chosen + kept)]


def category_axis(labels: list[str], px_per_label: float, *, keep: tuple[int, ...] = (), **axis) -> dict:
    """A categorical axis showing ``thinned_ticks`` of ``labels`` (plotly would skip labels on its own, unevenly)."""
    ticks = thinned_ticks(labels, px_per_label, keep=keep)
    return {"type": "category", "tickmode": "array", "tickvals": ticks, "ticktext": ticks, **axis}


__all__ = ["empty_figure", "thinned_ticks", "category_axis"]
