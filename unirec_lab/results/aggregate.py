"""Many runs' ``result.json`` -> one long table: mean ± std over seeds, gain over a baseline, paired tests.

    runs, failures = load_runs(["multirun/main"])   # results/runs.py
    agg = aggregate(runs, failures, baseline="per_scenario", metrics=["auc", "logloss"])
    agg.table          # one row per (group, model, scenario, metric)

This module orchestrates: ``runs.py`` finds and loads the runs, ``grouping.py`` decides which are comparable and
labels them, ``stats.py`` computes the statistics, ``report.py`` renders them (through ``tables.py``).

Conventions (the rendered tables repeat them under every table):

* **std** is the sample standard deviation over seeds (``ddof=1``); NaN (rendered blank) when ``n = 1``.
* **Several baselines** (``baseline="per_scenario,strongest"``): the first is *the* baseline (``gain``,
  ``p_value``, ...); each further one ``b`` adds ``gain_vs_<b>``, ``p_value_vs_<b>``, ``n_pairs_vs_<b>``,
  ``significant_vs_<b>`` with the same definitions (e.g. gains against the same architecture *and* against the
  strongest per-scenario model, both paired over seeds).
* **gain** = ``(model - baseline) / |baseline|`` on the seed means, sign-flipped for lower-is-better metrics
  (any metric whose name contains ``loss``), so a positive gain always means *better than the baseline*.
* **p_value**: two-sided paired t-test (``scipy.stats.ttest_rel``) over the seeds that both the model and the
  baseline have; NaN with a note when fewer than 2 seeds pair up. ``p_wilcoxon`` (Wilcoxon signed-rank) is
  added when at least 6 seeds pair up. ``significant`` = ``p_value < alpha``; no multiple-comparison correction.
* **Comparability**: runs are only pooled when their resolved configs agree on everything except the seed (and
  keys derived from it), model keys (``model.*``, ``backbone.*``, ``head.*``), per-run paths and bookkeeping
  (``IGNORED_KEYS``). Each distinct remaining config is its own *group* (A, B, ...), tabulated separately.
  Per-scenario data configs (``scenarios.<s>.*``) are compared per scenario: differing variants of one scenario
  get separate rows (``news#1``, ``news#2``). The scenario *set* is not part of the group signature, so a model
  run on fewer scenarios than the baseline just has n/a cells; for joint models it is part of the model identity.
* Same model name with different model configs in one group (e.g. a backbone ablation) -> separate rows,
  labelled with the differing keys (``unified[backbone.embedding_dim=64]``).
* The same (group, model, seed, scenario) recorded twice: the newer ``result.json`` is used and the older run is
  listed among the failures as ``superseded``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from unirec_lab.results.grouping import (
    IGNORED_KEYS,
    ConfigParts,
    Group,
    group_name,
    group_runs,
    pick_baseline,
    run_model_labels,
    scenario_labels,
    seed_derived,
    signature,
    split_config,
)
from unirec_lab.results.runs import Failure
from unirec_lab.results.stats import summary_table, table_columns

DEFAULT_METRICS = ("auc", "logloss", "gauc", "ndcg@10")
DEFAULT_BASELINE = "per_scenario"
VALUE_COLUMNS = ["group", "model", "seed", "scenario", "metric", "value", "run_dir"]


@dataclass
class Aggregate:
    table: pd.DataFrame  # one row per (group, model, scenario, metric), in presentation order
    values: pd.DataFrame  # the per-run values that went into it (group, model, seed, scenario, metric, value)
    groups: list[Group]
    failures: list[Failure]
    baseline: str
    metrics: list[str]
    alpha: float
    notes: list[str] = field(default_factory=list)
    published: pd.DataFrame | None = None  # ours vs a published table (results/published.py), when asked
    published_lines: list[str] = field(default_factory=list)  # its Markdown section
    extra_baselines: list[str] = field(default_factory=list)  # further baselines: *_vs_<b> columns of ``table``


def _make_group(runs: pd.DataFrame, parts: list[ConfigParts], idx: list[int], gi: int,
                diff_keys: list[str]) -> Group:
    cfg = parts[idx[0]].group
    return Group(name=group_name(gi), signature=signature(cfg), config=cfg,
                 differing={k: cfg.get(k, "<missing>") for k in diff_keys},
                 experiments=sorted({runs.loc[i, "experiment"] for i in idx}),
                 git_shas=sorted({runs.loc[i, "git_sha"] for i in idx}), n_runs=len(idx), baseline=None)


def _value_rows(runs: pd.DataFrame, idx: list[int], g: Group, model_of: dict[int, str],
                scen_of: dict[tuple[int, str], str], metrics: list[str]) -> list[dict]:
    """One row per (run, scenario, metric) of a group; ``recorded`` = the run has a number (NaN / inf included)."""
    rows = []
    cols = runs.loc[idx, ["seed", "run_dir", "mtime", "test"]]
    for i, seed, run_dir, mtime, test in cols.itertuples(name=None):
        for sc, vals in test.items():
            for m in metrics:
                v = vals.get(m) if isinstance(vals, dict) else None
                recorded = isinstance(v, int | float) and not isinstance(v, bool)
                rows.append({"group": g.name, "model": model_of[i], "seed": seed, "scenario": scen_of[(i, sc)],
                             "metric": m, "value": float(v) if recorded else math.nan, "run_dir": run_dir,
                             "mtime": mtime, "recorded": recorded})
    return rows


def parse_baselines(baseline: str | Sequence[str]) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]`` (the first is the main baseline); empty or repeated names fail."""
    names = [b.strip() for b in (baseline.split(",") if isinstance(baseline, str) else baseline)]
    if not names or any(not b for b in names) or len(set(names)) != len(names):
        raise ValueError(f"baseline {baseline!r}: expected one model name or distinct comma-separated names, "
                         "e.g. per_scenario,strongest")
    return names


def aggregate(runs: pd.DataFrame, failures: Sequence[Failure] = (),
              baseline: str | Sequence[str] = DEFAULT_BASELINE, metrics: Sequence[str] | None = None,
              alpha: float = 0.05, ignore: Sequence[str] = (), strict: bool = False) -> Aggregate:
    """Group comparable runs, aggregate over seeds, compare every model with ``baseline`` (or each of several:
    ``"per_scenario,strongest"``, the first one the main baseline).

    ``ignore``: extra key patterns (fnmatch) that must not split groups. ``strict``: raise ``IncomparableRuns``
    (one-line message) instead of reporting several config groups / scenario variants.
    """
    metrics = list(metrics or DEFAULT_METRICS)
    failures = list(failures)
    baseline, *extra = parse_baselines(baseline)
    if runs.empty:
        return Aggregate(pd.DataFrame(columns=table_columns(extra)), pd.DataFrame(columns=VALUE_COLUMNS), [],
                         failures, baseline, metrics, alpha, [], extra_baselines=extra)
    runs = runs.sort_values("run_dir", kind="stable").reset_index(drop=True)
    derived = seed_derived(runs)
    parts = [split_config(c, derived, (*IGNORED_KEYS, *ignore)) for c in runs["config"]]
    members, diff_keys = group_runs(runs, parts, strict)
    groups, value_rows = [], []
    for gi, idx in enumerate(members):
        g = _make_group(runs, parts, idx, gi, diff_keys)
        scen_of = scenario_labels(runs, parts, idx, g, strict)
        model_of = run_model_labels(runs, parts, idx)
        value_rows += _value_rows(runs, idx, g, model_of, scen_of, metrics)
        pick_baseline(g, model_of.values(), baseline, extra)
        groups.append(g)
    values, superseded = _dedupe(pd.DataFrame(value_rows, columns=[*VALUE_COLUMNS, "mtime", "recorded"]))
    missing = [m for m in metrics if not values.loc[values["metric"] == m, "recorded"].any()]
    notes = [f"metric(s) not found in any run: {', '.join(missing)}"] if missing else []
    table = summary_table(values, groups, metrics, alpha, extra)
    return Aggregate(table, values.drop(columns=["mtime", "recorded"]), groups, failures + superseded, baseline,
                     metrics, alpha, notes, extra_baselines=extra)


def _dedupe(values: pd.DataFrame) -> tuple[pd.DataFrame, list[Failure]]:
    """Keep the newest record of each (group, model, seed, scenario); report the older runs."""
    key = ["group", "model", "seed", "scenario"]
    if values.empty:
        return values, []
    cell = values.drop_duplicates(key + ["run_dir"])
    cell = cell.sort_values(["mtime", "run_dir"], kind="stable")
    keep = cell.drop_duplicates(key, keep="last").set_index(key)["run_dir"]
    dropped = cell[cell.duplicated(key, keep="last")]
    out: list[Failure] = []
    for run_dir, d in dropped.groupby("run_dir", sort=True):
        winners = sorted({keep[tuple(r)] for r in d[key].itertuples(index=False)})
        scen = ", ".join(d["scenario"])
        out.append(Failure(run_dir, "superseded",
                           f"model {d['model'].iloc[0]} seed {d['seed'].iloc[0]} ({scen}) is also in newer run(s) "
                           f"{', '.join(winners)}; the newer numbers are used"))
    mask = values.set_index(key)["run_dir"].to_numpy() == keep.reindex(
        pd.MultiIndex.from_frame(values[key])).to_numpy()
    return values[mask].reset_index(drop=True), out
