"""The cold-start table of ``experiments/text_cold_start``: per scenario, each item representation (the runs'
experiment name ``<prefix><representation>``) and model, test metrics on all items and on items never seen in
training (the ``unseen_item`` slice), mean ± std over seeds, with paired p-values (``results.stats.paired``):
each representation vs ID-only on never-seen items (same model; a model without an ID-only run, NRMS, vs
ID-only per-scenario), and unified vs per-scenario on all items.

``python -m unirec_lab.results.cold_start RUN_DIRS... --out DIR`` writes ``table.md`` (rendered by the one
table renderer, ``results/tables.py``) and ``table.csv`` (long form: what ``scripts/check_expected.py`` reads).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from unirec_lab.results.runs import load_runs
from unirec_lab.results.stats import paired
from unirec_lab.results.tables import fixed, markdown_table
from unirec_lab.utils.atomic import atomic_write_text

METRICS = ("auc", "gauc", "ndcg@10")
SLICE = "unseen_item"
BASELINE_REP = "id"
REFERENCE_MODEL = "per_scenario"


def long_values(paths: Sequence[str | Path], prefix: str) -> pd.DataFrame:
    """One row per (representation, model, seed, scenario, part, metric): ``part`` is ``all`` or ``unseen``."""
    rows = []
    for slices, part in ((False, "all"), (True, "unseen")):
        runs, _ = load_runs(paths, slices=slices)
        for r in runs.itertuples():
            if not str(r.experiment).startswith(prefix):
                continue
            rep = str(r.experiment)[len(prefix):]
            for key, vals in (r.test or {}).items():
                scen, _, sl = key.partition("/")
                if slices and sl != SLICE:
                    continue
                for m in (*METRICS, "rows"):
                    if m in vals:
                        rows.append({"rep": rep, "model": r.model, "seed": r.seed, "scenario": scen,
                                     "part": part, "metric": m, "value": float(vals[m])})
    if not rows:
        raise ValueError(f"no completed runs with experiment name '{prefix}<representation>' under "
                         f"{[str(p) for p in paths]}")
    return pd.DataFrame(rows)


def _cell(s: pd.Series) -> str:
    if s.empty:
        return "–"
    sd = s.std(ddof=1) if len(s) > 1 else math.nan
    return f"{fixed(s.mean(), 4)} ± {fixed(sd, 4)}" if math.isfinite(sd) else fixed(s.mean(), 4)


def _p(a: pd.Series, b: pd.Series) -> str:
    if a.empty or b.empty:
        return "–"
    p, _, n, _ = paired(a, b)
    return f"{p:.3g} (n={n})" if math.isfinite(p) else "n/a"


def build_rows(values: pd.DataFrame, reps: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the table (values as :func:`long_values` returns them)."""
    header = ["scenario", "items", "model", *(f"{m} all" for m in METRICS), *(f"{m} never seen" for m in METRICS),
              "never-seen rows", f"p vs {BASELINE_REP} (auc never seen)", f"p vs {REFERENCE_MODEL} (auc all)"]
    v = values.set_index(["scenario", "rep", "model", "part", "metric", "seed"])["value"].sort_index()

    def get(scen: str, rep: str, model: str, part: str, metric: str) -> pd.Series:
        try:
            return v.loc[(scen, rep, model, part, metric)]
        except KeyError:
            return pd.Series(dtype=float)

    rows = []
    for scen in sorted(values["scenario"].unique()):
        for rep in reps:
            for model in sorted(values.loc[values["rep"] == rep, "model"].unique()):
                n_rows = get(scen, rep, model, "unseen", "rows")
                # a model with no ID-only run of its own (NRMS, per scenario) is compared with ID-only per scenario
                base = model if len(get(scen, BASELINE_REP, model, "unseen", "auc")) else REFERENCE_MODEL
                rows.append([
                    scen, rep, model, *(_cell(get(scen, rep, model, "all", m)) for m in METRICS),
                    *(_cell(get(scen, rep, model, "unseen", m)) for m in METRICS),
                    str(int(n_rows.iloc[0])) if len(n_rows) else "–",
                    "" if rep == BASELINE_REP else _p(get(scen, rep, model, "unseen", "auc"),
                                                      get(scen, BASELINE_REP, base, "unseen", "auc")),
                    "" if model == REFERENCE_MODEL else _p(get(scen, rep, model, "all", "auc"),
                                                           get(scen, rep, REFERENCE_MODEL, "all", "auc"))])
    return header, rows


def summary(values: pd.DataFrame) -> pd.DataFrame:
    """Long form for ``scripts/check_expected.py``: model = ``<representation>/<model>``, metric = ``<m>`` (all
    items) or ``<m>_never_seen``; mean, std over seeds and the number of seeds."""
    v = values[values["metric"] != "rows"].copy()
    v["metric"] = v["metric"] + v["part"].map({"all": "", "unseen": "_never_seen"})
    v["model"] = v["rep"] + "/" + v["model"]
    g = v.groupby(["model", "scenario", "metric"])["value"]
    return g.agg(mean="mean", std=lambda s: s.std(ddof=1), seeds="count").reset_index()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unirec_lab.results.cold_start", description=__doc__.split("\n")[0])
    ap.add_argument("paths", nargs="+", help="run / multirun directories")
    ap.add_argument("--out", required=True, help="folder for table.md and table.csv")
    ap.add_argument("--prefix", default="text_cold_start_", help="experiment name prefix before the representation")
    ap.add_argument("--reps", default="id,tokens,text,text_id,nrms", help="representations, in table order")
    args = ap.parse_args(argv)
    try:
        values = long_values(args.paths, args.prefix)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    reps = [r for r in args.reps.split(",") if r in set(values["rep"])]
    header, rows = build_rows(values, reps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    title = ("# Text embeddings and never-seen items (mean ± std over seeds; p: paired t-test over seeds)\n\n")
    atomic_write_text(out / "table.md", title + markdown_table(header, rows) + "\n")
    atomic_write_text(out / "table.csv", summary(values).to_csv(index=False, float_format="%.6g"))
    print(markdown_table(header, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
