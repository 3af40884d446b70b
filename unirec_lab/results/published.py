"""Ours vs a published table: ``unirec-report --published published.yaml`` (reproduction experiments).

``published.yaml``::

    source: "S3-Rec (Zhou et al., CIKM 2020), reproduce/README.md, row 'SASRec in paper'"
    target: 0.02                       # |ours - published| <= target counts as reproduced
    rows:
      - label: Beauty                  # the row's name in the tables
        scenario: ecommerce            # a scenario of the runs ...
        where: {source.category: Beauty}   # ... whose data config (scenarios.<scenario>.<key>) has these values
        metrics: {hr@1: 0.1870, ndcg@10: 0.3156}

Each published row picks the runs whose scenario and data config match; the scenario's rows in the main table
are relabelled ``<scenario>[<label>]`` (instead of ``ecommerce#1``, whose number depends on the run order), and a
comparison table lists per row, model and metric: published, ours (mean ± sample std over seeds), difference
and whether it is within ``target``, headed by how many are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from unirec_lab.results.tables import fixed, markdown_table

COLUMNS = ["label", "model", "metric", "published", "mean", "std", "n", "difference", "within"]


class PublishedError(ValueError):
    """A malformed published.yaml; the message names the file and the key."""


@dataclass
class PublishedRow:
    label: str
    scenario: str
    where: dict[str, Any]
    metrics: dict[str, float]


@dataclass
class Published:
    source: str
    target: float
    rows: list[PublishedRow]


def load_published(path: str | Path) -> Published:
    """Read and check ``published.yaml`` (one line naming the file and key on any problem)."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise PublishedError(f"{path}: cannot read a YAML document ({' '.join(str(e).split())})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list) or not doc["rows"]:
        raise PublishedError(f"{path}: expected a mapping with 'source', 'target' and a non-empty list 'rows'")
    target = doc.get("target")
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not target > 0:
        raise PublishedError(f"{path}: target={target!r}, expected a positive number")
    rows = []
    for i, r in enumerate(doc["rows"]):
        where = f"{path}: rows[{i}]"
        if not isinstance(r, dict) or not {"label", "scenario", "metrics"} <= set(r):
            raise PublishedError(f"{where}: expected a mapping with label, scenario, metrics (and optional where)")
        metrics = r["metrics"]
        if not isinstance(metrics, dict) or not metrics or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values()):
            raise PublishedError(f"{where}.metrics={metrics!r}: expected a mapping metric -> number")
        cond = r.get("where") or {}
        if not isinstance(cond, dict):
            raise PublishedError(f"{where}.where={cond!r}: expected a mapping data-config key -> value")
        rows.append(PublishedRow(str(r["label"]), str(r["scenario"]), dict(cond),
                                 {str(k): float(v) for k, v in metrics.items()}))
    return Published(str(doc.get("source", "")), float(target), rows)


def _matches(config: dict[str, Any], row: PublishedRow) -> bool:
    return all(str(config.get(f"scenarios.{row.scenario}.{k}")) == str(v) for k, v in row.where.items())


def apply_published(values: pd.DataFrame, table: pd.DataFrame, runs: pd.DataFrame, published: Published,
                    ) -> tuple[dict[tuple[str, str], str], pd.DataFrame]:
    """``(relabel, comparison)``: ``relabel[(group, scenario label)] = "<scenario>[<label>]"`` for the table rows
    a published row matches, and the comparison (``COLUMNS``), one row per published row x model x metric."""
    config_of = dict(zip(runs["run_dir"], runs["config"]))
    relabel: dict[tuple[str, str], str] = {}
    out = []
    base = values["scenario"].str.split("#", n=1).str[0]
    for row in published.rows:
        hit = values[(base == row.scenario) & values["run_dir"].map(lambda d, r=row: _matches(config_of[d], r))]
        for key in hit[["group", "scenario"]].drop_duplicates().itertuples(index=False):
            relabel[(key.group, key.scenario)] = f"{row.scenario}[{row.label}]"
        for model in sorted(hit["model"].unique()):
            for metric, pub in row.metrics.items():
                v = hit[(hit["model"] == model) & (hit["metric"] == metric)]["value"].astype(float)
                n = len(v)
                mean = float(v.mean()) if n else math.nan
                std = float(v.std(ddof=1)) if n > 1 else math.nan
                diff = mean - pub
                out.append([row.label, model, metric, pub, mean, std, n, diff,
                            bool(n and abs(diff) <= published.target + 1e-12)])
    return relabel, pd.DataFrame(out, columns=COLUMNS)


def render_published(comparison: pd.DataFrame, published: Published, digits: int = 4) -> list[str]:
    """Markdown lines: the headline (k of N within ±target, largest gap) and the comparison table."""
    lines = ["## Published vs ours", "", f"Published: {published.source}. Ours: mean ± sample std over seeds; "
             f"difference = ours − published; target |difference| ≤ {published.target:g}.", ""]
    if comparison.empty:
        return lines + ["No run matches a published row (scenario and `where` of published.yaml).", ""]
    done = comparison[comparison["n"] > 0]
    worst = done.loc[done["difference"].abs().idxmax()] if len(done) else None
    head = f"**{int(comparison['within'].sum())} of {len(comparison)} published values within ±{published.target:g}**"
    if worst is not None:
        head += (f"; largest gap {worst['difference']:+.{digits}f} ({worst['label']} {worst['metric']}, "
                 f"{worst['model']}).")
    rows = []
    for r in comparison.itertuples(index=False):
        ours = "n/a" if not r.n else fixed(r.mean, digits) + (f" ± {fixed(r.std, digits)}" if r.n > 1 else "")
        rows.append([r.label, r.model, r.metric, fixed(r.published, digits), ours, str(r.n),
                     "n/a" if not r.n else f"{r.difference:+.{digits}f}", "yes" if r.within else "no"])
    header = ["published row", "model", "metric", "published", "ours", "n", "difference",
              f"within ±{published.target:g}"]
    return lines + [head, "", markdown_table(header, rows), ""]


def with_published(agg: Any, runs: pd.DataFrame, published: Published, digits: int = 4) -> Any:
    """``agg`` (an :class:`~unirec_lab.results.aggregate.Aggregate`) with the published rows' scenarios
    relabelled, the comparison in ``agg.published`` and its Markdown section in ``agg.published_lines``."""
    relabel, comparison = apply_published(agg.values, agg.table, runs, published)

    def rename(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        keys = list(zip(df["group"], df["scenario"]))
        df["scenario"] = [relabel.get(k, k[1]) for k in keys]
        return df

    agg.table, agg.values = rename(agg.table), rename(agg.values)
    for g in agg.groups:
        g.scenario_variants = {relabel.get((g.name, k), k): v for k, v in g.scenario_variants.items()}
    agg.published = comparison
    agg.published_lines = render_published(comparison, published, digits)
    return agg
