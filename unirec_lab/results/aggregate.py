"""Many runs' ``result.json`` -> one long table: mean ± std over seeds, gain over a baseline, paired tests.

    runs, failures = load_runs(["multirun/main"])
    agg = aggregate(runs, failures, baseline="per_scenario", metrics=["auc", "logloss"])
    agg.table          # one row per (group, model, scenario, metric)

Conventions (the rendered tables repeat them under every table):

* **std** is the sample standard deviation over seeds (``ddof=1``); NaN (rendered blank) when ``n = 1``.
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

import fnmatch
import glob
import hashlib
import json
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from scipy import stats

from unirec_lab.results.record import RESULT_FILE, RecordError, read_record

FAILURE_FILE = "failure.json"
DEFAULT_METRICS = ("auc", "logloss", "gauc", "ndcg@10")
DEFAULT_BASELINE = "per_scenario"
WILCOXON_MIN_PAIRS = 6
# Keys that identify the model: they never split groups, they tell models apart.
# selection.scope is part of a model's protocol (one checkpoint for all scenarios, or one per scenario).
MODEL_KEYS = ("model", "model.*", "backbone", "backbone.*", "backbone_name", "head", "head.*", "head_name",
              "selection.scope")
# Keys that never split groups: seed, per-run paths, logging and bookkeeping that cannot change the numbers.
IGNORED_KEYS = ("seed", "data.shuffle_seed", "hydra", "hydra.*", "paths.*", "logger", "logger.*", "resume",
                "num_threads", "experiment_name", "metrics", "scenarios", "scenario", "*_dir", "*.dir", "*_path",
                "*.path", "*cache*", "data.eval_batch_size", "data.num_workers", "trainer.enable_progress_bar",
                "trainer.enable_model_summary", "trainer.log_every_n_steps", "trainer.default_root_dir",
                "full_ranking", "full_ranking.*",  # extra metrics only; never changes a tabulated number
                # checkpoint files kept for resuming / inspection (selection itself: monitor + mode, kept)
                "callbacks.latest_checkpoint", "callbacks.latest_checkpoint.*", "callbacks.*.verbose",
                *(f"callbacks.model_checkpoint.{k}" for k in ("save_last", "save_top_k", "filename",
                                                             "auto_insert_metric_name", "enable_version_counter")))
SKIP_DIRS = {".hydra", "checkpoints", "wandb", "csv", "lightning_logs", "__pycache__"}


def lower_is_better(metric: str) -> bool:
    return "loss" in metric.lower()


@dataclass
class Failure:
    """A run dir that contributes no numbers, and why."""

    path: str
    status: str  # failed | incomplete | unreadable | invalid | superseded | <status from result.json>
    reason: str
    overrides: list[str] = field(default_factory=list)


@dataclass
class Group:
    """Runs with one comparable config."""

    name: str  # A, B, ...
    signature: str  # short hash of the config below
    config: dict[str, Any]  # the keys that define the group
    differing: dict[str, Any]  # keys whose value differs between groups -> this group's value
    experiments: list[str]
    git_shas: list[str]
    n_runs: int
    baseline: str | None  # the baseline's model label in this group, if unambiguous
    scenario_variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # news#1 -> differing keys
    notes: list[str] = field(default_factory=list)


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


class IncomparableRuns(ValueError):
    """Raised by ``aggregate(strict=True)`` when the runs do not share one config."""


# --------------------------------------------------------------------------------------------- discovery


def _is_run_dir(files: Iterable[str], dirs: Iterable[str]) -> bool:
    return bool({RESULT_FILE, FAILURE_FILE} & set(files)) or bool({".hydra", "checkpoints"} & set(dirs))


def find_run_dirs(paths: Sequence[str | Path]) -> tuple[list[Path], list[str]]:
    """Run dirs under ``paths`` (dirs or globs); also the inputs that matched nothing.

    A run dir holds ``result.json`` or ``failure.json``, or ``.hydra/`` / ``checkpoints/`` (incomplete run). The
    walk does not descend into a run dir (a per-scenario run's own sub-runs are part of it).
    """
    found: set[Path] = set()
    unmatched: list[str] = []
    for p in map(str, paths):
        matches = sorted(glob.glob(p, recursive=True)) if any(c in p for c in "*?[") else (
            [p] if os.path.exists(p) else [])
        if not matches:
            unmatched.append(p)
        for m in map(Path, matches):
            if m.is_file():
                if m.name in (RESULT_FILE, FAILURE_FILE):
                    found.add(m.parent)
                continue
            for root, dirs, files in os.walk(m):
                if _is_run_dir(files, dirs):
                    found.add(Path(root))
                    dirs[:] = []
                else:
                    dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
    return sorted(found), unmatched


def _read_overrides(run_dir: Path) -> list[str]:
    f = run_dir / ".hydra" / "overrides.yaml"
    if not f.is_file():
        return []
    try:
        from omegaconf import OmegaConf

        return [str(x) for x in OmegaConf.to_container(OmegaConf.load(f))]
    except Exception:  # noqa: BLE001 - a broken overrides file must not hide the run
        return []


def _one_line(text: Any, limit: int = 300) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else "no error message"
    return line if len(line) <= limit else line[: limit - 3] + "..."


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{"a.b.c": value}``; lists become JSON strings."""
    out: dict[str, Any] = {}
    if isinstance(node, dict):
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(node, list | tuple):
        out[prefix] = json.dumps(list(node), sort_keys=True, default=str)
    else:
        out[prefix] = node
    return out


def _load_one(run_dir: Path) -> dict[str, Any] | Failure:
    res, fail = run_dir / RESULT_FILE, run_dir / FAILURE_FILE
    if res.is_file():
        try:
            rec = read_record(res)
        except RecordError as e:
            return Failure(str(run_dir), e.kind, f"{RESULT_FILE}: {e.problem}", _read_overrides(run_dir))
        status = rec.get("status", "completed")
        if status != "completed":
            return Failure(str(run_dir), status, _one_line(rec.get("error", f"{RESULT_FILE} status is {status!r}")),
                           list(rec.get("overrides") or []))
        rec["_mtime"] = res.stat().st_mtime
        return rec
    if fail.is_file():
        try:
            rec = json.loads(fail.read_text())
        except (OSError, ValueError) as e:
            return Failure(str(run_dir), "failed", f"{FAILURE_FILE} unreadable: {_one_line(e)}",
                           _read_overrides(run_dir))
        return Failure(str(run_dir), str(rec.get("status", "failed")), _one_line(rec.get("error", "")),
                       list(rec.get("overrides") or _read_overrides(run_dir)))
    has = " and ".join(f"{d}/" for d in (".hydra", "checkpoints") if (run_dir / d).is_dir())
    return Failure(str(run_dir), "incomplete",
                   f"no {RESULT_FILE} (has {has}): still running, or killed before it finished",
                   _read_overrides(run_dir))


def load_runs(paths: Sequence[str | Path], slices: bool = False) -> tuple[pd.DataFrame, list[Failure]]:
    """Completed runs (one row each) and the failed / incomplete / unreadable run dirs under ``paths``.

    Columns: run_dir, model, mode, seed, experiment, scenarios (tuple), git_sha, mtime, config (flat dict of
    the resolved config, or of ``config_flat`` for records without one), test (``{scenario: {metric: value}}``).
    ``slices=True``: ``test`` holds the cold-start slices instead, keyed ``<scenario>/<slice>``
    (``result.json`` ``test_slices``), so every table and test below works on slices unchanged.
    """
    dirs, _ = find_run_dirs(paths)
    rows, failures = [], []
    for d in dirs:
        rec = _load_one(d)
        if isinstance(rec, Failure):
            failures.append(rec)
            continue
        config = flatten(rec["config"]) if isinstance(rec.get("config"), dict) else dict(rec.get("config_flat") or {})
        rows.append({"run_dir": str(d), "model": str(rec["model"]),
                     "mode": str(rec.get("mode") or config.get("model.mode") or ""), "seed": int(rec["seed"]),
                     "experiment": str(rec.get("experiment") or config.get("experiment_name") or ""),
                     "scenarios": tuple(rec["scenarios"]), "git_sha": str(rec.get("git_sha", "")),
                     "mtime": rec["_mtime"], "config": config,
                     "test": slice_cells(rec) if slices else rec["test"]})
    cols = ["run_dir", "model", "mode", "seed", "experiment", "scenarios", "git_sha", "mtime", "config", "test"]
    return pd.DataFrame(rows, columns=cols), failures


def slice_cells(rec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"<scenario>/<slice>": metrics}`` from a record's ``test_slices`` (empty for records without)."""
    out: dict[str, dict[str, Any]] = {}
    for sc, per in (rec.get("test_slices") or {}).items():
        for sl, vals in per.items():
            out[f"{sc}/{sl}"] = vals
    return out


# --------------------------------------------------------------------------------------------- grouping


def _match(key: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def _norm(v: Any) -> str:
    """A comparable text form: 1 == 1.0, dict order irrelevant."""
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, int | float):
        return repr(float(v))
    return json.dumps(v, sort_keys=True, default=str)


def _sig(items: dict[str, Any]) -> str:
    text = json.dumps(sorted((k, _norm(v)) for k, v in items.items()))
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _seed_derived(runs: pd.DataFrame) -> set[str]:
    """``*seed`` keys equal to the run's seed in every run that has them (e.g. ``data.shuffle_seed: ${seed}``)."""
    out: set[str] = set()
    keys = {k for c in runs["config"] for k in c if k.rsplit(".", 1)[-1].endswith("seed")}
    for k in keys:
        vals = [(c[k], s) for c, s in zip(runs["config"], runs["seed"]) if k in c]
        if all(isinstance(v, int | float) and not isinstance(v, bool) and v == s for v, s in vals):
            out.add(k)
    return out


def _differing(configs: Sequence[dict[str, Any]]) -> list[str]:
    keys = sorted({k for c in configs for k in c})
    return [k for k in keys if len({_norm(c.get(k, "<missing>")) for c in configs}) > 1]


def _fmt_value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, default=str)


def _labels(idents: dict[Any, dict[str, Any]], name: str) -> dict[Any, str]:
    """Model label per identity: the name, plus the differing keys when one name has several identities."""
    if len(idents) == 1:
        return {i: name for i in idents}
    diff = _differing(list(idents.values()))
    # class paths are implied by the other differing keys (e.g. backbone_name); keep them only if nothing else
    short = [k for k in diff if not k.endswith(("_target_", "_partial_"))] or diff

    def show(k: str, v: Any) -> str:
        text = _fmt_value(v)
        return text.rsplit(".", 1)[-1] if k.endswith("_target_") else text

    return {i: name + "[" + ",".join(f"{k}={show(k, c.get(k, '<missing>'))}" for k in short) + "]"
            for i, c in idents.items()}


def _paired(model: pd.Series, base: pd.Series) -> tuple[float, float, int, str]:
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


def aggregate(runs: pd.DataFrame, failures: Sequence[Failure] = (), baseline: str = DEFAULT_BASELINE,
              metrics: Sequence[str] | None = None, alpha: float = 0.05, ignore: Sequence[str] = (),
              strict: bool = False) -> Aggregate:
    """Group comparable runs, aggregate over seeds, compare every model with ``baseline``.

    ``ignore``: extra key patterns (fnmatch) that must not split groups. ``strict``: raise ``IncomparableRuns``
    (one-line message) instead of reporting several config groups / scenario variants.
    """
    metrics = list(metrics or DEFAULT_METRICS)
    failures = list(failures)
    notes: list[str] = []
    if runs.empty:
        return Aggregate(_empty_table(), _empty_values(), [], failures, baseline, metrics, alpha, notes)
    runs = runs.sort_values("run_dir", kind="stable").reset_index(drop=True)
    ignored = (*IGNORED_KEYS, *ignore)
    derived = _seed_derived(runs)

    def split(cfg: dict[str, Any]) -> tuple[dict, dict, dict]:
        glob_, model, scen = {}, {}, {}
        for k, v in cfg.items():
            if k in derived or _match(k, ignored):
                continue
            if _match(k, MODEL_KEYS):
                model[k] = v
            elif k.startswith("scenarios.") and k.count(".") >= 2:
                scen[k] = v
            else:
                glob_[k] = v
        return glob_, model, scen

    parts = [split(c) for c in runs["config"]]
    sigs = [_sig(g) for g, _, _ in parts]
    by_sig: dict[str, list[int]] = {}
    for i, s in enumerate(sigs):
        by_sig.setdefault(s, []).append(i)
    order = sorted(by_sig, key=lambda s: (-len(by_sig[s]), runs.loc[by_sig[s][0], "run_dir"]))
    group_cfg = {s: parts[by_sig[s][0]][0] for s in order}
    diff_keys = _differing(list(group_cfg.values())) if len(order) > 1 else []
    if strict and len(order) > 1:
        shown = ", ".join(diff_keys[:6]) + (f" (+{len(diff_keys) - 6} more)" if len(diff_keys) > 6 else "")
        raise IncomparableRuns(f"{len(runs)} runs have {len(order)} different configs (differing keys: {shown}); "
                               "drop --strict to report them as separate groups")

    groups, value_rows = [], []
    for gi, s in enumerate(order):
        idx = by_sig[s]
        g = Group(name=_group_name(gi), signature=s, config=group_cfg[s],
                  differing={k: group_cfg[s].get(k, "<missing>") for k in diff_keys},
                  experiments=sorted({runs.loc[i, "experiment"] for i in idx}),
                  git_shas=sorted({runs.loc[i, "git_sha"] for i in idx}), n_runs=len(idx), baseline=None)
        # scenario variants: the same scenario with different data configs
        scen_cfgs: dict[str, dict[str, dict[str, Any]]] = {}  # scenario -> sig -> cfg
        run_scen_sig: dict[tuple[int, str], str] = {}
        for i in idx:
            for sc in runs.loc[i, "test"]:
                base = sc.split("/", 1)[0]  # a slice "<scenario>/<slice>" has its scenario's data config
                sub = {k[len(f"scenarios.{base}."):]: v for k, v in parts[i][2].items()
                       if k.startswith(f"scenarios.{base}.")}
                ss = _sig(sub)
                scen_cfgs.setdefault(sc, {}).setdefault(ss, sub)
                run_scen_sig[(i, sc)] = ss
        scen_label: dict[tuple[str, str], str] = {}
        for sc, variants in scen_cfgs.items():
            if len(variants) == 1:
                scen_label[(sc, next(iter(variants)))] = sc
                continue
            if strict:
                raise IncomparableRuns(f"scenario {sc!r} has {len(variants)} different data configs (differing keys: "
                                       f"{', '.join(_differing(list(variants.values())))}); drop --strict to "
                                       "report them as separate rows")
            dk = _differing(list(variants.values()))
            for vi, (ss, sub) in enumerate(variants.items(), 1):
                scen_label[(sc, ss)] = f"{sc}#{vi}"
                g.scenario_variants[f"{sc}#{vi}"] = {k: sub.get(k, "<missing>") for k in dk}
        # model identities -> labels
        idents: dict[str, dict[Any, dict[str, Any]]] = {}
        run_ident: dict[int, tuple] = {}
        for i in idx:
            ident_cfg = dict(parts[i][1])
            if runs.loc[i, "mode"] != "separate":  # a joint model's scenario set is part of what it is
                ident_cfg["scenarios"] = "+".join(runs.loc[i, "scenarios"])
            key = (runs.loc[i, "model"], _sig(ident_cfg))
            idents.setdefault(runs.loc[i, "model"], {}).setdefault(key, ident_cfg)
            run_ident[i] = key
        label_of: dict[tuple, str] = {}
        for name, ids in idents.items():
            label_of.update(_labels(ids, name))
        for i in idx:
            for sc, vals in runs.loc[i, "test"].items():
                for m in metrics:
                    v = vals.get(m) if isinstance(vals, dict) else None
                    recorded = isinstance(v, int | float) and not isinstance(v, bool)  # NaN / inf included
                    value_rows.append({"group": g.name, "model": label_of[run_ident[i]], "seed": runs.loc[i, "seed"],
                                       "scenario": scen_label[(sc, run_scen_sig[(i, sc)])], "metric": m,
                                       "value": float(v) if recorded else math.nan,
                                       "run_dir": runs.loc[i, "run_dir"], "mtime": runs.loc[i, "mtime"],
                                       "recorded": recorded})
        cands = sorted({lb for lb in label_of.values() if lb == baseline or lb.split("[", 1)[0] == baseline})
        if len(cands) == 1:
            g.baseline = cands[0]
        elif not cands:
            g.notes.append(f"no runs of the baseline {baseline!r} in this group: gains are n/a")
        else:
            g.notes.append(f"baseline {baseline!r} is ambiguous here ({', '.join(cands)}): pass one of these "
                           "labels as --baseline; gains are n/a")
        groups.append(g)

    values = pd.DataFrame(value_rows, columns=[*_empty_values().columns, "mtime", "recorded"])
    values, superseded = _dedupe(values)
    failures += superseded
    missing = [m for m in metrics if not values.loc[values["metric"] == m, "recorded"].any()]
    if missing:
        notes.append(f"metric(s) not found in any run: {', '.join(missing)}")
    table = _stats(values, groups, metrics, alpha)
    return Aggregate(table, values.drop(columns=["mtime", "recorded"]), groups, failures, baseline, metrics, alpha,
                     notes)


def _group_name(i: int) -> str:
    name = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        name = chr(65 + r) + name
    return name


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


TABLE_COLUMNS = ["group", "config_sig", "experiment", "model", "is_baseline", "scenario", "metric",
                 "lower_is_better", "mean", "std", "n", "gain", "p_value", "n_pairs", "p_wilcoxon", "significant",
                 "best", "note"]


def _empty_table() -> pd.DataFrame:
    return pd.DataFrame(columns=TABLE_COLUMNS)


def _empty_values() -> pd.DataFrame:
    return pd.DataFrame(columns=["group", "model", "seed", "scenario", "metric", "value", "run_dir"])


def _std(s: pd.Series) -> float:
    """Sample std over seeds; NaN for one seed or when a value is not finite (no warning for inf - inf)."""
    if len(s) < 2:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(s.std(ddof=1, skipna=False))


def _stats(values: pd.DataFrame, groups: list[Group], metrics: list[str], alpha: float) -> pd.DataFrame:
    rows = []
    for g in groups:
        gv = values[values["group"] == g.name]
        models = list(dict.fromkeys(gv["model"]))
        models = ([g.baseline] if g.baseline else []) + sorted(m for m in models if m != g.baseline)
        scenarios = list(dict.fromkeys([*gv.loc[gv["model"] == g.baseline, "scenario"], *gv["scenario"]]))
        for sc in scenarios:
            for metric in metrics:
                cell = gv[(gv["scenario"] == sc) & (gv["metric"] == metric)]
                rec = cell[cell["recorded"].astype(bool)]  # a recorded NaN / inf stays (and shows), absent ones go
                series = {m: rec[rec["model"] == m].set_index("seed")["value"] for m in models}
                base = series.get(g.baseline) if g.baseline else None
                lib = lower_is_better(metric)
                means = {m: float(s.mean(skipna=False)) if len(s) else math.nan for m, s in series.items()}
                finite = [v for v in means.values() if math.isfinite(v)]
                best = (min(finite) if lib else max(finite)) if finite else math.nan
                for m in models:
                    s = series[m]
                    row = {"group": g.name, "config_sig": g.signature, "experiment": ",".join(g.experiments),
                           "model": m, "is_baseline": m == g.baseline, "scenario": sc, "metric": metric,
                           "lower_is_better": lib, "mean": means[m], "std": _std(s), "n": len(s), "gain": math.nan, "p_value": math.nan, "n_pairs": 0,
                           "p_wilcoxon": math.nan, "significant": False, "best": bool(means[m] == best),
                           "note": ""}
                    if not len(s):
                        row["note"] = "no runs" if cell[cell["model"] == m].empty else "metric missing"
                    elif m != g.baseline:
                        if base is None or not len(base):
                            row["note"] = "no baseline runs for this scenario" if g.baseline else ""
                        else:
                            b = float(base.mean(skipna=False))
                            if b != 0:
                                row["gain"] = ((b - means[m]) if lib else (means[m] - b)) / abs(b)
                            p, pw, n, note = _paired(s, base)
                            row.update(p_value=p, p_wilcoxon=pw, n_pairs=n, note=note,
                                       significant=bool(math.isfinite(p) and p < alpha))
                    rows.append(row)
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    for c in ("mean", "std", "gain", "p_value", "p_wilcoxon"):
        table[c] = table[c].astype(float)
    return table


def describe_groups(agg: Aggregate) -> list[str]:
    """One line per group: what sets it apart (for headers and messages)."""
    out = []
    for g in agg.groups:
        diff = ", ".join(f"{k}={_fmt_value(v)}" for k, v in g.differing.items())
        out.append(f"group {g.name} ({g.n_runs} runs, config {g.signature})" + (f": {diff}" if diff else ""))
    return out


__all__ = ["Aggregate", "Failure", "Group", "IncomparableRuns", "aggregate", "describe_groups", "find_run_dirs",
           "flatten", "load_runs", "lower_is_better"]
