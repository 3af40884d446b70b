"""Statistics over seeds: mean, sample std, gain over the baseline, paired t-test (and Wilcoxon), best cell.

Conventions are in ``aggregate.py``'s docstring; this module turns the per-run values of one config group into
the rows of the long table (one per model x scenario x metric, ``TABLE_COLUMNS``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import pandas as pd
from scipy import stats

from unirec_lab.results.grouping import Group

WILCOXON_MIN_PAIRS = 6
TABLE_COLUMNS = ["group", "config_sig", "experiment", "model", "is_baseline", "scenario", "metric",
                 "lower_is_better", "mean", "std", "n", "gain", "p_value", "n_pairs", "p_wilcoxon", "significant",
                 "best", "note"]
VS_FIELDS = ("gain", "p_value", "n_pairs", "significant")  # per further baseline b: <field>_vs_<b>


def vs_column(field: str, baseline: str) -> str:
    return f"{field}_vs_{baseline}"


def table_columns(extra: Sequence[str] = ()) -> list[str]:
    """The long table's columns: ``TABLE_COLUMNS`` and the comparison with each further baseline."""
    return TABLE_COLUMNS + [vs_column(f, b) for b in extra for f in VS_FIELDS]


def lower_is_better(metric: str) -> bool:
    return "loss" in metric.lower()


def paired(model: pd.Series, base: pd.Series) -> tuple[float, float, int, str]:
    """(p t-test, p Wilcoxon, pairs, note) over the seeds both series have (indexed by seed)."""
    both = pd.concat([model.rename("m"), base.rename("b")], axis=1, join="inner").dropna().sort_index()
    n = len(both)
    if n < 2:
        return math.nan, math.nan, n, f"p n/a: {n} seed(s) paired with the baseline (need >= 2)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = float(stats.ttest_rel(both["m"], both["b"]).pvalue)
        pw = math.nan
        if n >= WILCOXON_MIN_PAIRS:
            try:
                pw = float(stats.wilcoxon(both["m"], both["b"]).pvalue)
            except ValueError:
                pw = math.nan
    note = "" if math.isfinite(p) else "p n/a: the paired differences have zero variance"
    return p, pw, n, note


def sample_std(s: pd.Series) -> float:
    """Sample std over seeds; NaN for one seed or when a value is not finite (no warning for inf - inf)."""
    if len(s) < 2:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(s.std(ddof=1, skipna=False))


def _vs_baseline(s: pd.Series, base: pd.Series, lib: bool, mean: float, alpha: float) -> dict:
    """Gain (sign-flipped for lower-is-better) and the paired test of one model's seeds against the baseline's."""
    out: dict = {}
    b = float(base.mean(skipna=False))
    if b != 0:
        out["gain"] = ((b - mean) if lib else (mean - b)) / abs(b)
    p, pw, n, note = paired(s, base)
    out.update(p_value=p, p_wilcoxon=pw, n_pairs=n, note=note, significant=bool(math.isfinite(p) and p < alpha))
    return out


def cell_rows(g: Group, cell: pd.DataFrame, models: list[str], sc: str, metric: str, alpha: float) -> list[dict]:
    """The table rows of one scenario x metric of group ``g``: one per model, the baseline first."""
    rec = cell[cell["recorded"].astype(bool)]  # a recorded NaN / inf stays (and shows), absent ones go
    series = {m: rec[rec["model"] == m].set_index("seed")["value"] for m in models}
    rows = _main_rows(g, cell, series, models, sc, metric, alpha)
    for name, label in g.extra_baselines.items():
        other = series.get(label) if label else None
        for row in rows:
            m = row["model"]
            vals = {"gain": math.nan, "p_value": math.nan, "n_pairs": 0, "significant": False}
            if m != label and other is not None and len(other) and len(series[m]):
                vs = _vs_baseline(series[m], other, row["lower_is_better"], row["mean"], alpha)
                vals.update({f: vs[f] for f in VS_FIELDS if f in vs})
            row.update({vs_column(f, name): v for f, v in vals.items()})
    return rows


def _main_rows(g: Group, cell: pd.DataFrame, series: dict[str, pd.Series], models: list[str], sc: str, metric: str,
               alpha: float) -> list[dict]:
    """The rows with mean, std, best and the comparison with the main baseline."""
    base = series.get(g.baseline) if g.baseline else None
    lib = lower_is_better(metric)
    means = {m: float(s.mean(skipna=False)) if len(s) else math.nan for m, s in series.items()}
    finite = [v for v in means.values() if math.isfinite(v)]
    best = (min(finite) if lib else max(finite)) if finite else math.nan
    rows = []
    for m in models:
        s = series[m]
        row = {"group": g.name, "config_sig": g.signature, "experiment": ",".join(g.experiments), "model": m,
               "is_baseline": m == g.baseline, "scenario": sc, "metric": metric, "lower_is_better": lib,
               "mean": means[m], "std": sample_std(s), "n": len(s), "gain": math.nan, "p_value": math.nan,
               "n_pairs": 0, "p_wilcoxon": math.nan, "significant": False, "best": bool(means[m] == best),
               "note": ""}
        if not len(s):
            row["note"] = "no runs" if cell[cell["model"] == m].empty else "metric missing"
        elif m != g.baseline:
            if base is None or not len(base):
                row["note"] = "no baseline runs for this scenario" if g.baseline else ""
            else:
                row.update(_vs_baseline(s, base, lib, means[m], alpha))
        rows.append(row)
    return rows


def summary_table(values: pd.DataFrame, groups: list[Group], metrics: list[str], alpha: float,
                  extra: Sequence[str] = ()) -> pd.DataFrame:
    """The long table: per group, scenario (the baseline's first), metric and model (baseline first);
    ``extra``: the further baselines' names (``*_vs_<b>`` columns, see :func:`table_columns`)."""
    rows = []
    for g in groups:
        gv = values[values["group"] == g.name]
        models = list(dict.fromkeys(gv["model"]))
        first = [g.baseline, *g.extra_baselines.values()]
        first = [m for m in dict.fromkeys(first) if m and m in models]  # the baselines first, in order
        models = first + sorted(m for m in models if m not in first)
        scenarios = list(dict.fromkeys([*gv.loc[gv["model"] == g.baseline, "scenario"], *gv["scenario"]]))
        for sc in scenarios:
            for metric in metrics:
                cell = gv[(gv["scenario"] == sc) & (gv["metric"] == metric)]
                rows += cell_rows(g, cell, models, sc, metric, alpha)
    table = pd.DataFrame(rows, columns=table_columns(extra))
    for c in ("mean", "std", "gain", "p_value", "p_wilcoxon", *(vs_column(f, b) for b in extra
                                                               for f in ("gain", "p_value"))):
        table[c] = table[c].astype(float)
    return table
