"""Ours vs published: the SWR MovieLens table from this experiment's ``result.json`` files.

    python experiments/reproduce_swr_movielens/table.py outputs/reproduce_swr_movielens --out experiments/...

Writes ``table.md`` (mean ± std over seeds of total and per-domain test AUC and total LogLoss, next to SWR's
published value and the difference; wall time and best epoch per run; a one-sided t-test over seeds of each
model's total AUC against SWR's best published total, M2M's 0.8115) and ``table.csv`` (one row per model,
scenario, metric: the cells ``scripts/check_expected.py`` holds to ``expected.yaml``). Rendered by
``unirec_lab.results.tables``, the one table renderer.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd
import yaml
from scipy import stats

from unirec_lab.results.record import RunRecord
from unirec_lab.results.runs import find_run_dirs
from unirec_lab.results.tables import csv_table, markdown_table

HERE = Path(__file__).resolve().parent
DOMAINS = ("movielens_d0", "movielens_d1", "movielens_d2")
TOTAL = "all"
BEST_PUBLISHED = ("M2M", 0.8115)
ORDER = ["sharedbottom", "mmoe", "ple", "star", "sarnet", "m2m", "adasparse", "adaptdhm", "epnet", "ppnet", "hamur",
         "m3oe"]  # run.sh's ALL


def published() -> dict[str, dict[str, float]]:
    """``{model: {total, d0, d1, d2, logloss}}`` from published.yaml (SWR's KDD'24 draft, Table 7)."""
    return yaml.safe_load((HERE / "published.yaml").read_text())["models"]


def load(runs_dir: Path) -> pd.DataFrame:
    """One row per (run, scenario, metric) with the run's wall seconds and best epoch."""
    dirs, _ = find_run_dirs([runs_dir])
    rows = []
    for d in dirs:
        if not (d / "result.json").is_file():
            continue
        rec = RunRecord.read(d / "result.json")
        sel = rec.selection if isinstance(rec.selection, dict) else {}
        for sc, metrics in (rec.test or {}).items():
            for m in ("auc", "logloss"):
                if m in metrics:
                    rows.append({"model": rec.model, "seed": rec.seed, "scenario": sc, "metric": m,
                                 "value": float(metrics[m]), "wall": rec.wall_seconds,
                                 "epoch": sel.get("best_epoch", sel.get("epoch")), "cut": guard_cut(rec)})
    if not rows:
        raise SystemExit(f"error: no result.json under {runs_dir}: run experiments/reproduce_swr_movielens/run.sh")
    return pd.DataFrame(rows)


def guard_cut(rec: RunRecord) -> bool:
    """Did the run end by run.sh's time guard (``trainer.max_time``) rather than by patience or the epoch cap?
    Such a run tests its best epoch so far, which on a busy machine is an under-trained model."""
    sel, cfg = rec.selection or {}, rec.config or {}
    run, best = sel.get("epochs_run"), sel.get("best_epoch")
    cap = (cfg.get("trainer") or {}).get("max_epochs")
    patience = ((cfg.get("callbacks") or {}).get("early_stopping") or {}).get("patience")
    if None in (run, best, cap, patience):
        return False
    return run < cap and run - 1 - best < patience


def schedule_minutes(df: pd.DataFrame, slots: int = 2) -> tuple[float, float]:
    """(sum of the runs' wall times, the makespan of run.sh's order on ``slots`` slots), in minutes: run.sh
    queues seeds outer, models inner, and xargs starts the next run when a slot frees."""
    runs = df.drop_duplicates(["model", "seed"])
    rank = {m: i for i, m in enumerate(ORDER)}
    runs = runs.assign(r=runs.model.map(lambda m: rank.get(m, len(rank)))).sort_values(["seed", "r", "model"])
    free = [0.0] * slots
    for w in runs["wall"].fillna(0.0):
        i = free.index(min(free))
        free[i] += float(w)
    return float(runs["wall"].sum()) / 60, max(free) / 60


def cell(df: pd.DataFrame, model: str, scenario: str, metric: str) -> pd.Series:
    return df[(df.model == model) & (df.scenario == scenario) & (df.metric == metric)].set_index("seed")["value"]


def fmt(s: pd.Series, pub: float | None) -> str:
    if s.empty:
        return "—"
    std = s.std(ddof=1) if len(s) > 1 else math.nan
    out = f"{s.mean():.4f} ± {std:.4f}" if math.isfinite(std) else f"{s.mean():.4f}"
    if pub is not None:
        out += f" ({pub:.4f}, {s.mean() - pub:+.4f})"
    return out


def better_than(s: pd.Series, target: float) -> str:
    """One-sided one-sample t-test over seeds: is the mean total AUC above ``target``?"""
    if len(s) < 2 or s.std(ddof=1) == 0:
        return "n/a"
    p = stats.ttest_1samp(s.to_numpy(), target, alternative="greater").pvalue
    return f"{p:.3f}"


def render(df: pd.DataFrame) -> tuple[str, str]:
    pub = published()
    order = [m for m in ORDER if m in set(df.model)]
    order += sorted(set(df.model) - set(order))
    header = ["model", "seeds", "total AUC", "D0 AUC", "D1 AUC", "D2 AUC", "total LogLoss",
              "wall s / run", "best epoch", "guard-cut runs", f"p(total > {BEST_PUBLISHED[0]} {BEST_PUBLISHED[1]})"]
    rows, csv_rows = [], []
    for m in order:
        p = pub.get(m, {})
        total = cell(df, m, TOTAL, "auc")
        runs = df[df.model == m].drop_duplicates("seed")  # one row per run
        rows.append([p.get("name", m), str(len(runs)), fmt(total, p.get("total")),
                     *(fmt(cell(df, m, d, "auc"), p.get(k)) for d, k in zip(DOMAINS, ("d0", "d1", "d2"), strict=True)),
                     fmt(cell(df, m, TOTAL, "logloss"), p.get("logloss")),
                     f"{runs['wall'].mean():.0f}" if len(runs) else "—",
                     f"{runs['epoch'].mean():.1f}" if len(runs) and runs["epoch"].notna().all() else "—",
                     str(int(runs["cut"].sum())), better_than(total, BEST_PUBLISHED[1])])
        for sc in (TOTAL, *DOMAINS):
            for metric in ("auc", "logloss"):
                s = cell(df, m, sc, metric)
                if s.empty:
                    continue
                key = {"all": "total", "movielens_d0": "d0", "movielens_d1": "d1", "movielens_d2": "d2"}[sc]
                ref = p.get(key) if metric == "auc" else (p.get("logloss") if sc == TOTAL else None)
                csv_rows.append([m, sc, metric, s.mean(), s.std(ddof=1) if len(s) > 1 else math.nan, len(s),
                                 math.nan if ref is None else ref])
    md = ("# Scenario-Wise Rec MovieLens: ours vs published\n\n"
          "Test AUC / LogLoss, mean ± std over seeds; in brackets SWR's published value (KDD'24 draft, Table 7) "
          "and our difference. Total = all test rows of the three domains pooled. Generated by "
          "`experiments/reproduce_swr_movielens/table.py` from the runs' result.json; do not edit.\n\n"
          + markdown_table(header, rows) + "\n")
    total_min, makespan = schedule_minutes(df[df.model.isin(ORDER)])
    md += (f"\nTime of SWR's models ({len(df[df.model.isin(ORDER)].drop_duplicates(['model', 'seed']))} runs): the "
           f"runs' wall times sum to {total_min:.0f} min; in run.sh's order on two slots they end after "
           f"{makespan:.0f} min (each run's wall time as measured, at the load it ran under; process start and "
           "the one-off data preparation not included). Guard-cut runs ended by run.sh's time guard before "
           "patience or the epoch cap: their best epoch so far is tested.\n")
    csv = csv_table(["model", "scenario", "metric", "mean", "std", "n", "published"], csv_rows)
    return md, csv


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, help="the run directories' root (run.sh's RUNS)")
    ap.add_argument("--out", type=Path, default=HERE, help="where table.md and table.csv go")
    args = ap.parse_args(argv)
    if not args.runs.is_dir():
        print(f"error: {args.runs} is not a directory of runs (run.sh's RUNS)", file=sys.stderr)
        return 2
    md, csv = render(load(args.runs))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(md)
    (args.out / "table.csv").write_text(csv)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
