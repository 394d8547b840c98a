"""Training curves: loss, training accuracy and the evaluations made during training, against the step.

A run's ``log.jsonl`` holds one event per line (``{"event": "train", "step", "phase", "loss", ...}`` every
``log_every`` steps, ``{"event": "eval", "step", "sizes": [...]}`` every ``eval_every``). Curriculum phases
are drawn as vertical lines, because a curve's jumps line up with them (the copy-to-addition plateau,
the mod-23 dip). Failed branches of a run (e.g. the default's error-correction attempts that were
abandoned) can be overlaid: they are findings, and a reader should see where they left the main run.

>>> events = [{"event": "train", "step": s, "phase": "a" if s < 3 else "b", "loss": 1 / s, "frontier_acc": s / 4}
...           for s in (1, 2, 3, 4)]
>>> phase_starts(events)
[(1, 'a'), (3, 'b')]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

Events = list[dict[str, Any]]  # one run's log: train and eval events, in step order
LOSSES = ("loss", "lookup_loss")  # drawn on a log scale
ACCURACIES = ("frontier_acc", "fan1_acc", "fan2_acc", "fan3_acc")  # training accuracy on the frontier slots
#: ``frontier_acc`` is logged under one name but means what each training mode can measure: teacher-forced
#: steps score the frontier slots of one step, unrolled loops every node's value after the last step.
PANELS = ("loss (nats, log scale)", "training accuracy (teacher-forced: frontier slots; unrolled: every node after the last step)",
          "% graphs solved (free-running eval)")
BRANCH_COLORS = ("#7f7f7f", "#e377c2", "#bcbd22", "#17becf", "#8c564b")  # one per overlaid branch
MARKERS = (("o", "circle"), ("s", "square"), ("^", "triangle-up"), ("D", "diamond"), ("v", "triangle-down"))  # per evaluated N: (matplotlib, plotly)


def metrics_of(run_index: int, keys: tuple[str, ...]) -> tuple[str, ...]:
    """Branches overlaid on the main run show only the headline metric of a panel (the first key)."""
    return keys if run_index == 0 else keys[:1]


def series(events: Events, key: str) -> tuple[list[int], list[float]]:
    """Steps and values of one training metric (events that lack it are skipped)."""
    rows = [(e["step"], e[key]) for e in events if e.get("event") == "train" and e.get(key) is not None]
    return [s for s, _ in rows], [v for _, v in rows]


def eval_series(events: Events) -> dict[int, tuple[list[int], list[float]]]:
    """Per graph size N: the steps of the evaluations during training and the % of graphs solved."""
    out: dict[int, tuple[list[int], list[float]]] = {}
    for e in events:
        if e.get("event") != "eval":
            continue
        for size in e["sizes"]:
            steps, values = out.setdefault(size["n_nodes"], ([], []))
            steps.append(e["step"])
            values.append(100 * size["graph_acc"])
    return out


def phase_starts(events: Events) -> list[tuple[int, str]]:
    """``(first logged step, phase name)`` each time the logged phase changes."""
    starts: list[tuple[int, str]] = []
    for e in events:
        if e.get("event") == "train" and (not starts or starts[-1][1] != e["phase"]):
            starts.append((e["step"], e["phase"]))
    return starts


def training_figure(runs: dict[str, Events], *, title: str = "Training curves") -> go.Figure:
    """Interactive figure: three panels sharing the step axis. The first run is the main one, with every
    metric; the others are overlaid as dashed branches, one colour each, with only the loss, the frontier
    accuracy and the evaluations. Phase starts of the main run are vertical lines."""
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06, subplot_titles=PANELS)
    for i, (name, events) in enumerate(runs.items()):
        branch = {} if i == 0 else {"dash": "dash", "color": BRANCH_COLORS[(i - 1) % len(BRANCH_COLORS)]}
        for row, keys in ((1, LOSSES), (2, ACCURACIES)):
            for key in metrics_of(i, keys):
                x, y = series(events, key)
                if x:
                    fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=f"{name}: {key}", legendgroup=name,
                                             line={"width": 1.5 if key == keys[0] else 1, **branch}), row=row, col=1)
        for j, (n, (x, y)) in enumerate(sorted(eval_series(events).items())):
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=f"{name}: N={n}", legendgroup=name, line=branch,
                                     marker={"symbol": MARKERS[j % len(MARKERS)][1]}),
                          row=3, col=1)
    main = next(iter(runs.values()), [])
    starts = phase_starts(main)
    steps = [e["step"] for events in runs.values() for e in events if isinstance(e.get("step"), (int, float))]
    rows = phase_rows(starts, (min(steps), max(steps)) if steps else (0, 1))
    for (step, phase), row in zip(starts, rows):
        fig.add_vline(x=step, line={"color": "grey", "width": 1, "dash": "dot"})
        fig.add_annotation(x=step, y=1.0, yref="paper", text=phase, showarrow=False, xanchor="left", yanchor="bottom",
                           yshift=PHASE_ROW_PX * (row + 1) + 4, font={"size": PHASE_FONT_PX, "color": "#555"})
    band = PHASE_ROW_PX * (max(rows) + 2) if rows else 0
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], row=2, col=1)
    fig.update_yaxes(range=[-2, 102], row=3, col=1)
    fig.update_xaxes(title_text="training step", row=3, col=1)
    fig.update_layout(title=title, template="plotly_white", height=900 + band, legend={"font": {"size": 10}},
                      margin={"t": 70 + band})
    return fig


PHASE_FONT_PX, PHASE_ROW_PX = 12, 17
PLOT_WIDTH_PX = 1000  # the width phase labels are packed for (the app's page is about this wide at 1280 px)


def phase_rows(starts: list[tuple[int, str]], span: tuple[float, float], width_px: float = PLOT_WIDTH_PX) -> list[int]:
    """The row of each phase label above the plot: labels are horizontal and readable, so neighbours that would
    overlap go one row up (greedy, estimated text widths).

    >>> phase_rows([(0, "copy"), (10, "add"), (500, "grow")], (0, 1000))
    [0, 1, 0]
    """
    lo, hi = span
    px = width_px / max(hi - lo, 1)
    ends: list[float] = []  # per row, where its last label ends (pixels)
    rows = []
    for step, phase in starts:
        x0 = (step - lo) * px
        x1 = x0 + 0.62 * PHASE_FONT_PX * len(phase) + 10
        row = next((r for r, end in enumerate(ends) if end <= x0), len(ends))
        if row == len(ends):
            ends.append(x1)
        else:
            ends[row] = x1
        rows.append(row)
    return rows


def save_training_png(runs: dict[str, Events], path: str | Path, *, title: str = "Training curves") -> None:
    """The same three panels as a PNG (matplotlib: no browser needed), for the model card."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 8), dpi=100, sharex=True)
    for i, (name, events) in enumerate(runs.items()):
        branch = {} if i == 0 else {"ls": "--", "color": BRANCH_COLORS[(i - 1) % len(BRANCH_COLORS)]}
        label = "" if len(runs) == 1 else f"{name}: "
        for ax, keys in ((axes[0], LOSSES), (axes[1], ACCURACIES)):
            for key in metrics_of(i, keys):
                x, y = series(events, key)
                if x:
                    ax.plot(x, y, lw=1.4 if key == keys[0] else 0.8, label=label + key, **branch)
        for j, (n, (x, y)) in enumerate(sorted(eval_series(events).items())):
            axes[2].plot(x, y, marker=MARKERS[j % len(MARKERS)][0], ms=3, label=f"{label}N={n}", **branch)
    for step, phase in phase_starts(next(iter(runs.values()), [])):
        for ax in axes:
            ax.axvline(step, color="grey", lw=0.7, ls=":")
        axes[0].annotate(phase, (step, 1.0), xycoords=("data", "axes fraction"), rotation=90, fontsize=7,
                         color="grey", va="top", ha="left")
    axes[0].set_yscale("log")
    axes[1].set_ylim(0, 1.02)
    axes[2].set_ylim(-2, 102)
    axes[2].set_xlabel("training step")
    for ax, panel in zip(axes, PANELS):
        ax.set_title(panel, fontsize=9, loc="left")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
