"""The discrete bottleneck's codes: usage per factor and state, entropy, and what changes from one state to the next.

>>> from workbench.run_view import RunView
>>> fig = usage_figure(RunView.example(), factor=3, state=1)
>>> fig.data[0].type, fig.data[0].z.shape[0]  # one row per code in use (the example's states are all zeros)
('heatmap', 1)
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from workbench.run_view import EVENT_KINDS, RunView
from workbench.task.vocab import FACTORS

FACTOR_COLORS = ("#1f77b4", "#9467bd", "#8c564b", "#ff7f0e")
EVENT_COLORS = {"written right": "#2ca02c", "written wrong": "#d62728", "corrected": "#17becf",
                "broken": "#e377c2", "rewritten wrong": "#ff7f0e"}


def _layout(fig: go.Figure, title: str, height: int, **kw) -> go.Figure:
    fig.update_layout(title={"text": title, "font": {"size": 14}}, template="plotly_white", height=height,
                      margin={"l": 10, "r": 10, "t": 40, "b": 40}, **kw)
    return fig


def always_present(run: RunView, factor: int) -> list[int]:
    """The codes that fill most positions in every state (N/A, and EMPTY of the value factor): left out of the
    colour scale, or they would wash out every other code."""
    sizes = run.vocab.sizes[factor]
    return {0: [], 1: [sizes - 1], 2: [sizes - 1], 3: [run.vocab.value_na, run.vocab.empty]}.get(factor, [])


def usage_figure(run: RunView, *, factor: int, state: int | None = None) -> go.Figure:
    """State x code heatmap of how many positions hold each code of ``factor`` (codes never used are left out).

    The colour scale ends at the largest count of the informative codes; the always-present codes (N/A,
    EMPTY) saturate it, and the colour bar says so (hover gives every count)."""
    from workbench.plots.common import category_axis

    counts = run.code_usage(factor)  # [state, code]
    used = np.nonzero(counts.sum(0))[0]
    labels = run.code_labels(factor)
    ignored = [c for c in always_present(run, factor) if c in used]
    rest = [c for c in used if c not in ignored]
    zmax = max(int(counts[:, rest].max()) if rest else int(counts.max()), 1)
    bar = "positions" + (f"<br>({' and '.join(labels[c] for c in ignored)}<br>beyond the scale)" if ignored else "")
    rows = [labels[c] for c in used]
    height = int(min(800, max(280, 110 + 16 * len(used))))
    fig = go.Figure(go.Heatmap(z=counts[:, used].T, x=list(range(run.n_steps + 1)), y=rows, zmin=0, zmax=zmax,
                               colorscale="Blues", hovertemplate="state %{x}, code %{y}: %{z} positions<extra></extra>",
                               colorbar={"title": {"text": bar, "font": {"size": 10}}, "thickness": 12}))
    if state is not None:
        fig.add_vline(x=run.clamp(state), line={"color": "#d62728", "width": 2, "dash": "dot"})
    unused = counts.shape[1] - len(used)
    return _layout(fig, f"{FACTORS[factor]} codes in use per state ({len(used)} used, {unused} never)", height,
                   xaxis={"title": "state (0 = input)", "dtick": 1 if run.n_steps <= 30 else None},
                   yaxis=category_axis(rows, (height - 80) / max(len(used), 1), autorange="reversed", tickfont={"size": 10}))


def entropy_figure(run: RunView, *, state: int | None = None) -> go.Figure:
    """Entropy (bits) of every factor's code distribution over the positions, per state."""
    ent = run.entropy()
    fig = go.Figure([go.Scatter(x=list(range(run.n_steps + 1)), y=ent[f], name=FACTORS[f], mode="lines+markers",
                                line={"color": FACTOR_COLORS[f]}) for f in range(len(FACTORS))])
    if state is not None:
        fig.add_vline(x=run.clamp(state), line={"color": "#d62728", "width": 2, "dash": "dot"})
    return _layout(fig, "Entropy of each factor's codes", 300, xaxis={"title": "state"}, yaxis={"title": "bits"},
                   legend={"orientation": "h", "y": -0.3})


def changes_figure(run: RunView, *, state: int | None = None) -> go.Figure:
    """Per step: positions whose code changed (lines, per factor) and what happened to node values (stacked bars)."""
    steps = list(range(1, run.n_steps + 1))  # the state each step wrote
    fig = go.Figure()
    for kind, counts in run.value_transitions().items():
        fig.add_trace(go.Bar(x=steps, y=counts, name=f"value {kind}", marker_color=EVENT_COLORS[kind], opacity=0.75))
    changes = run.code_changes()
    for f in range(len(FACTORS)):
        fig.add_trace(go.Scatter(x=steps, y=changes[f], name=f"{FACTORS[f]} codes changed", mode="lines+markers",
                                 line={"color": FACTOR_COLORS[f], "dash": "dot"}))
    if state is not None:
        fig.add_vline(x=run.clamp(state), line={"color": "#d62728", "width": 2, "dash": "dot"})
    return _layout(fig, "Changes between states (bars: nodes' values by kind; lines: positions per factor)", 340,
                   barmode="stack", xaxis={"title": "state written (step + 1)", "dtick": 1 if run.n_steps <= 30 else None},
                   yaxis={"title": "count"}, legend={"orientation": "h", "y": -0.35})


def transition_figure(run: RunView, *, factor: int, state: int) -> go.Figure:
    """Counts of (code in ``state``, code in ``state + 1``) for ``factor``, over the positions (codes in use only)."""
    t = min(run.clamp(state), max(run.n_steps - 1, 0))
    m = run.transitions(factor, t)
    used = np.nonzero(m.sum(0) + m.sum(1))[0]
    labels = run.code_labels(factor)
    sub = m[np.ix_(used, used)]
    changed = int(m.sum() - np.trace(m))
    fig = go.Figure(go.Heatmap(z=np.log1p(sub), x=[labels[c] for c in used], y=[labels[c] for c in used],
                               customdata=sub, colorscale="Blues", showscale=False,
                               hovertemplate="%{y} -> %{x}: %{customdata} positions<extra></extra>"))
    from workbench.plots.common import category_axis

    rows = [labels[c] for c in used]
    height = int(min(800, max(300, 120 + 14 * len(used))))
    return _layout(fig, f"{FACTORS[factor]}: state {t} -> {t + 1} ({changed} positions changed code)", height,
                   xaxis=category_axis(rows, 480 / max(len(used), 1), title=f"code in state {t + 1}", tickfont={"size": 10}),
                   yaxis=category_axis(rows, (height - 80) / max(len(used), 1), title=f"code in state {t}",
                                       autorange="reversed", tickfont={"size": 10}))


__all__ = ["always_present", "usage_figure", "entropy_figure", "changes_figure", "transition_figure", "EVENT_COLORS", "EVENT_KINDS"]
