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


__all__ = ["empty_figure"]
