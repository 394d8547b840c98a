"""Figures of the analyses: one spec, two renderers (plotly for HTML and the app, matplotlib for PNG).

An analysis module builds ``Figure`` specs from its JSON result (``figures(result)``);
``workbench.analysis.results.figures_for`` finds that builder from ``result["analysis"]``, so the app
needs only the JSON. This layer draws specs and never imports an analysis:

    from workbench.analysis.results import figures_for
    from workbench.plots.analysis import to_plotly
    figs = [to_plotly(f) for f in figures_for(json.load(open("models/default/probes/probes.json")))]

A ``Figure`` holds panels (``Heatmap``, ``Lines``, ``Bars``) laid out in a grid; values may be None (missing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

@dataclass
class Heatmap:
    """A matrix z [row][column] with row labels ``y`` and column labels ``x``."""

    title: str
    z: list[list[float | None]]
    x: list[Any]
    y: list[Any]
    xlabel: str = ""
    ylabel: str = ""
    zmin: float | None = None
    zmax: float | None = None
    colorscale: str = "Viridis"
    annotate: bool = True  # print the values in the cells (small matrices)


@dataclass
class Chart:
    """Named series of y values over one x axis (``Lines`` draws them as curves, ``Bars`` as grouped bars)."""

    title: str
    x: list[Any]
    series: dict[str, list[float | None]]
    xlabel: str = ""
    ylabel: str = ""
    ymin: float | None = None
    ymax: float | None = None


@dataclass
class Lines(Chart):
    """Curves sharing an x axis; names in ``dashed`` are drawn dashed (baselines, chance)."""

    dashed: tuple[str, ...] = ()


@dataclass
class Bars(Chart):
    """Grouped bars: one group per category (``x``), one bar per series."""

    @property
    def categories(self) -> list[Any]:
        return self.x


Panel = Heatmap | Lines | Bars


@dataclass
class Figure:
    """Panels in a grid of ``cols`` columns, saved as ``<stem>.png`` and shown in the analysis' HTML."""

    stem: str
    title: str
    panels: list[Panel]
    cols: int = 2
    caption: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return max(1, math.ceil(len(self.panels) / self.cols))


def _clean(values):
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]


# ------------------------------------------------------------------------------------------ plotly
def to_plotly(fig: Figure):
    """A plotly figure of ``fig`` (subplots in a grid)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    cols = min(fig.cols, len(fig.panels)) or 1
    titles = [wrap_title(p.title, int(PLOTLY_WIDTH_PX / cols / 7.5)) for p in fig.panels]
    lines = max((t.count("<br>") + 1 for t in titles), default=1)
    height = (330 + 18 * (lines - 1)) * fig.rows + 80
    plot = height - 100 - 90  # margins: title above, legend below
    # between rows: the upper panel's tick labels and x title, then the lower panel's (wrapped) title, in pixels
    gap = min(0.3, (70 + 18 * lines) / plot) if fig.rows > 1 else 0.0
    out = make_subplots(rows=fig.rows, cols=cols, subplot_titles=titles,
                        horizontal_spacing=0.12, vertical_spacing=gap)
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf"]
    for i, p in enumerate(fig.panels):
        r, c = divmod(i, cols)
        at = {"row": r + 1, "col": c + 1}
        if isinstance(p, Heatmap):
            z = [_clean(row) for row in p.z]
            out.add_trace(go.Heatmap(z=z, x=[str(v) for v in p.x], y=[str(v) for v in p.y], zmin=p.zmin, zmax=p.zmax,
                                     colorscale=p.colorscale, showscale=(len(fig.panels) == 1),
                                     texttemplate="%{z:.2f}" if p.annotate and len(p.x) * len(p.y) <= 200 else None,
                                     hovertemplate=f"{p.ylabel}=%{{y}} {p.xlabel}=%{{x}}: %{{z:.3f}}<extra></extra>"), **at)
            out.update_yaxes(autorange="reversed", **at)
        elif isinstance(p, Lines):
            for j, (name, ys) in enumerate(p.series.items()):
                out.add_trace(go.Scatter(x=p.x, y=_clean(ys), name=name, mode="lines+markers", legendgroup=name,
                                         showlegend=name not in {t.name for t in out.data},
                                         line={"color": palette[j % len(palette)],
                                               "dash": "dash" if name in p.dashed else "solid"}), **at)
            if p.ymin is not None or p.ymax is not None:
                out.update_yaxes(range=[p.ymin, p.ymax], **at)
        else:
            for j, (name, ys) in enumerate(p.series.items()):
                out.add_trace(go.Bar(x=[str(c) for c in p.categories], y=_clean(ys), name=name, legendgroup=name,
                                     showlegend=name not in {t.name for t in out.data},
                                     marker_color=palette[j % len(palette)]), **at)
            if p.ymin is not None or p.ymax is not None:
                out.update_yaxes(range=[p.ymin, p.ymax], **at)
        out.update_xaxes(title_text=p.xlabel, **at)
        out.update_yaxes(title_text=p.ylabel, **at)
    out.update_annotations(font={"size": 13})  # the subplot titles
    out.update_layout(title=fig.title, template="plotly_white", height=height, barmode="group",
                      margin={"t": 100, "b": 90}, legend={"orientation": "h", "y": -50 / plot, "yanchor": "top"})
    return out


PLOTLY_WIDTH_PX = 1150  # the width a figure is laid out for (the app's pages at 1280 px; HTML reports)


def wrap_title(title: str, width: int) -> str:
    """``title`` broken into lines of at most ``width`` characters (``<br>``), so neighbouring subplot titles never meet.

    >>> wrap_title("Probe accuracy after the last layer, by step", 20)
    'Probe accuracy after<br>the last layer, by<br>step'
    """
    import textwrap

    return "<br>".join(textwrap.wrap(title, max(width, 8))) or title


def write_html(figs: list[Figure], path: str | Path, *, title: str, intro: str = "") -> None:
    """One HTML page holding every figure (plotly.js from the CDN, as the eval plots)."""
    parts = [f"<h1>{title}</h1>", f"<p>{intro}</p>" if intro else ""]
    for i, f in enumerate(figs):
        parts.append(to_plotly(f).to_html(full_html=False, include_plotlyjs="cdn" if i == 0 else False))
        if f.caption:
            parts.append(f"<p><em>{f.caption}</em></p>")
    html = f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>{''.join(parts)}</body></html>"
    Path(path).write_text(html)


# -------------------------------------------------------------------------------------- matplotlib
def save_png(fig: Figure, path: str | Path) -> None:
    """``fig`` as a PNG (matplotlib, no browser)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cols = min(fig.cols, len(fig.panels)) or 1
    mfig, axes = plt.subplots(fig.rows, cols, figsize=(5.2 * cols, 3.9 * fig.rows), dpi=90, squeeze=False)
    for ax in axes.flat[len(fig.panels):]:
        ax.set_visible(False)
    for p, ax in zip(fig.panels, axes.flat):
        if isinstance(p, Heatmap):
            z = np.array([[np.nan if v is None else v for v in row] for row in p.z], dtype=float)
            im = ax.imshow(z, aspect="auto", cmap="viridis", vmin=p.zmin, vmax=p.zmax, interpolation="nearest")
            ax.set_xticks(range(len(p.x)), [str(v) for v in p.x], fontsize=7, rotation=90 if len(p.x) > 12 else 0)
            ax.set_yticks(range(len(p.y)), [str(v) for v in p.y], fontsize=7)
            if p.annotate and z.size <= 120:
                for (r, c), v in np.ndenumerate(z):
                    if not np.isnan(v):
                        ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=6, color="w")
            mfig.colorbar(im, ax=ax, fraction=0.046)
        elif isinstance(p, Lines):
            for name, ys in p.series.items():
                y = np.array([np.nan if v is None else v for v in ys], dtype=float)
                ax.plot(list(range(len(p.x))) if isinstance(p.x[0], str) else p.x, y, "--" if name in p.dashed else "o-",
                        label=name, markersize=3)
            if isinstance(p.x[0], str):
                ax.set_xticks(range(len(p.x)), p.x, fontsize=7, rotation=45)
            ax.set_ylim(p.ymin, p.ymax)
            ax.grid(alpha=0.3)
            if len(p.series) > 1:
                ax.legend(fontsize=6)
        else:
            n = max(1, len(p.series))
            width = 0.8 / n
            for j, (name, ys) in enumerate(p.series.items()):
                y = np.array([np.nan if v is None else v for v in ys], dtype=float)
                ax.bar(np.arange(len(p.categories)) + (j - (n - 1) / 2) * width, y, width, label=name)
            ax.set_xticks(range(len(p.categories)), [str(c) for c in p.categories], fontsize=7,
                          rotation=45 if len(p.categories) > 8 else 0)
            ax.set_ylim(p.ymin, p.ymax)
            ax.grid(alpha=0.3, axis="y")
            if n > 1:
                ax.legend(fontsize=6)
        ax.set_title(p.title, fontsize=9)
        ax.set_xlabel(p.xlabel, fontsize=8)
        ax.set_ylabel(p.ylabel, fontsize=8)
    mfig.suptitle(fig.title, fontsize=11)
    mfig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (3.9 * fig.rows)))
    mfig.savefig(path)
    plt.close(mfig)


__all__ = ["Heatmap", "Chart", "Lines", "Bars", "Panel", "Figure", "to_plotly", "write_html", "save_png"]
