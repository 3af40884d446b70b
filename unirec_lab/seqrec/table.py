"""Published SASRec (S3-Rec protocol) vs. ours, mean ± std over seeds: ``runs.csv`` + ``table.md``.

    python -m unirec_lab.seqrec.table outputs/reproduce_s3rec_sasrec --out experiments/reproduce_s3rec_sasrec

Reads every ``result.json`` under the runs folder (model ``sasrec``, status ``completed``), writes the per-run
summary ``runs.csv`` (one row per dataset × seed: test metrics, selected epoch, wall time, throughput), then
renders ``table.md`` **from runs.csv only**, so the checked-in table can be re-derived from the checked-in summary
(``--from-summary`` re-renders without the run folders).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from unirec_lab.results.record import RESULT_FILE, RunRecord
from unirec_lab.results.tables import csv_table, markdown_table
from unirec_lab.seqrec.evaluate import METRICS
from unirec_lab.utils.atomic import atomic_write_text

# S3-Rec repository (RUCAIBox / aHuiWang CIKM2020-S3Rec), reproduce/README.md, row "SASRec in paper"
PUBLISHED: dict[str, dict[str, float]] = {
    "Beauty": {"hr@1": 0.1870, "hr@5": 0.3741, "ndcg@5": 0.2848, "hr@10": 0.4696, "ndcg@10": 0.3156, "mrr": 0.2852},
    "Toys_and_Games": {"hr@1": 0.1878, "hr@5": 0.3682, "ndcg@5": 0.2820, "hr@10": 0.4663, "ndcg@10": 0.3136,
                       "mrr": 0.2842},
}
# same file, row "SASRec in repo": the authors' own re-run of their code (seed-to-seed scale of the published numbers)
AUTHORS_RERUN: dict[str, dict[str, float]] = {
    "Beauty": {"hr@1": 0.1867, "hr@5": 0.3721, "ndcg@5": 0.2843, "hr@10": 0.4651, "ndcg@10": 0.3142, "mrr": 0.2850},
    "Toys_and_Games": {"hr@1": 0.1775, "hr@5": 0.3683, "ndcg@5": 0.2766, "hr@10": 0.4659, "ndcg@10": 0.3081,
                       "mrr": 0.2770},
}
PUBLISHED_SOURCE = "S3-Rec (Zhou et al., CIKM 2020) repository, reproduce/README.md, row 'SASRec in paper'"
TARGET = 0.02
SUMMARY_FILE = "runs.csv"
TABLE_FILE = "table.md"
RUN_COLUMNS = ["dataset", "seed", "best_epoch", "epochs_run", "stop_reason", *METRICS, "val_ndcg@10",
               "wall_seconds", "seconds_per_epoch", "train_samples_per_second", "git_sha", "run_dir"]


def collect(runs_dir: Path) -> pd.DataFrame:
    """One row per completed SASRec ``result.json`` under ``runs_dir``; duplicates (dataset, seed) fail."""
    rows: list[dict[str, Any]] = []
    for path in sorted(Path(runs_dir).rglob(RESULT_FILE)):
        rec = RunRecord.read(path)  # RecordError (one line naming the file) for a malformed record
        if rec.model != "sasrec" or rec.status != "completed":
            continue
        (ds,) = rec.scenarios
        sel = rec.selection
        rows.append({"dataset": ds, "seed": rec.seed, "best_epoch": sel["best_epoch"],
                     "epochs_run": sel["epochs_run"], "stop_reason": sel["stop_reason"],
                     **{m: rec.test[ds][m] for m in METRICS},
                     "val_ndcg@10": (rec.val or {}).get(ds, {}).get("ndcg@10"),
                     "wall_seconds": round(rec.wall_seconds, 1), "seconds_per_epoch": rec.seconds_per_epoch,
                     "train_samples_per_second": rec.train_samples_per_second, "git_sha": rec.git_sha[:12],
                     "run_dir": path.parent.relative_to(runs_dir).as_posix()})
    if not rows:
        raise FileNotFoundError(f"no completed sasrec result.json under {runs_dir}")
    df = pd.DataFrame(rows, columns=RUN_COLUMNS).sort_values(["dataset", "seed"]).reset_index(drop=True)
    dup = df[df.duplicated(["dataset", "seed"], keep=False)]
    if len(dup):
        raise ValueError(f"more than one run per (dataset, seed): {sorted(set(dup['run_dir']))}")
    return df


def read_summary(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """Per dataset × metric: published, mean, std (ddof 1), n, difference, within target."""
    out = []
    for ds, g in df.groupby("dataset", sort=True):
        for m in METRICS:
            v = g[m].to_numpy(dtype=float)
            pub = PUBLISHED.get(ds, {}).get(m, math.nan)
            mean = float(v.mean())
            out.append({"dataset": ds, "metric": m, "published": pub, "mean": mean,
                        "std": float(v.std(ddof=1)) if len(v) > 1 else math.nan, "n": len(v),
                        "diff": mean - pub, "within": abs(mean - pub) <= TARGET + 1e-12})
    return pd.DataFrame(out)


def _f(v: float, d: int = 4) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"


PER_RUN_HEADER = ["dataset", "seed", "best epoch", "epochs run", "stop", *(m.upper() for m in METRICS), "val NDCG@10",
                  "wall s", "s/epoch", "train seq/s"]


def _per_run_row(r: pd.Series) -> list[str]:
    return [str(r["dataset"]), str(r["seed"]), str(r["best_epoch"]), str(r["epochs_run"]), str(r["stop_reason"]),
            *(_f(r[m]) for m in METRICS), _f(r["val_ndcg@10"]), f"{r['wall_seconds']:.0f}",
            f"{r['seconds_per_epoch']:.2f}", f"{r['train_samples_per_second']:.0f}"]


def render(df: pd.DataFrame) -> str:
    agg = aggregate(df)
    lines = ["# SASRec on Amazon Beauty / Toys_and_Games under the S3-Rec protocol: published vs. ours", "",
             "<!-- generated by `python -m unirec_lab.seqrec.table` from runs.csv; do not edit -->", "",
             f"Test metrics, leave-one-out, the held-out item ranked against 99 sampled negatives. Published: "
             f"{PUBLISHED_SOURCE}; 'authors' re-run' is the row 'SASRec in repo' of the same file. Ours: mean ± std (sample std) over seeds; difference = ours − published; "
             f"target |difference| ≤ {TARGET}.", ""]
    n_in, n_all = int(agg["within"].sum()), len(agg)
    worst = agg.loc[agg["diff"].abs().idxmax()]
    lines += [f"**{n_in} of {n_all} dataset × metric values within ±{TARGET}**; largest gap "
              f"{worst['diff']:+.4f} ({worst['dataset']} {worst['metric']}).", ""]
    for ds, g in agg.groupby("dataset", sort=True):
        seeds = ", ".join(str(s) for s in sorted(df.loc[df["dataset"] == ds, "seed"]))
        n = int((df["dataset"] == ds).sum())
        rows = [[r["metric"].upper(), _f(r["published"]), _f(AUTHORS_RERUN.get(ds, {}).get(r["metric"], math.nan)),
                 f"{_f(r['mean'])} ± {_f(r['std'])}", f"{r['diff']:+.4f}", "yes" if r["within"] else "no"]
                for _, r in g.iterrows()]
        lines += [f"## {ds} ({n} seed{'s' if n != 1 else ''}: {seeds})", "",
                  markdown_table(["metric", "published", "authors' re-run", "ours (mean ± std)", "difference",
                                  f"within ±{TARGET}"], rows, pad=False), ""]
    lines += ["## Per run", "", markdown_table(PER_RUN_HEADER, [_per_run_row(r) for _, r in df.iterrows()], pad=False)]
    total = float(df["wall_seconds"].sum())
    lines += ["", f"Sum of the per-run wall times over {len(df)} runs: {total / 60:.1f} min (run.sh runs two jobs "
                  "at a time, one thread each, on a shared 2-core machine: the times include other users' load)."]
    return "\n".join(lines) + "\n"


def summary_stats(df: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """``{dataset: {metric: {"mean": .., "std": ..}}}`` (for expected.yaml checks)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for _, r in aggregate(df).iterrows():
        out.setdefault(r["dataset"], {})[r["metric"]] = {"mean": r["mean"], "std": r["std"], "n": int(r["n"])}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs_dir", type=Path, nargs="?", help="folder holding the runs' result.json files")
    p.add_argument("--out", type=Path, required=True, help="experiment folder: writes runs.csv and table.md")
    p.add_argument("--from-summary", action="store_true", help="re-render table.md from <out>/runs.csv only")
    a = p.parse_args(argv)
    summary = a.out / SUMMARY_FILE
    if not a.from_summary:
        if a.runs_dir is None:
            p.error("runs_dir is required unless --from-summary")
        try:
            df = collect(a.runs_dir)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        a.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(summary, csv_table(list(df.columns), df.itertuples(index=False), float_format="%.6g"))
    text = render(read_summary(summary))
    atomic_write_text(a.out / TABLE_FILE, text)
    print(text)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
