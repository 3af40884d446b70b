"""PNG plot of one metric: per scenario, each model's seed mean with ± std error bars (one panel per group).

Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend switch, no display needed) and
writes no timestamp metadata, so the same inputs give the same bytes.
"""

from __future__ import annotations

import io
import math

from unirec_lab.results.aggregate import Aggregate
from unirec_lab.results.stats import lower_is_better


def plot_png(agg: Aggregate, metric: str, title: str | None = None, dpi: int = 120) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups = agg.groups or [None]
    width = max(6.0, 1.6 * max((agg.table.loc[agg.table["group"] == g.name, "scenario"].nunique()
                                for g in agg.groups), default=1) + 2.5)
    fig = Figure(figsize=(width, 3.2 * len(groups)), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(groups), 1, squeeze=False)[:, 0]
    arrow = "↓" if lower_is_better(metric) else "↑"
    for ax, g in zip(axes, groups):
        t = agg.table[(agg.table["metric"] == metric) & (agg.table["group"] == (g.name if g else None))]
        if t.empty or not t["n"].any():
            ax.text(0.5, 0.5, f"no data for metric {metric!r}", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        scenarios = list(dict.fromkeys(t["scenario"]))
        models = list(dict.fromkeys(t["model"]))
        span = 0.7
        for j, model in enumerate(models):
            d = t[t["model"] == model].set_index("scenario").reindex(scenarios)
            off = (j - (len(models) - 1) / 2) * span / max(len(models), 1)
            xs = [i + off for i in range(len(scenarios))]
            ys = d["mean"].to_numpy(dtype=float)
            err = [s if math.isfinite(s) else 0.0 for s in d["std"].to_numpy(dtype=float)]
            ax.errorbar(xs, ys, yerr=err, fmt="o", capsize=3, label=f"{model} (baseline)" if model == g.baseline
                        else model)
            for x, y, sig in zip(xs, ys, d["significant"].fillna(False)):
                if sig and math.isfinite(y):
                    ax.annotate("†", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=9)
        ax.set_xticks(range(len(scenarios)), scenarios)
        ax.set_xlim(-0.6, len(scenarios) - 0.4)
        ax.set_ylabel(f"{metric} {arrow}")
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(f"group {g.name}" + (f" ({', '.join(g.experiments)})" if g.experiments else ""), fontsize=10)
        ax.margins(y=0.15)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.suptitle((title or "Results") + f" — {metric}: mean ± std over seeds, † p < {agg.alpha:g} vs baseline",
                 fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def series_png(x_labels: list[str], series: dict[str, list[tuple[float, float, float]]], ylabel: str,
               title: str, dpi: int = 120) -> bytes:
    """One panel of lines: per series (e.g. static / updated / retrained), ``(value, ci_low, ci_high)`` at each
    x label (e.g. a replay window), drawn as points with CI error bars joined by a line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(5.0, 0.9 * len(x_labels) + 3.0), 3.4), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    n = max(len(series), 1)
    for j, (name, pts) in enumerate(series.items()):
        off = (j - (n - 1) / 2) * 0.08
        xs = [i + off for i in range(len(pts))]
        ys = [p[0] for p in pts]
        err = [[max(p[0] - p[1], 0.0) if math.isfinite(p[1]) else 0.0 for p in pts],
               [max(p[2] - p[0], 0.0) if math.isfinite(p[2]) else 0.0 for p in pts]]
        ax.errorbar(xs, ys, yerr=err, fmt="o-", capsize=3, label=name)
    ax.set_xticks(range(len(x_labels)), x_labels)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
