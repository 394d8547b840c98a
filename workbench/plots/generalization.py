"""Accuracy against graph size: one curve per model, the paper's curves beside them, training range shaded."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go

from workbench.paper import PAPER_ACCURACY, PAPER_SIZES, TRAIN_MAX_NODES

Curves = dict[str, list[dict]]  # model name -> [{"n_nodes": N, "graph_acc": x, "node_acc": y}, ...]


def accuracy_figure(curves: Curves, *, paper: tuple[str, ...] = ("Discrete LSS + error correction", "Discrete LSS", "Continuous LSS")) -> go.Figure:
    """Plotly figure of % graphs fully solved against N."""
    fig = go.Figure()
    fig.add_vrect(x0=0, x1=TRAIN_MAX_NODES, fillcolor="lightgrey", opacity=0.3, line_width=0,
                  annotation_text="training sizes", annotation_position="top left")
    for label in paper:
        fig.add_trace(go.Scatter(x=list(PAPER_SIZES), y=list(PAPER_ACCURACY[label]), name=f"paper: {label}",
                                 mode="lines", line={"dash": "dot", "width": 1.5}, opacity=0.6))
    for name, rows in curves.items():
        fig.add_trace(go.Scatter(x=[r["n_nodes"] for r in rows], y=[100 * r["graph_acc"] for r in rows],
                                 name=name, mode="lines+markers",
                                 customdata=[[100 * r["node_acc"], r.get("mean_iterations", float("nan"))] for r in rows],
                                 hovertemplate="N=%{x}: %{y:.1f}% solved, %{customdata[0]:.1f}% nodes, %{customdata[1]:.1f} steps"))
    fig.update_layout(title="Generalization: % of graphs fully solved against graph size N",
                      xaxis_title="N (nodes)", yaxis_title="% graphs fully solved", yaxis_range=[-2, 102],
                      template="plotly_white", legend={"orientation": "h", "y": -0.2})
    return fig


def robustness_figure(families: Curves, *, title: str = "Robustness") -> go.Figure:
    """Heatmap of % graphs fully solved: one row per graph family, one column per N (nodes right on hover)."""
    sizes = sorted({r["n_nodes"] for rows in families.values() for r in rows})
    names = list(families)
    by = {f: {r["n_nodes"]: r for r in rows} for f, rows in families.items()}
    solved = [[100 * by[f][n]["graph_acc"] if n in by[f] else None for n in sizes] for f in names]
    nodes = [[100 * by[f][n]["node_acc"] if n in by[f] else None for n in sizes] for f in names]
    text = [[f"{v:.1f}" if v is not None else "" for v in row] for row in solved]
    fig = go.Figure(go.Heatmap(z=solved, x=[f"N={n}" for n in sizes], y=names, zmin=0, zmax=100, colorscale="RdYlGn",
                               text=text, texttemplate="%{text}", customdata=nodes, colorbar={"title": "% solved"},
                               hovertemplate="%{y}, %{x}: %{z:.1f}% graphs solved, %{customdata:.1f}% nodes right<extra></extra>"))
    fig.update_layout(title=title, template="plotly_white", height=120 + 40 * len(names),
                      yaxis={"autorange": "reversed"}, margin={"l": 90, "r": 20, "t": 50, "b": 40})
    return fig


def save_accuracy_png(curves: Curves, path: str | Path, *, paper: tuple[str, ...] = ("Discrete LSS + error correction", "Discrete LSS", "Continuous LSS")) -> None:
    """The same figure as a PNG (matplotlib: no browser needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    ax.axvspan(0, TRAIN_MAX_NODES, color="lightgrey", alpha=0.4, label="training sizes")
    for label in paper:
        ax.plot(PAPER_SIZES, PAPER_ACCURACY[label], ":", alpha=0.6, label=f"paper: {label}")
    for name, rows in curves.items():
        ax.plot([r["n_nodes"] for r in rows], [100 * r["graph_acc"] for r in rows], "o-", label=name)
    ax.set_xlabel("N (nodes)")
    ax.set_ylabel("% graphs fully solved")
    ax.set_ylim(-2, 102)
    ax.set_title("% of graphs fully solved against graph size")
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
