"""Plotly figures of the notebooks: one run's state grid, schedules, stepwise accuracy, attention, recovery.

Each builder takes what a ``workbench.hooks`` call returns (a ``Trajectory``, an ``Injection``) or plain
arrays, and returns a ``plotly.graph_objects.Figure``; nothing here runs a model.

Steps are 0-based as everywhere in the workbench: column ``input`` is what step 0 reads, column ``t``
the state after step t, so a node of depth d written on the algorithmic schedule turns right in column d.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.task.config import pool_name
from workbench.task.vocab import Vocab

if TYPE_CHECKING:  # only for annotations
    from workbench.hooks.interventions import Injection
    from workbench.hooks.decoded import Trajectory

#: cell classes of the state grid, with their colours
EMPTY, WRONG, RIGHT = 0, 1, 2
_CLASS_COLOURS = ((EMPTY, "#e6e6e6", "not written"), (WRONG, "#e4572e", "wrong"), (RIGHT, "#59a14f", "right"))
_TEMPLATE = "plotly_white"


def step_labels(n_steps: int) -> list[str]:
    """Column labels of a trajectory: ``input`` then the steps 0..n_steps-1.

    >>> step_labels(3)
    ['input', '0', '1', '2']
    """
    return ["input", *map(str, range(n_steps))]


def token_labels(tokens: np.ndarray, vocab: Vocab, names: Mapping[int, str] | None = None) -> list[str]:
    """A short label per position of one sequence [pos, factor] (``Vocab.describe``), pool names replaced by ``names``.

    names: pool index -> the user's name (invert the mapping of ``problems_to_graphs``).

    >>> vocab = Vocab(n_names=8, n_values=23)
    >>> token_labels(np.array([[2, 8, 3, 5], [5, 8, 3, 23], [0, 3, 3, 24]]), vocab, {3: "price"})
    ['5', '=', 'price=?']
    """
    labels = [vocab.describe(code) for code in np.asarray(tokens)]
    if not names:
        return labels
    out = []
    for label in labels:
        head, sep, tail = label.partition("=")
        if head.startswith("x_") and head[2:].isdigit() and int(head[2:]) in names:
            label = names[int(head[2:])] + sep + tail
        out.append(label)
    return out


def cell_classes(traj: Trajectory, b: int, empty: int) -> np.ndarray:
    """[node, step + 1] classes of graph ``b``'s values: ``EMPTY`` (not written), ``WRONG`` or ``RIGHT``."""
    n = int(traj.node_mask[b].sum())
    values = traj.values[:, b, :n].T.numpy()  # [node, step + 1]
    right = traj.correct[:, b, :n].T.numpy()
    return np.where(right, RIGHT, np.where(values == empty, EMPTY, WRONG))


def state_grid(traj: Trajectory, b: int = 0, *, names: Sequence[str] | None = None, empty: int | None = None,
               mark: tuple[np.ndarray, int] | None = None, title: str | None = None) -> go.Figure:
    """Graph ``b``'s node values at every step: rows are nodes (model order), columns the states.

    Cells are coloured not written / wrong / right and print the value; a dot in a cell's corner marks
    a value that the step changed. ``mark = (mask [node] bool, step)`` (e.g. an injection's mask and
    step) outlines those nodes' cells in the column of the state that ``step`` read.

    >>> from workbench.model.config import ModelConfig
    >>> from workbench.model.looped import LoopedModel
    >>> from workbench.task.config import TaskConfig
    >>> from workbench.hooks.interventions import trajectory
    >>> model = LoopedModel(ModelConfig(n_layers=1, n_heads=2, d_model=16), TaskConfig(n_names=8))
    >>> fig = state_grid(trajectory(model, "a = 3\\nb = a + a", n_steps=2), names=["a", "b"])
    >>> fig.layout.yaxis.ticktext
    ('a (d0)', 'b (d1)')
    """
    empty = traj.tokens.vocab.empty if empty is None else empty
    n = int(traj.node_mask[b].sum())
    depth = traj.depth[b, :n].tolist()
    rows = [f"{names[i] if names is not None else pool_name(int(traj.tokens.graphs.names[b, i]))} (d{depth[i]})"
            for i in range(n)]
    cols = step_labels(traj.n_steps)
    classes = cell_classes(traj, b, empty)
    values = traj.values[:, b, :n].T.numpy()
    text = np.where(values == empty, "·", values.astype(str))
    truth = traj.truth[b, :n].tolist()
    hover = [[f"{rows[i]}, {'input' if j == 0 else f'after step {j - 1}'}: {text[i, j]} (true {truth[i]})"
              for j in range(len(cols))] for i in range(n)]
    scale = []
    for k, (_, colour, _) in enumerate(_CLASS_COLOURS):
        scale += [[k / 3, colour], [(k + 1) / 3, colour]]
    fig = go.Figure(go.Heatmap(z=classes, x=list(range(len(cols))), y=list(range(n)), text=text, texttemplate="%{text}",
                               hovertext=hover, hoverinfo="text", colorscale=scale, zmin=-0.5, zmax=2.5,
                               showscale=False, xgap=2, ygap=2, showlegend=False))
    for k, colour, label in _CLASS_COLOURS:  # legend entries for the cell colours
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=label,
                                 marker={"symbol": "square", "size": 12, "color": colour}))
    t_idx, n_idx = np.nonzero(traj.changed[:, b, :n].numpy())  # [step, node]
    fig.add_trace(go.Scatter(x=t_idx + 1 + 0.36, y=n_idx - 0.28, mode="markers", name="changed by this step",
                             marker={"symbol": "circle", "size": 5, "color": "black"}, hoverinfo="skip"))
    if mark is not None:
        mask, step = mark
        hit = np.flatnonzero(np.asarray(mask)[:n])
        for i in hit:
            fig.add_shape(type="rect", x0=step - 0.5, x1=step + 0.5, y0=i - 0.5, y1=i + 0.5,
                          line={"color": "black", "width": 3})
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="injected error",
                                 marker={"symbol": "square-open", "size": 12, "color": "black", "line": {"width": 3}}))
    fig.update_yaxes(autorange="reversed", title="node (model order, depth)", tickvals=list(range(n)), ticktext=rows,
                     showgrid=False, zeroline=False)
    fig.update_xaxes(title="state after step t (input: what step 0 reads)", tickvals=list(range(len(cols))),
                     ticktext=cols, showgrid=False, zeroline=False, range=[-0.5, len(cols) - 0.5])
    fig.update_layout(title=title or "Node values at every step", template=_TEMPLATE, height=150 + 30 * n,
                      width=max(560, 260 + 60 * len(cols)), plot_bgcolor="white")
    return fig


def schedule_figure(traj: Trajectory, *, which: str = "first_correct", title: str | None = None) -> go.Figure:
    """Counts of nodes by depth and by the step they turned right (``first_correct``) or stayed right (``settled``).

    A model that follows the algorithmic schedule puts every node on the diagonal (step = depth);
    the last column counts the nodes that never got (or did not end) right.
    """
    step = getattr(traj, which)[traj.node_mask].numpy()  # [real nodes]
    depth = traj.depth[traj.node_mask].numpy()
    n_depth, n_steps = int(depth.max()) + 1, traj.n_steps
    counts = np.zeros((n_depth, n_steps + 1), dtype=np.int64)
    np.add.at(counts, (depth, np.where(step >= 0, step, n_steps)), 1)
    x = [*map(str, range(n_steps)), "never"]
    fig = go.Figure(go.Heatmap(z=counts, x=x, y=list(range(n_depth)), colorscale="Blues", texttemplate="%{z}",
                               hovertemplate="depth %{y}, step %{x}: %{z} nodes<extra></extra>"))
    diagonal = [d for d in range(n_depth) if d < n_steps]
    fig.add_trace(go.Scatter(x=[str(d) for d in diagonal], y=diagonal, mode="markers", name="step = depth",
                             marker={"symbol": "square-open", "size": 18, "color": "#e4572e"}))
    verb = "first holds" if which == "first_correct" else "holds for good"
    fig.update_layout(title=title or f"When a node {verb} its true value, by depth", template=_TEMPLATE,
                      xaxis={"title": "step (0-based)", "type": "category"}, yaxis={"title": "depth", "dtick": 1},
                      legend={"orientation": "h", "y": -0.2})
    return fig


def stepwise_figure(trajectories: Mapping[str, Trajectory], *, n_steps: int | None = None,
                    title: str = "Accuracy after every step") -> go.Figure:
    """% of nodes right (solid) and % of graphs fully solved (dashed) after each step, one colour per run.

    A run that stopped early stays at its fixed point, so its last state carries on to ``n_steps``.
    """
    longest = n_steps or max(t.n_steps for t in trajectories.values())
    fig = go.Figure()
    for i, (label, traj) in enumerate(trajectories.items()):
        colour = _colour(i)
        correct = traj.correct[1:]  # [step, batch, node]
        node_acc = 100 * (correct.sum((1, 2)) / traj.node_mask.sum()).numpy()
        solved = 100 * (correct | ~traj.node_mask).all(-1).float().mean(-1).numpy()
        node_acc, solved = _extend(node_acc, longest), _extend(solved, longest)
        x = list(range(longest))
        fig.add_trace(go.Scatter(x=x, y=node_acc, name=f"{label}: % nodes right", line={"color": colour}))
        fig.add_trace(go.Scatter(x=x, y=solved, name=f"{label}: % graphs solved", line={"color": colour, "dash": "dash"}))
    fig.update_layout(title=title, template=_TEMPLATE, xaxis_title="after step t (0-based)", yaxis_title="%",
                      yaxis_range=[-2, 102], legend={"orientation": "h", "y": -0.25})
    return fig


def attention_figure(pattern: np.ndarray, labels: Sequence[str], *, title: str = "Attention pattern",
                     highlight: Mapping[str, Sequence[tuple[int, int]]] | None = None) -> go.Figure:
    """One head's pattern [query, key] with token labels on both axes.

    highlight: legend label -> (query, key) cells to outline (e.g. the true operands of each result).
    """
    pattern = np.asarray(pattern, dtype=np.float32)
    ticks = [f"{i}:{label}" for i, label in enumerate(labels)]
    fig = go.Figure(go.Heatmap(z=pattern, x=ticks, y=ticks, colorscale="Viridis", zmin=0, zmax=1,
                               hovertemplate="query %{y}<br>key %{x}<br>%{z:.3f}<extra></extra>"))
    symbols = ("square-open", "circle-open", "diamond-open")
    for i, (label, cells) in enumerate((highlight or {}).items()):
        cells = list(cells)
        fig.add_trace(go.Scatter(x=[ticks[k] for _, k in cells], y=[ticks[q] for q, _ in cells], mode="markers",
                                 name=label, marker={"symbol": symbols[i % 3], "size": 9, "color": _colour(i + 1),
                                                     "line": {"width": 2}}))
    size = max(420, 14 * len(labels) + 200)
    fig.update_layout(title=title, template=_TEMPLATE, width=size + 120, height=size,
                      xaxis={"title": "key", "tickfont": {"size": 8}, "type": "category"},
                      yaxis={"title": "query", "tickfont": {"size": 8}, "autorange": "reversed", "type": "category"},
                      legend={"orientation": "h", "y": -0.25})
    return fig


def routing_figure(scores: Mapping[str, np.ndarray], *, baseline: Mapping[str, np.ndarray] | None = None,
                   title: str = "Attention routing from each result position") -> go.Figure:
    """Side-by-side heatmaps, one per score: rows ``L{layer}.H{head}``, columns steps.

    scores: label -> [step, layer, head] attention mass (0..1). baseline: label -> [step] the same mass
    under uniform causal attention, shown in the hover text for comparison.

    >>> fig = routing_figure({"copy": np.zeros((3, 2, 4)), "induction": np.ones((3, 2, 4))})
    >>> len(fig.data), fig.data[0].y[-1]
    (2, 'L1.H3')
    """
    labels = list(scores)
    fig = make_subplots(rows=1, cols=len(labels), subplot_titles=labels, shared_yaxes=True, horizontal_spacing=0.04)
    for i, label in enumerate(labels):
        s = np.asarray(scores[label], dtype=np.float32)  # [step, layer, head]
        n_steps, n_layers, n_heads = s.shape
        z = s.reshape(n_steps, n_layers * n_heads).T  # [layer * head, step]
        rows = [f"L{l}.H{h}" for l in range(n_layers) for h in range(n_heads)]
        base = np.asarray(baseline[label]) if baseline and label in baseline else None
        hover = [[f"{rows[r]}, step {t}: {z[r, t]:.2f}" + ("" if base is None else f" (uniform: {base[t]:.2f})")
                  for t in range(n_steps)] for r in range(len(rows))]
        fig.add_trace(go.Heatmap(z=z, x=list(range(n_steps)), y=rows, zmin=0, zmax=1, colorscale="Viridis",
                                 texttemplate="%{z:.2f}", hovertext=hover, hoverinfo="text",
                                 showscale=i == len(labels) - 1), row=1, col=i + 1)
        fig.update_xaxes(title_text="step", dtick=1, row=1, col=i + 1)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=title, template=_TEMPLATE, height=200 + 22 * z.shape[0])
    return fig


def recovery_figure(injections: Mapping[str, Injection], *, n_after: int = 6,
                    title: str = "Recovery after an injected error") -> go.Figure:
    """Per model: % of injected errors (``Injection.was_error``) holding their true value again, and % of graphs
    fully solved, after the injection.

    x = steps after the one that read the error (0: that step's own output). A model that repairs in
    one step jumps to its clean level at 0.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=["injected nodes right again", "graphs fully solved"])
    x = list(range(n_after))
    for i, (label, inj) in enumerate(injections.items()):
        colour = _colour(i)
        after = inj.corrupted.correct[inj.step + 1:]  # [step, batch, node] states after the injected step on
        errors = inj.was_error  # an injected node the clean run had not written yet is computed later, not repaired
        repaired = 100 * (after & errors).sum((1, 2)).numpy() / max(int(errors.sum()), 1)
        solved = 100 * (after | ~inj.corrupted.node_mask).all(-1).float().mean(-1).numpy()
        clean = inj.clean.correct[-1]
        clean_solved = 100 * float((clean | ~inj.clean.node_mask).all(-1).float().mean())
        fig.add_trace(go.Scatter(x=x, y=_extend(repaired, n_after), name=label, line={"color": colour},
                                 legendgroup=label), row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=_extend(solved, n_after), name=label, line={"color": colour},
                                 legendgroup=label, showlegend=False), row=1, col=2)
        fig.add_trace(go.Scatter(x=x, y=[clean_solved] * n_after, name=f"{label}: without the error",
                                 line={"color": colour, "dash": "dot"}, legendgroup=label), row=1, col=2)
    fig.update_xaxes(title_text="steps after the step that read the error", dtick=1)
    fig.update_yaxes(title_text="%", range=[-2, 102])
    fig.update_layout(title=title, template=_TEMPLATE, legend={"orientation": "h", "y": -0.3})
    return fig


def _extend(series: np.ndarray, length: int) -> np.ndarray:
    """``series`` cut or padded with its last value to ``length`` (a stopped run stays at its fixed point)."""
    series = np.asarray(series, dtype=np.float64)
    if len(series) >= length:
        return series[:length]
    fill = series[-1] if len(series) else np.nan
    return np.concatenate([series, np.full(length - len(series), fill)])


def _colour(i: int) -> str:
    palette = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#edc948")
    return palette[i % len(palette)]


__all__ = ["step_labels", "token_labels", "cell_classes", "state_grid", "schedule_figure", "stepwise_figure",
           "attention_figure", "routing_figure", "recovery_figure"]
