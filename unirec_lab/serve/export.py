"""A finished run -> the first version of a serving artifact (:mod:`unirec_lab.serve.artifact`).

Takes the checkpoint(s) the run *tested* (``engine.selection.tested_checkpoint``: the global best, each
scenario's own best under ``selection.scope=per_scenario``, or each scenario's separate model), the feature
spaces they were built on (rebuilt from the run's cached scenario bundles, so export runs where the run's
``paths.cache_dir`` is reachable), and per scenario: id maps, the latest history of every user (all splits:
serving comes after the test period), every positive (masked from recommendations) and item popularity.

Raw ids: bundles number users and items densely and do not keep the raw ids, so the id map of an exported run
is the scenario's own (bundle) id as a string ("17"), the ids ``unirec-explain`` prints; an id outside the map
is an unknown user (popularity fallback) until an update appends it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf

from unirec_lab.data.history import pad_histories
from unirec_lab.engine.build import build_datamodule
from unirec_lab.engine.checkpoints import read_checkpoint
from unirec_lab.engine.selection import tested_checkpoint
from unirec_lab.results.record import RESULT_FILE, RunRecord
from unirec_lab.serve.artifact import Artifact, ArtifactError, ModelEntry, ScenarioData, write_version

PAD = -1


def latest_positives(user: np.ndarray, item: np.ndarray, order: np.ndarray, num_users: int, k: int) -> np.ndarray:
    """``[num_users, k]``: each user's last ``k`` items by ``order`` (oldest first, ``-1`` left padding)."""
    out = np.full((num_users, k), PAD, dtype=np.int64)
    if k == 0 or len(user) == 0:
        return out
    idx = np.lexsort((np.arange(len(user)), order, user))
    u, it = user[idx], item[idx]
    counts = np.bincount(u, minlength=num_users)
    end = np.cumsum(counts)
    from_end = end[u] - np.arange(len(u))  # 1 = the user's latest
    keep = from_end <= k
    out[u[keep], k - from_end[keep]] = it[keep]
    return out


def compact_right(hist: np.ndarray, k: int) -> np.ndarray:
    """Drop padding inside each row (keeping order) and keep the last ``k`` entries, left-padded."""
    order = np.argsort(hist != PAD, axis=1, kind="stable")  # padding first, items in their order after
    return np.take_along_axis(hist, order, axis=1)[:, -k:] if k else hist[:, :0]


def scenario_state(inter: pd.DataFrame, num_users: int, num_items: int, history_len: int, model: str
                   ) -> ScenarioData:
    """Serving state of one scenario from its bundle's interactions (every split)."""
    user = inter["user"].to_numpy(np.int64)
    item = inter["item"].to_numpy(np.int64)
    ts = inter["ts"].to_numpy(np.int64)
    pos = inter["label"].to_numpy() > 0.5
    hist = latest_positives(user[pos], item[pos], ts[pos], num_users, history_len)
    if "history" in inter.columns:  # explicit histories (MIND): the user's latest row's, then later positives
        last = latest_positives(user, np.arange(len(user)), ts, num_users, 1)[:, 0]
        explicit = np.full((num_users, history_len), PAD, dtype=np.int64)
        has = last >= 0
        if has.any():
            explicit[has] = pad_histories(inter["history"].to_numpy()[last[has]], history_len)
        after = pos & (ts > ts[np.maximum(last, 0)][user])
        hist = compact_right(np.concatenate(
            [explicit, latest_positives(user[after], item[after], ts[after], num_users, history_len)], 1),
            history_len)
    order = np.lexsort((item[pos], user[pos]))
    seen_u, seen_i = user[pos][order], item[pos][order]
    keep = np.r_[True, (seen_u[1:] != seen_u[:-1]) | (seen_i[1:] != seen_i[:-1])] if len(seen_u) else seen_u > 0
    seen_u, seen_i = seen_u[keep], seen_i[keep]
    indptr = np.r_[0, np.cumsum(np.bincount(seen_u, minlength=num_users))].astype(np.int64)
    popularity = np.bincount(item[pos], minlength=num_items).astype(np.float64)
    return ScenarioData(model=model, user_ids=np.arange(num_users).astype(str), item_ids=np.arange(num_items).astype(str),
                        history=hist, seen_indptr=indptr, seen_items=seen_i.astype(np.int64), popularity=popularity)


def model_state(ckpt: Path) -> dict[str, torch.Tensor]:
    state = read_checkpoint(ckpt)["state_dict"]
    return {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}


def model_spec(config: dict[str, Any]) -> dict[str, Any]:
    return {"builder": config["model"]["builder"], "backbone": config["backbone"], "head": config["head"]}


def run_artifact(run_dir: Path) -> Artifact:
    """The in-memory artifact of a finished run (see module doc)."""
    path = run_dir / RESULT_FILE
    if not path.is_file():
        raise ArtifactError(f"{path}: not found (is {run_dir} a finished unirec-train run dir?)")
    record = RunRecord.read(path)
    if not isinstance(record.config, dict):
        raise ArtifactError(f"{path}: has no resolved config to export")
    picks: dict[str, tuple[Path, list[str]]] = {}
    for s in record.scenarios:
        ckpt, keys = tested_checkpoint(record, run_dir, s)
        if ckpt is None:
            raise ArtifactError(f"{path}: no selected checkpoint recorded for scenario {s!r}")
        if not ckpt.is_file():
            raise ArtifactError(f"{ckpt}: checkpoint missing (deleted after the run?)")
        picks[s] = (ckpt, keys)
    cfg = OmegaConf.create(record.config)
    history_len = int(record.config["data"]["history_len"])
    spec = model_spec(record.config)
    spaces, models, scenarios, space_of_keys, model_of_ckpt = {}, {}, {}, {}, {}
    for s, (ckpt, keys) in picks.items():
        key = tuple(keys)
        if key not in space_of_keys:
            dm = build_datamodule(cfg, list(keys))
            name = "joint" if len(keys) > 1 else keys[0]
            space_of_keys[key] = (name, dm)
            spaces[name] = dm.space
        space_name, dm = space_of_keys[key]
        if ckpt not in model_of_ckpt:
            name = s if len(picks) > 1 and len({c for c, _ in picks.values()}) > 1 else "global"
            model_of_ckpt[ckpt] = name
            models[name] = ModelEntry(space_name, spec, model_state(ckpt))
        b = dm.bundles[s]
        scenarios[s] = scenario_state(b.interactions, b.spec.num_users, b.spec.num_items, history_len,
                                      model_of_ckpt[ckpt])
    info = {"source_run": str(run_dir.resolve()), "run_name": record.run_name, "mode": record.mode, "selection_scope": (record.config.get("selection") or {}).get("scope"),
            "checkpoints": {s: str(c.relative_to(run_dir)) for s, (c, _) in picks.items()},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "parent": None,
            "raw_ids": "bundle ids as strings (bundles keep no raw ids)"}
    return Artifact(history_len, spaces, models, scenarios, record.config, info)


def export_run(run_dir: Path | str, out_dir: Path | str | None = None) -> Path:
    """Write ``run_dir``'s artifact as a new version under ``out_dir`` (default ``RUN_DIR/artifact``) and make
    it current; returns the artifact root. Every model is rebuilt from its spec and loaded before writing, so
    an export that could not be served fails here."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "artifact"
    art = run_artifact(run_dir)
    for name in art.models:
        art.module(name)
    write_version(out, art)
    return out
