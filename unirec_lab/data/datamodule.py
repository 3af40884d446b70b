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
from typing import TYPE_CHECKING, Any

import numpy as np
import pytorch_lightning as pl
import torch

from unirec_lab.data.batching import Batch, IndexedRows, TensorBatches, take_rows
from unirec_lab.data.derived import BundleTables, Derived, ensure_derived, load_derived
from unirec_lab.data.feature_space import build_feature_space
from unirec_lab.data.history import (
    ACTION_POSITIVE,
    build_feedback_histories,
    chunk_positions,
    history_settings,
    pad_histories,
)
from unirec_lab.data.prepare import ScenarioSource, prepare_bundle
from unirec_lab.data.schema import Bundle, check_stats_counts, read_bundle
from unirec_lab.data.val_subset import budget_rows, check_budget, group_subset
from unirec_lab.features import SPLIT_LEVEL, SPLITS, FeatureSpace

if TYPE_CHECKING:
    import pandas as pd

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


def derived_rows(d: Derived, history: Mapping[str, Any] | None, name: str) -> dict[str, slice | np.ndarray]:
    """Per split, the rows of ``d`` that enter it: a slice, or for ``history.train_chunk`` the training rows
    that end a chunk."""
    settings = history_settings(name, history)
    out: dict[str, slice | np.ndarray] = {s: d.rows(s) for s in SPLITS}
    if settings["train_chunk"] is not None:
        rows = d.rows("train")
        n = rows.stop - rows.start
        out["train"] = rows.start + np.flatnonzero(chunk_end_rows(
            np.asarray(d.user[rows]), np.asarray(d.train_ts_rank), np.ones(n, dtype=bool), settings["train_chunk"]))
    return out


def derived_columns(d: Derived, space: FeatureSpace, s_idx: int, rows: slice | np.ndarray, group_offset: int,
                    hist_offset: int) -> dict[str, np.ndarray]:
    """The columns of :func:`interaction_tensors` for these rows of a bundle's derived arrays, except that
    ``history_index`` (into the scenario's history table, offset by ``hist_offset``) replaces the per-row
    ``history`` / ``history_action`` (see :func:`history_table`)."""
    name = space.scenarios[s_idx]
    user = d.user[rows]
    return {
        "scenario": np.full(len(user), s_idx, dtype=np.int64),
        "user": space.global_users(name, user),
        "item": space.global_items(name, d.item[rows]),
        "label": d.label[rows].astype(np.float32),
        "group": np.add(d.group[rows], group_offset, dtype=np.int64),
        "history_index": np.add(d.hist_index[rows], hist_offset, dtype=np.int64),
    }


def history_table(d: Derived, space: FeatureSpace, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The scenario's distinct histories in global item ids (0 = padding) and their feedback actions."""
    hist = np.where(d.hist_items >= 0, d.hist_items.astype(np.int64) + space.item_offset[name] + 1, 0)
    return hist, np.ascontiguousarray(d.hist_actions)


class MultiScenarioDataModule(pl.LightningDataModule):
    """Loads the selected scenarios' bundles (preparing them on first use) and serves batches."""

    def __init__(self, scenarios: Mapping[str, Any], cache_dir: str | Path, batch_size: int = 1024,
                 eval_batch_size: int = 32768, history_len: int = 20, mix_alpha: float = 1.0,
                 shuffle_seed: int = 0, val_budget: float | None = None, val_subset_seed: int = 0,
                 length_buckets: int = 0) -> None:
        """``val_budget``: validate on whole groups of at most ``val_budget x`` each scenario's training rows
        (seeded by ``val_subset_seed``, fixed across epochs and runs); ``None`` validates every row.
        ``length_buckets``: training batches of similar history span, cut to it (see ``data.batching``)."""
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
        if isinstance(length_buckets, bool) or not isinstance(length_buckets, int) or length_buckets < 0:
            raise ValueError(f"data.length_buckets={length_buckets!r}, expected an integer >= 0 (batches per "
                             "length-sorted chunk; 0 = off)")
        self.length_buckets = length_buckets
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
        self._prepared: dict[str, tuple[Path, Path]] = {}  # scenario -> (bundle, its derived arrays)
        self.space: FeatureSpace | None = None
        self.splits: dict[str, Batch] = {}
        self.val_subset: dict[str, dict[str, int]] = {}  # per scenario: validation rows / groups kept of all

    @property
    def scenario_names(self) -> list[str]:
        return list(self.sources)

    def prepare_data(self) -> None:
        """Each scenario's bundle and derived arrays, built when absent, stale or corrupt (checked once per
        process: Lightning calls this again in ``fit`` after :meth:`setup` has used them)."""
        if self._prepared:
            return
        for name, src in self.sources.items():
            bundle = prepare_bundle(src, self.cache_dir)
            settings = self.history_settings[name]
            self._prepared[name] = (bundle, ensure_derived(bundle, self.history_len, settings["feedback"],
                                                           settings["eval_chunk"]))

    def setup(self, stage: str | None = None) -> None:
        if self.space is not None:
            return
        self.prepare_data()
        self.bundles = {k: read_bundle(p, interactions=False, tables=False) for k, (p, _) in self._prepared.items()}
        derived = {k: load_derived(where) for k, (_, where) in self._prepared.items()}
        self.space = build_feature_space({k: BundleTables(b.spec, derived[k].tables["users"],
                                                          derived[k].tables["items"])
                                          for k, b in self.bundles.items()})
        parts: dict[str, list[dict[str, np.ndarray]]] = {s: [] for s in SPLITS}
        n_rows = dict.fromkeys(SPLITS, 0)  # rows of each full split so far (row ids count them all)
        tables: list[tuple[np.ndarray, np.ndarray]] = []
        group_offset = hist_offset = 0
        for s_idx, (name, b) in enumerate(self.bundles.items()):
            bundle, d = self._prepared[name][0], derived[name]
            check_stats_counts(b.stats, len(d.label), int(np.count_nonzero(d.label)),
                               bundle.resolve() / "stats.json")
            tables.append(history_table(d, self.space, name))
            for split, rows in derived_rows(d, self.history_settings[name], name).items():
                n = len(d.user[rows])
                local = np.arange(n)
                if split == "val" and self.val_budget is not None:  # whole groups, drawn before columns are built
                    keep, self.val_subset[name] = group_subset(
                        d.group[rows], budget_rows(self.val_budget, len(parts["train"][-1]["label"])),
                        self.val_subset_seed, name)
                    local = np.flatnonzero(keep)
                    rows = (np.arange(rows.start, rows.stop) if isinstance(rows, slice) else rows)[local]
                cols = derived_columns(d, self.space, s_idx, rows, group_offset, hist_offset)
                cols["row"] = local + n_rows[split]  # the full split's row ids
                n_rows[split] += n
                parts[split].append(cols)
            group_offset += d.n_groups
            hist_offset += len(tables[-1][0])
        hist = torch.from_numpy(np.concatenate([t[0] for t in tables]))
        action = torch.from_numpy(np.concatenate([t[1] for t in tables]))
        for split in SPLITS:
            ps = parts[split]
            cat = ps[0] if len(ps) == 1 else {k: np.concatenate([p[k] for p in ps]) for k in ps[0]}
            t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in cat.items()}
            index = t.pop("history_index")
            row = t.pop("row")
            self.splits[split] = {**t, "history": IndexedRows(hist, index),
                                  "history_action": IndexedRows(action, index), "row": row}
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
                             rank=rank, world_size=world, length_buckets=self.length_buckets)

    def _eval_loader(self, split: str, only: list[str] | None = None) -> TensorBatches:
        rank, world = self._rank()
        data = self.splits[split]
        if only is not None:
            unknown = sorted(set(only) - set(self.sources))
            if unknown:
                raise ValueError(f"test scenarios {unknown}: expected a subset of {self.scenario_names}")
            keep = torch.isin(data["scenario"], torch.tensor([self.scenario_names.index(k) for k in only]))
            data = take_rows(data, keep)  # rows keep their global ids (evaluator dedupe)
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
