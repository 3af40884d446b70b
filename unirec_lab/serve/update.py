"""``unirec-update``: fine-tune the live artifact on the feedback logged since a version, publish a new version
only if it does not regress on the newest feedback.

Steps (each reuses the loop's own parts):
1. load the artifact's ``CURRENT`` version (verified) and the feedback watermark of ``--since`` (its
   ``info.feedback_seq``: 0 for an export), read the events after it from the feedback store;
2. map raw ids to dense ids (unknown users / items get new ids after the known ones) and cut the events by
   time: the newest ``holdout`` fraction is held out, the rest trains;
3. per model: grow its tables for the new ids (``finetune.grow``: new rows at the mean of the trained rows),
   score the held-out events with it (the *current* model: untrained rows for the new ids, as served), fine-tune a
   copy on the training events (histories = the artifact's latest positives + the earlier feedback), score again;
4. if the held-out metric drops by more than ``max_regression``: refuse (nothing is written); else write the next
   version (weights, grown spaces laid out per scenario again, ids, histories and seen items with the feedback
   positives, popularity) with ``CURRENT`` pointing at it, so a running server hot-swaps to it.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from unirec_lab.evaluation.metrics import metric_fn
from unirec_lab.serve.artifact import (
    Artifact,
    ArtifactError,
    ModelEntry,
    ScenarioData,
    current_version,
    load_artifact,
    write_version,
)
from unirec_lab.serve.export import compact_right, latest_positives
from unirec_lab.serve.feedback import Event
from unirec_lab.serve.finetune import compact, event_tensors, finetune, grow, score

POSITIVE = 0.5


class UpdateError(ValueError):
    """The update cannot run (bad flag, no usable feedback); the message says which and why."""


class Regression(RuntimeError):
    """The fine-tuned model is worse on the held-out feedback than allowed; nothing was published."""


@dataclass(frozen=True)
class UpdateSettings:
    holdout: float = 0.2  # newest fraction of the events (by time) held out to decide
    max_regression: float = 0.0  # allowed drop of the held-out metric (current - updated)
    metric: str = "auc"
    epochs: int = 1
    batch_size: int = 256
    lr: float | None = None  # None: the run's optimizer.lr
    min_events: int = 20
    seed: int = 0

    def check(self) -> None:
        if not 0 < self.holdout < 1:
            raise UpdateError(f"--holdout {self.holdout}: expected a fraction in (0, 1)")
        if self.max_regression < 0:
            raise UpdateError(f"--max-regression {self.max_regression}: expected >= 0")
        metric_fn(self.metric)  # an unknown metric fails listing the valid ones
        if self.epochs < 1 or self.batch_size < 1 or self.min_events < 2:
            raise UpdateError(f"--epochs {self.epochs} / --batch-size {self.batch_size} / --min-events "
                              f"{self.min_events}: expected >= 1 / >= 1 / >= 2")
        if self.lr is not None and not self.lr > 0:
            raise UpdateError(f"--lr {self.lr}: expected a positive learning rate")


@dataclass
class UpdateResult:
    published: str | None  # the new version's name, None when refused
    parent: str
    events: int
    train_events: int
    heldout_events: int
    new_users: dict[str, int]
    new_items: dict[str, int]
    current: float
    updated: float
    seconds: float
    feedback_seq: int


def events_frame(art: Artifact, events: list[Event]) -> tuple[pd.DataFrame, dict[str, list[str]],
                                                                dict[str, list[str]]]:
    """Events as a frame of dense ids (columns scenario, user, item, label, ts, seq) and, per scenario, the raw
    ids of the new users / items in the order their dense ids were given."""
    df = pd.DataFrame([(e.scenario, e.user, e.item, float(e.label), int(e.ts), int(e.seq or 0)) for e in events],
                      columns=["scenario", "raw_user", "raw_item", "label", "ts", "seq"])
    unknown = sorted(set(df["scenario"]) - set(art.scenarios))
    if unknown:
        raise UpdateError(f"feedback for scenario(s) {unknown} not in the artifact {sorted(art.scenarios)}")
    df["label"] = (df["label"] >= POSITIVE).astype(np.int64)
    df = df.sort_values(["ts", "seq"], kind="stable").reset_index(drop=True)
    df["user"], df["item"] = np.int64(-1), np.int64(-1)
    new: dict[str, dict[str, list[str]]] = {"user": {}, "item": {}}
    for name, part in df.groupby("scenario", sort=False):
        sc = art.scenarios[name]
        for entity, known in (("user", sc.user_ids), ("item", sc.item_ids)):
            raw = part[f"raw_{entity}"].to_numpy(str)
            idx = pd.Index(known.astype(str)).get_indexer(raw)
            fresh = pd.unique(raw[idx < 0])
            idx[idx < 0] = len(known) + pd.Index(fresh).get_indexer(raw[idx < 0])
            df.loc[part.index, entity] = idx
            new[entity][name] = list(fresh)
    return df, new["user"], new["item"]


def past_frame(art: Artifact, scenarios: list[str], before: int) -> pd.DataFrame:
    """Every user's latest positives the artifact holds, as interactions strictly before ``before`` in time."""
    parts = []
    for name in scenarios:
        h = art.scenarios[name].history
        u, pos = np.nonzero(h >= 0)
        parts.append(pd.DataFrame({"scenario": name, "user": u.astype(np.int64), "item": h[u, pos],
                                   "label": np.int64(1), "ts": before - h.shape[1] + pos.astype(np.int64)}))
    return pd.concat(parts, ignore_index=True)


def grown_scenario(sc: ScenarioData, events: pd.DataFrame, new_users: list[str], new_items: list[str],
                   history_len: int) -> ScenarioData:
    """The scenario's serving state with the new ids and the feedback positives (histories, seen, popularity)."""
    user_ids = np.concatenate([sc.user_ids.astype(str), np.asarray(new_users, dtype=str)])
    item_ids = np.concatenate([sc.item_ids.astype(str), np.asarray(new_items, dtype=str)])
    nu, ni = len(user_ids), len(item_ids)
    pos = events[events["label"] > 0]
    u, it = pos["user"].to_numpy(np.int64), pos["item"].to_numpy(np.int64)
    hist = np.vstack([sc.history, np.full((len(new_users), sc.history.shape[1]), -1, dtype=np.int64)])
    hist = compact_right(np.concatenate([hist, latest_positives(u, it, np.arange(len(u)), nu, history_len)], 1),
                         history_len)
    seen_u = np.concatenate([np.repeat(np.arange(sc.num_users), np.diff(sc.seen_indptr)), u])
    seen_i = np.concatenate([sc.seen_items, it])
    pairs = np.unique(np.stack([seen_u, seen_i], 1), axis=0) if len(seen_u) else np.zeros((0, 2), np.int64)
    indptr = np.r_[0, np.cumsum(np.bincount(pairs[:, 0], minlength=nu))].astype(np.int64)
    popularity = np.concatenate([sc.popularity, np.zeros(len(new_items))]) + np.bincount(it, minlength=ni)
    return ScenarioData(model=sc.model, user_ids=user_ids, item_ids=item_ids, history=hist, seen_indptr=indptr,
                        seen_items=pairs[:, 1].astype(np.int64), popularity=popularity.astype(np.float64))


def _holdout_split(df: pd.DataFrame, frac: float) -> np.ndarray:
    """True for the newest ``frac`` of the events by time (whole timestamps: no tie is split)."""
    cut = np.quantile(df["ts"].to_numpy(), 1 - frac, method="higher")
    held = df["ts"].to_numpy() >= cut
    if held.all():  # one timestamp for everything: fall back to the newest rows by order
        held = np.arange(len(df)) >= len(df) - max(1, int(round(frac * len(df))))
    return held


def update_artifact(root: Path, store: Any, since: str, settings: UpdateSettings) -> UpdateResult:
    """Run one update (module doc); raises :class:`Regression` (nothing written) or returns what it published."""
    settings.check()
    t0 = time.perf_counter()
    root = Path(root)
    parent = current_version(root)
    art = load_artifact(root / parent)
    if not (root / since).is_dir():
        raise UpdateError(f"--since {since}: no such version under {root} (versions are named like v0001)")
    base = load_artifact(root / since)
    seq0 = int(base.info.get("feedback_seq") or 0)
    events = store.events_since(seq0)
    if len(events) < settings.min_events:
        raise UpdateError(f"{len(events)} feedback event(s) since {since} (seq > {seq0}); need at least "
                          f"{settings.min_events} (--min-events)")
    df, new_users, new_items = events_frame(art, events)
    held = _holdout_split(df, settings.holdout)
    train, test = df[~held], df[held]
    if train.empty or test["label"].nunique() < 2:
        raise UpdateError(f"held-out feedback ({len(test)} events, newest {settings.holdout:.0%}) needs both "
                          f"labels and training events before it; got {len(train)} train, labels "
                          f"{sorted(test['label'].unique().tolist())}")
    cfg = OmegaConf.create(art.config)
    optimizer = hydra.utils.instantiate(cfg.optimizer, **({} if settings.lr is None else {"lr": settings.lr}))
    fn = metric_fn(settings.metric)
    spaces, models = dict(art.spaces), dict(art.models)
    before, after = [], []
    for mname, entry in art.models.items():
        served = [s for s, sc in art.scenarios.items() if sc.model == mname]
        part = df[df["scenario"].isin(served)]
        if part.empty:
            continue
        space = art.spaces[entry.space]
        grow_u = {s: len(new_users.get(s, [])) for s in served}
        grow_i = {s: len(new_items.get(s, [])) for s in served}
        current = copy.deepcopy(art.module(mname))
        grown = grow(current, space, grow_u, grow_i, seed=settings.seed)
        past = past_frame(art, served, int(df["ts"].min()))
        tr, te = part[~held[part.index]], part[held[part.index]]
        heldout = event_tensors(grown, te, art.history_len, pd.concat([past, tr], ignore_index=True))
        y, g = heldout["label"].numpy(), heldout["group"].numpy()
        before.append((fn(y, score(current, heldout), g), len(y)))
        model = copy.deepcopy(current)
        if not tr.empty:
            data = event_tensors(grown, tr, art.history_len, past)
            finetune(model, data, optimizer, grown.scenarios, None, settings.epochs,
                     batch_size=settings.batch_size, seed=settings.seed)
        after.append((fn(y, score(model, heldout), g), len(y)))
        flat = compact(model, grown)
        spaces[entry.space] = flat
        models[mname] = ModelEntry(entry.space, entry.spec, {k: v.detach().clone() for k, v in
                                                             model.state_dict().items()})
    w = np.array([n for _, n in before], dtype=float)
    cur = float(np.average([v for v, _ in before], weights=w))
    upd = float(np.average([v for v, _ in after], weights=w))
    last_seq = int(df["seq"].max())
    result = UpdateResult(None, parent, len(df), len(train), len(test),
                          {s: len(v) for s, v in new_users.items() if v}, {s: len(v) for s, v in new_items.items() if v},
                          cur, upd, 0.0, last_seq)
    if cur - upd > settings.max_regression:
        result.seconds = time.perf_counter() - t0
        raise Regression(f"refused: held-out {settings.metric} {upd:.4f} vs current {cur:.4f} on the newest "
                         f"{len(test)} feedback events: regressed by {cur - upd:.4f} > --max-regression "
                         f"{settings.max_regression:g}; nothing published ({parent} stays current)")
    scenarios = {s: grown_scenario(sc, df[df["scenario"] == s], new_users.get(s, []), new_items.get(s, []),
                                   art.history_len) if s in set(df["scenario"]) else sc
                 for s, sc in art.scenarios.items()}
    info = {**{k: v for k, v in art.info.items() if k != "load_seconds"}, "parent": parent, "feedback_seq": last_seq,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "update": {"since": since, "events": len(df), "heldout": len(test), "metric": settings.metric,
                       "current": cur, "updated": upd, "settings": dataclasses.asdict(settings)}}
    new = Artifact(art.history_len, spaces, models, scenarios, art.config, info)
    try:
        vdir = write_version(root, new)
    except ArtifactError as e:
        raise UpdateError(str(e)) from None
    result.published = vdir.name
    result.seconds = time.perf_counter() - t0
    return result
