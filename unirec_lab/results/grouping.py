"""Which runs are comparable: config signatures, the keys that differ, and the labels that tell rows apart.

A run's flat config splits three ways: *model* keys (``MODEL_KEYS``: they tell models apart), per-scenario data
keys (``scenarios.<s>.*``: compared per scenario, variants get ``news#1``, ``news#2``) and everything else, whose
signature is the run's *group*. ``IGNORED_KEYS`` (and ``*seed`` keys equal to the seed) never split anything.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

# Keys that identify the model: they never split groups, they tell models apart.
# selection.scope is part of a model's protocol (one checkpoint for all scenarios, or one per scenario); the
# sequence objectives and a scenario's history settings (which feedback a history carries, chunked training rows)
# are what a model is trained on and reads, never which rows are evaluated.
MODEL_KEYS = ("model", "model.*", "backbone", "backbone.*", "backbone_name", "head", "head.*", "head_name",
              "selection.scope", "objectives", "objectives.*", "scenarios.*.history", "scenarios.*.history.*")
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


class IncomparableRuns(ValueError):
    """Raised by ``aggregate(strict=True)`` when the runs do not share one config."""


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
    # further baselines (``--baseline a,b``): requested name -> its label here (None: absent or ambiguous)
    extra_baselines: dict[str, str | None] = field(default_factory=dict)
    scenario_variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # news#1 -> differing keys
    notes: list[str] = field(default_factory=list)


@dataclass
class ConfigParts:
    """One run's flat config, split: ``group`` keys (signature), ``model`` keys, ``scenario`` data keys."""

    group: dict[str, Any]
    model: dict[str, Any]
    scenario: dict[str, Any]


def match(key: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def _norm(v: Any) -> str:
    """A comparable text form: 1 == 1.0, dict order irrelevant."""
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, int | float):
        return repr(float(v))
    return json.dumps(v, sort_keys=True, default=str)


def signature(items: dict[str, Any]) -> str:
    text = json.dumps(sorted((k, _norm(v)) for k, v in items.items()))
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def seed_derived(runs: pd.DataFrame) -> set[str]:
    """``*seed`` keys equal to the run's seed in every run that has them (e.g. ``data.shuffle_seed: ${seed}``)."""
    out: set[str] = set()
    keys = {k for c in runs["config"] for k in c if k.rsplit(".", 1)[-1].endswith("seed")}
    for k in keys:
        vals = [(c[k], s) for c, s in zip(runs["config"], runs["seed"]) if k in c]
        if all(isinstance(v, int | float) and not isinstance(v, bool) and v == s for v, s in vals):
            out.add(k)
    return out


def split_config(cfg: dict[str, Any], skip: set[str], ignored: Sequence[str]) -> ConfigParts:
    """``cfg`` without the ``skip`` keys and ``ignored`` patterns, split into group / model / scenario keys."""
    parts = ConfigParts({}, {}, {})
    for k, v in cfg.items():
        if k in skip or match(k, ignored):
            continue
        if match(k, MODEL_KEYS):
            parts.model[k] = v
        elif k.startswith("scenarios.") and k.count(".") >= 2:
            parts.scenario[k] = v
        else:
            parts.group[k] = v
    return parts


def differing(configs: Sequence[dict[str, Any]]) -> list[str]:
    keys = sorted({k for c in configs for k in c})
    return [k for k in keys if len({_norm(c.get(k, "<missing>")) for c in configs}) > 1]


def fmt_value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, default=str)


def model_labels(idents: dict[Any, dict[str, Any]], name: str) -> dict[Any, str]:
    """Model label per identity: the name, plus the differing keys when one name has several identities."""
    if len(idents) == 1:
        return {i: name for i in idents}
    diff = differing(list(idents.values()))
    # class paths are implied by the other differing keys (e.g. backbone_name); keep them only if nothing else
    short = [k for k in diff if not k.endswith(("_target_", "_partial_"))] or diff

    def show(k: str, v: Any) -> str:
        text = fmt_value(v)
        return text.rsplit(".", 1)[-1] if k.endswith("_target_") else text

    return {i: name + "[" + ",".join(f"{k}={show(k, c.get(k, '<missing>'))}" for k in short) + "]"
            for i, c in idents.items()}


def group_name(i: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA (spreadsheet column names)."""
    name = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        name = chr(65 + r) + name
    return name


def group_runs(runs: pd.DataFrame, parts: list[ConfigParts], strict: bool) -> tuple[list[list[int]], list[str]]:
    """Run indices per group (largest first, then by first run dir) and the keys that differ between groups."""
    by_sig: dict[str, list[int]] = {}
    for i, p in enumerate(parts):
        by_sig.setdefault(signature(p.group), []).append(i)
    order = sorted(by_sig, key=lambda s: (-len(by_sig[s]), runs.loc[by_sig[s][0], "run_dir"]))
    diff_keys = differing([parts[by_sig[s][0]].group for s in order]) if len(order) > 1 else []
    if strict and len(order) > 1:
        shown = ", ".join(diff_keys[:6]) + (f" (+{len(diff_keys) - 6} more)" if len(diff_keys) > 6 else "")
        raise IncomparableRuns(f"{len(runs)} runs have {len(order)} different configs (differing keys: {shown}); "
                               "drop --strict to report them as separate groups")
    return [by_sig[s] for s in order], diff_keys


def scenario_labels(runs: pd.DataFrame, parts: list[ConfigParts], idx: list[int], g: Group,
                    strict: bool) -> dict[tuple[int, str], str]:
    """Row label of each (run, scenario) in a group: the scenario, or ``<scenario>#<k>`` for its k-th data config
    (recorded in ``g.scenario_variants``)."""
    variants: dict[str, dict[str, dict[str, Any]]] = {}  # scenario -> sig -> its data config
    run_sig: dict[tuple[int, str], str] = {}
    for i in idx:
        for sc in runs.loc[i, "test"]:
            base = sc.split("/", 1)[0]  # a slice "<scenario>/<slice>" has its scenario's data config
            sub = {k[len(f"scenarios.{base}."):]: v for k, v in parts[i].scenario.items()
                   if k.startswith(f"scenarios.{base}.")}
            run_sig[(i, sc)] = signature(sub)
            variants.setdefault(sc, {}).setdefault(run_sig[(i, sc)], sub)
    label: dict[tuple[str, str], str] = {}
    for sc, by_sig in variants.items():
        if len(by_sig) == 1:
            label[(sc, next(iter(by_sig)))] = sc
            continue
        dk = differing(list(by_sig.values()))
        if strict:
            raise IncomparableRuns(f"scenario {sc!r} has {len(by_sig)} different data configs (differing keys: "
                                   f"{', '.join(dk)}); drop --strict to report them as separate rows")
        for vi, (ss, sub) in enumerate(by_sig.items(), 1):
            label[(sc, ss)] = f"{sc}#{vi}"
            g.scenario_variants[f"{sc}#{vi}"] = {k: sub.get(k, "<missing>") for k in dk}
    return {key: label[(key[1], ss)] for key, ss in run_sig.items()}


def run_model_labels(runs: pd.DataFrame, parts: list[ConfigParts], idx: list[int]) -> dict[int, str]:
    """Model label of each run in a group; a joint model's scenario set is part of what it is.

    One name whose configs cover disjoint scenarios (e.g. ``strongest``: SASRec on one scenario, DKT on another)
    is one row name: its configs never meet in a cell, so nothing needs telling apart."""
    idents: dict[str, dict[Any, dict[str, Any]]] = {}
    covers: dict[tuple, set[str]] = {}
    run_ident: dict[int, tuple] = {}
    for i in idx:
        ident_cfg = dict(parts[i].model)
        if runs.loc[i, "mode"] != "separate":
            ident_cfg["scenarios"] = "+".join(runs.loc[i, "scenarios"])
        key = (runs.loc[i, "model"], signature(ident_cfg))
        idents.setdefault(runs.loc[i, "model"], {}).setdefault(key, ident_cfg)
        covers.setdefault(key, set()).update(sc.split("/", 1)[0] for sc in runs.loc[i, "test"])
        run_ident[i] = key
    label_of: dict[tuple, str] = {}
    for name, ids in idents.items():
        scen = [covers[k] for k in ids]
        disjoint = sum(len(s) for s in scen) == len(set().union(*scen))
        label_of.update({k: name for k in ids} if disjoint else model_labels(ids, name))
    return {i: label_of[k] for i, k in run_ident.items()}


def baseline_label(g: Group, labels: Iterable[str], baseline: str) -> str | None:
    """The one label naming ``baseline`` in ``g`` (None, with a note in ``g.notes``, when absent or ambiguous)."""
    cands = sorted({lb for lb in labels if lb == baseline or lb.split("[", 1)[0] == baseline})
    if len(cands) == 1:
        return cands[0]
    if not cands:
        g.notes.append(f"no runs of the baseline {baseline!r} in this group: gains are n/a")
    else:
        g.notes.append(f"baseline {baseline!r} is ambiguous here ({', '.join(cands)}): pass one of these "
                       "labels as --baseline; gains are n/a")
    return None


def pick_baseline(g: Group, labels: Iterable[str], baseline: str, extra: Sequence[str] = ()) -> None:
    """Set ``g.baseline`` to the one label naming ``baseline`` (and ``g.extra_baselines`` for ``extra``), or note
    why gains are n/a."""
    labels = list(labels)
    g.baseline = baseline_label(g, labels, baseline)
    g.extra_baselines = {b: baseline_label(g, labels, b) for b in extra}
