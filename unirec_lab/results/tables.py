"""The one table renderer: header + rows -> Markdown, LaTeX (booktabs ``tabular``) or CSV text.

Every table the package prints or writes goes through here (the report, the SASRec reproduction table, the
comparison ``unirec-compare`` prints, the per-run test metrics), so a formatting rule lives in one place. Callers
decide what a cell says; this module decides how a table is laid out and how a bare number is written.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from unirec_lab.utils.lazy import lazy_import

pd = lazy_import("pandas")  # imported on first use: a cached job never needs it


NAN = float("nan")
_TEX_ESCAPE = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_TEX_NONFINITE = {"inf": r"\infty", "-inf": r"-\infty", "nan": r"\mathrm{NaN}"}


def format_cell(v: Any, digits: int = 4) -> str:
    """A Markdown cell: floats with ``digits`` decimals (one, with thousands separators, from 100 up), else str."""
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.{digits}f}"  # metrics keep 4 digits; rates/times 1
    return str(v)


def fixed(v: float, digits: int) -> str:
    """A fixed-point number; ``inf`` / ``-inf`` / ``nan`` when not finite (a diverged run must stay visible)."""
    return f"{v:.{digits}f}" if math.isfinite(v) else str(v)


def tex_fixed(v: float, digits: int) -> str:
    """:func:`fixed` for LaTeX math mode (``\\infty``, ``\\mathrm{NaN}``)."""
    text = fixed(v, digits)
    return _TEX_NONFINITE.get(text, text)


def tex_escape(s: str) -> str:
    return "".join(_TEX_ESCAPE.get(c, c) for c in str(s))


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], pad: bool = True) -> str:
    """A GitHub Markdown table; ``pad``: columns padded to one width (for the console), else ``| a | b |``."""
    cells = [[format_cell(c) for c in r] for r in rows]
    if not pad:
        return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                          *("| " + " | ".join(r) + " |" for r in cells)])
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in cells)])


def latex_tabular(align: str, head: Sequence[Sequence[str] | str], rows: Sequence[Sequence[str]],
                  breaks: Iterable[int] = ()) -> list[str]:
    """Lines of a booktabs ``tabular``: ``head`` rows (a str is a line as is, e.g. a ``\\cmidrule``), a
    ``\\midrule``, the ``rows`` (cells already LaTeX) with a ``\\midrule`` before each index in ``breaks``."""
    def line(r: Sequence[str] | str) -> str:
        return r if isinstance(r, str) else " & ".join(r) + r" \\"

    rule_before = set(breaks)
    body = [x for i, r in enumerate(rows) for x in ([r"\midrule"] if i in rule_before else []) + [line(r)]]
    return [rf"\begin{{tabular}}{{{align}}}", r"\toprule", *map(line, head), r"\midrule", *body, r"\bottomrule",
            r"\end{tabular}"]


def csv_table(header: Sequence[str], rows: Iterable[Sequence[Any]], float_format: str = "%.10g") -> str:
    """CSV text (header line, ``\\n`` line ends); NaN / None are empty, floats in ``float_format``."""
    return pd.DataFrame(list(rows), columns=list(header)).to_csv(index=False, float_format=float_format)


def comparison_table(tests: dict[str, dict[str, dict[str, Any]]], metrics: Sequence[str] = ("auc", "gauc", "logloss",
                                                                                            "ndcg@10"),
                     baseline: str | None = None) -> str:
    """Rows = scenario, columns = metric per model (+ AUC gain of each model over ``baseline``).

    ``tests`` maps a model label to its record's ``test`` (``{scenario: {metric: value}}``).
    """
    models = list(tests)
    scenarios = list(dict.fromkeys(s for t in tests.values() for s in t))
    header = ["scenario"] + [f"{m} {k}" for k in metrics for m in models]
    others = [m for m in models if m != baseline]
    if baseline in tests:
        header += [f"ΔAUC {m} vs {baseline}" for m in others]
    rows = []
    for s in scenarios:
        row: list[Any] = [s, *(tests[m].get(s, {}).get(k, NAN) for k in metrics for m in models)]
        if baseline in tests:
            b = tests[baseline].get(s, {}).get("auc", NAN)
            row += [f"{tests[m].get(s, {}).get('auc', NAN) - b:+.4f}" for m in others]
        rows.append(row)
    return markdown_table(header, rows)


def scenario_metrics_table(model: str, description: str, test: dict[str, dict[str, Any]]) -> str:
    """A run's per-scenario test metrics (the metrics of its first scenario, then ``rows``), titled."""
    metrics = [m for m in next(iter(test.values())) if m != "rows"]
    rows = [[s, *[v.get(m, NAN) for m in metrics], v.get("rows", "")] for s, v in test.items()]
    return f"test metrics — {model} ({description})\n" + markdown_table(["scenario", *metrics, "rows"], rows)
