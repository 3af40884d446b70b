"""``MultiScenarioDataModule``: scenario bundles loaded once into tensors, served as mixed batches.

Every row carries its scenario index, global user/item ids, label, a global group id (scenario-offset so two
scenarios' groups never merge), a global row id (used to count each evaluation row exactly once) and its
behaviour history padded to ``history_len`` (global item ids, 0 = padding) with the feedback on each entry
(``history_action``: 1 negative, 2 positive, 0 padding; which entries enter is the scenario's ``history.feedback``).
A scenario's ``history.train_chunk: L`` trains on one row per chunk of ``L`` consecutive training rows of a user
(the chunk's last row, plus the user's last), for sequence objectives that score every history position: each
response is then trained on once, as knowledge tracing's chunked sequences do. ``history.eval_chunk: C`` cuts
the val/test rows' histories at chunks of ``C`` consecutive rows of a user (AKT's evaluation: each student split
into chunks of 200, every chunk run from an empty state).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch

from unirec_lab.data.batching import Batch, TensorBatches
from unirec_lab.data.feature_space import build_feature_space
from unirec_lab.data.history import (
    ACTION_POSITIVE,
    build_feedback_histories,
    chunk_positions,
    history_settings,
    pad_histories,
)
from unirec_lab.data.prepare import ScenarioSource, prepare_bundle
from unirec_lab.data.schema import Bundle, read_bundle
from unirec_lab.data.val_subset import check_budget, subset_mask
from unirec_lab.features import SPLIT_LEVEL, SPLITS, FeatureSpace
from unirec_lab.utils.memory import ensure_fits, history_bytes

log = logging.getLogger(__name__)


def chunk_end_rows(user: np.ndarray, ts: np.ndarray, train: np.ndarray, chunk: int) -> np.ndarray:
    """Mask of the training rows that end a chunk of ``chunk`` consecutive training rows of their user (in time
    order), or are the user's last training row."""
    idx = np.flatnonzero(train)
    order = idx[np.lexsort((idx, ts[idx], user[idx]))]
    u = user[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = u[1:] != u[:-1]
    start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    pos = np.arange(len(order)) - start
    last = np.ones(len(order), dtype=bool)
    last[:-1] = u[1:] != u[:-1]
    keep = np.zeros(len(user), dtype=bool)
    keep[order[((pos + 1) % chunk == 0) | last]] = True
    return keep


def scenario_tensors(bundle: Bundle, space: FeatureSpace, s_idx: int, history_len: int,
                     group_offset: int, history: Mapping[str, Any] | None = None,
                     ) -> tuple[dict[str, dict[str, np.ndarray]], int]:
    """Arrays per split for one scenario, in global id space. Returns them and the scenario's group count."""
    return interaction_tensors(bundle.interactions, space, s_idx, history_len, group_offset, history)


def interaction_tensors(df: pd.DataFrame, space: FeatureSpace, s_idx: int, history_len: int,
                        group_offset: int, history: Mapping[str, Any] | None = None,
                        ) -> tuple[dict[str, dict[str, np.ndarray]], int]:
    """:func:`scenario_tensors` of an interactions frame of the bundle's shape (also new feedback events: the
    updater turns them into batches here, so there is one feature pipeline)."""
    name = space.scenarios[s_idx]
    settings = history_settings(name, history)
    level = df["split"].map(SPLIT_LEVEL).to_numpy()
    if "history" in df.columns:  # an explicit click history: every entry a positive
        hist = pad_histories(df["history"], history_len)
        action = np.where(hist >= 0, ACTION_POSITIVE, 0).astype(np.int8)
    else:
        hist, action = build_feedback_histories(df["user"].to_numpy(), df["item"].to_numpy(),
                                                df["label"].to_numpy(), df["ts"].to_numpy(), level, history_len,
                                                settings["feedback"])
    if settings["eval_chunk"] is not None:  # val/test rows: only the earlier entries of their own chunk
        within = chunk_positions(df["user"].to_numpy(), df["ts"].to_numpy(), settings["eval_chunk"])
        drop = (level != SPLIT_LEVEL["train"])[:, None] & (np.arange(history_len)[None, :] < history_len - within[:, None])
        hist, action = np.where(drop, -1, hist), np.where(drop, 0, action).astype(np.int8)
    hist = np.where(hist >= 0, hist + space.item_offset[name] + 1, 0)
    raw_group = df["group"].to_numpy() if "group" in df.columns else df["user"].to_numpy()
    uniq, group = np.unique(raw_group, return_inverse=True)
    cols = {
        "scenario": np.full(len(df), s_idx, dtype=np.int64),
        "user": space.global_users(name, df["user"].to_numpy()),
        "item": space.global_items(name, df["item"].to_numpy()),
        "label": df["label"].to_numpy(dtype=np.float32),
        "group": group.astype(np.int64) + group_offset,
        "history": hist,
        "history_action": action,
    }
    keep = np.ones(len(df), dtype=bool)
    if settings["train_chunk"] is not None:
        train = level == SPLIT_LEVEL["train"]
        keep = ~train | chunk_end_rows(df["user"].to_numpy(), df["ts"].to_numpy(), train, settings["train_chunk"])
    out = {}
    for split in SPLITS:
        m = (level == SPLIT_LEVEL[split]) & keep
        out[split] = {k: v[m] for k, v in cols.items()}
    return out, len(uniq)


class MultiScenarioDataModule(pl.LightningDataModule):
    """Loads the selected scenarios' bundles (preparing them on first use) and serves batches."""

    def __init__(self, scenarios: Mapping[str, Any], cache_dir: str | Path, batch_size: int = 1024,
                 eval_batch_size: int = 8192, history_len: int = 20, mix_alpha: float = 1.0,
                 shuffle_seed: int = 0, val_budget: float | None = None, val_subset_seed: int = 0) -> None:
        """``val_budget``: validate on whole groups of at most ``val_budget x`` each scenario's training rows
        (seeded by ``val_subset_seed``, fixed across epochs and runs); ``None`` validates every row."""
        super().__init__()
        if not scenarios:
            raise ValueError("scenarios is empty: select at least one, e.g. scenario=synthetic")
        if history_len < 0:
            raise ValueError(f"data.history_len={history_len}, expected >= 0")
        if mix_alpha < 0:
            raise ValueError(f"data.mix_alpha={mix_alpha}, expected >= 0")
        self.val_budget = check_budget(val_budget)
        if isinstance(val_subset_seed, bool) or not isinstance(val_subset_seed, int) or val_subset_seed < 0:
            raise ValueError(f"data.val_subset_seed={val_subset_seed!r}: expected an integer >= 0")
        self.val_subset_seed = val_subset_seed
        self.sources: dict[str, ScenarioSource] = {}
        self.loss_weights: dict[str, float] = {}
        self.history_settings: dict[str, dict[str, Any]] = {}
        for key, sc in scenarios.items():
            src = sc["source"] if isinstance(sc, Mapping) else sc
            if getattr(src, "name", key) != key:
                raise ValueError(f"scenario {key!r}: its source is named {src.name!r}; they must match")
            self.sources[key] = src
            self.loss_weights[key] = float(sc.get("loss_weight", 1.0)) if isinstance(sc, Mapping) else 1.0
            self.history_settings[key] = history_settings(
                key, sc.get("history") if isinstance(sc, Mapping) else None)
        self.cache_dir = Path(cache_dir)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.history_len, self.mix_alpha, self.shuffle_seed = history_len, mix_alpha, shuffle_seed
        self.bundles: dict[str, Bundle] = {}
        self.space: FeatureSpace | None = None
        self.splits: dict[str, Batch] = {}
        self.val_subset: dict[str, dict[str, int]] = {}  # per scenario: validation rows / groups kept of all

    @property
    def scenario_names(self) -> list[str]:
        return list(self.sources)

    def prepare_data(self) -> None:
        for src in self.sources.values():
            prepare_bundle(src, self.cache_dir)

    def setup(self, stage: str | None = None) -> None:
        if self.space is not None:
            return
        self.bundles = {k: read_bundle(prepare_bundle(s, self.cache_dir)) for k, s in self.sources.items()}
        self.space = build_feature_space(self.bundles)
        rows = sum(len(b.interactions) for b in self.bundles.values())
        ensure_fits(history_bytes(rows, self.history_len), "data.history_len", self.history_len,
                    f"the behaviour histories ({rows} rows x history_len x 8 bytes, twice while built)")
        parts: dict[str, list[dict[str, np.ndarray]]] = {s: [] for s in SPLITS}
        group_offset = 0
        for s_idx, b in enumerate(self.bundles.values()):
            arrays, n_groups = scenario_tensors(b, self.space, s_idx, self.history_len, group_offset,
                                                self.history_settings[self.scenario_names[s_idx]])
            group_offset += n_groups
            for split in SPLITS:
                parts[split].append(arrays[split])
        for split in SPLITS:
            cat = {k: np.concatenate([p[k] for p in parts[split]]) for k in parts[split][0]}
            cat["row"] = np.arange(len(cat["label"]), dtype=np.int64)
            if split == "val" and self.val_budget is not None:  # keeps the full split's row ids
                train_rows = np.array([len(p["label"]) for p in parts["train"]])
                keep, self.val_subset = subset_mask(cat, self.space.scenarios, train_rows, self.val_budget,
                                                    self.val_subset_seed)
                cat = {k: v[keep] for k, v in cat.items()}
            self.splits[split] = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in cat.items()}
        tr = self.splits["train"]
        self.space.item_train_count = torch.bincount(tr["item"], minlength=self.space.num_items)
        self.space.item_train_pos = torch.bincount(tr["item"], weights=tr["label"].double(),
                                                   minlength=self.space.num_items).long()
        self.space.user_train_pos = torch.bincount(tr["user"], weights=tr["label"].double(),
                                                   minlength=self.space.num_users).long()
        log.info("rows per split: %s", {s: len(t["label"]) for s, t in self.splits.items()})
        if self.val_subset:
            log.info("validation subset (data.val_budget=%s): %s", self.val_budget, self.val_subset)

    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def _epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return trainer.current_epoch if trainer is not None else 0

    def train_dataloader(self) -> TensorBatches:
        rank, world = self._rank()
        return TensorBatches(self.splits["train"], self.batch_size, shuffle=True, seed=self.shuffle_seed,
                             epoch_fn=self._epoch, num_scenarios=len(self.sources), mix_alpha=self.mix_alpha,
                             rank=rank, world_size=world)

    def _eval_loader(self, split: str, only: list[str] | None = None) -> TensorBatches:
        rank, world = self._rank()
        data = self.splits[split]
        if only is not None:
            unknown = sorted(set(only) - set(self.sources))
            if unknown:
                raise ValueError(f"test scenarios {unknown}: expected a subset of {self.scenario_names}")
            keep = torch.isin(data["scenario"], torch.tensor([self.scenario_names.index(k) for k in only]))
            data = {k: v[keep] for k, v in data.items()}  # rows keep their global ids (evaluator dedupe)
        return TensorBatches(data, self.eval_batch_size, shuffle=False, rank=rank, world_size=world)

    def val_dataloader(self) -> TensorBatches:
        return self._eval_loader("val")

    def test_dataloader(self) -> TensorBatches:
        return self._eval_loader("test")

    def test_loader(self, only: list[str]) -> TensorBatches:
        """The test rows of ``only`` these scenarios (per-scenario selection tests each on its own checkpoint)."""
        return self._eval_loader("test", only)

    def stats(self) -> dict[str, dict[str, Any]]:
        return {k: {kk: vv for kk, vv in b.stats.items() if kk != "provenance"} for k, b in self.bundles.items()}
