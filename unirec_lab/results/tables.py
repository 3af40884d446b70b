"""Small text tables from run results (the per-scenario comparison the main job prints)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def _fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.{digits}f}"  # metrics keep 4 digits; rates/times 1
    return str(v)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in cells)])


def comparison_table(results: dict[str, dict[str, Any]], metrics: Sequence[str] = ("auc", "gauc", "logloss",
                                                                                   "ndcg@10"),
                     baseline: str | None = None) -> str:
    """Rows = scenario, columns = metric per model (+ AUC gain of each model over ``baseline``).

    ``results`` maps a model label to its ``result.json`` content.
    """
    models = list(results)
    scenarios: list[str] = []
    for r in results.values():
        for s in r["test"]:
            if s not in scenarios:
                scenarios.append(s)
    header = ["scenario"] + [f"{m} {k}" for k in metrics for m in models]
    others = [m for m in models if m != baseline]
    if baseline in results:
        header += [f"ΔAUC {m} vs {baseline}" for m in others]
    rows = []
    for s in scenarios:
        row: list[Any] = [s]
        for k in metrics:
            for m in models:
                row.append(results[m]["test"].get(s, {}).get(k, float("nan")))
        if baseline in results:
            b = results[baseline]["test"].get(s, {}).get("auc", float("nan"))
            for m in others:
                v = results[m]["test"].get(s, {}).get("auc", float("nan"))
                row.append(f"{v - b:+.4f}")
        rows.append(row)
    return markdown_table(header, rows)
