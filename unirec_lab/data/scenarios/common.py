"""Pieces every real-scenario loader shares: the source base class, splits, negative sampling, id remapping,
multi-valued and text fields. All vectorised (numpy / pandas); no per-row Python loops.

Conventions (the bundle contract, ``unirec_lab/data/schema.py``): ids are dense ``0..n-1`` within a scenario;
categorical / multi / text values use ``0`` for missing and ``1..vocab_size-1`` for values; split levels are
train 0 / val 1 / test 2.
"""

from __future__ import annotations

import hashlib
import re
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from unirec_lab.data.prepare import BuiltBundle
from unirec_lab.data.scenarios.raw import RawDataError, RawDataset
from unirec_lab.data.schema import FeatureSpec, FieldSpec
from unirec_lab.features import SPLITS

# Histories in the stats table are counted with the same cap the data module uses by default
# (conf/data/default.yaml history_len); this only affects the reported statistic, never the bundle.
STATS_HISTORY_LEN = 20
# Text tokens live in the shared namespace ``shared:tokens``; hashing words with a fixed hash into a fixed
# number of buckets gives every scenario the same id for the same word, so the shared table means something.
DEFAULT_TEXT_BUCKETS = 1 << 17


class RawScenarioSource:
    """Base class of the real-data sources: ``name`` + ``fingerprint()`` + ``build()`` (see data/prepare.py).

    Subclasses set ``dataset`` (folder under the raw root, e.g. ``"ecommerce/amazon_s3rec"``), ``loader_version``,
    implement :meth:`raw_files` (file names used) and :meth:`_build`, and pass every prepare parameter to
    ``super().__init__`` so it enters the fingerprint.
    """

    dataset: str = ""
    loader_version: int = 1

    def __init__(self, name: str, raw_dir: str | Path, params: dict[str, Any]) -> None:
        if not name:
            raise ValueError(f"{type(self).__name__}: name (the scenario key) must be non-empty")
        self.name = name
        self.raw = RawDataset(Path(raw_dir), self.dataset)
        self.params = dict(params)

    def raw_files(self) -> list[str]:
        raise NotImplementedError

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": f"{type(self).__module__}.{type(self).__name__}", "loader_version": self.loader_version,
                "name": self.name, "dataset": self.dataset, "params": self.params,
                "raw_sha256": self.raw.hashes(self.raw_files())}

    def build(self) -> BuiltBundle:
        t0 = time.perf_counter()
        hashes = self.raw.hashes(self.raw_files())  # every file present and matching MANIFEST.tsv
        built = self._build()
        inter = built.interactions
        if len(inter) == 0:
            raise RawDataError(f"scenario {self.name!r} ({self.raw.path}): no interactions left after filtering")
        for s in SPLITS:
            if not (inter["split"] == s).any():
                raise RawDataError(f"scenario {self.name!r} ({self.raw.path}): split {s!r} is empty after "
                                   f"filtering (parameters {self.params})")
        prov = {"loader": f"{type(self).__module__}.{type(self).__name__}", "loader_version": self.loader_version,
                "raw_dir": str(self.raw.path), "raw_files": hashes, "params": self.params,
                "mean_history_len": mean_history_len(inter), "stats_history_len": STATS_HISTORY_LEN,
                "build_seconds": round(time.perf_counter() - t0, 3)}
        prov.update(built.provenance)
        built.provenance = prov
        return built

    def _build(self) -> BuiltBundle:
        raise NotImplementedError

    def rng(self, *salt: int) -> np.random.Generator:
        """Seeded stream for this dataset (seed param + crc of the dataset name + salt)."""
        return np.random.default_rng([int(self.params.get("seed", 0)), zlib.crc32(self.dataset.encode()), *salt])


# ------------------------------------------------------------------------------------------------ ids, splits


def dense_ids(values: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remap raw ids to ``0..n-1`` in sorted raw-id order; returns (codes, sorted unique raw ids)."""
    uniq, codes = np.unique(np.asarray(values), return_inverse=True)
    return codes.astype(np.int64).reshape(-1), uniq


def split_names(level: np.ndarray) -> pd.Series:
    """0/1/2 -> a pandas ``str`` column ``train``/``val``/``test`` (built in Arrow: fast for millions of rows)."""
    codes = pa.array(np.asarray(level, dtype=np.int8))
    arr = pa.DictionaryArray.from_arrays(codes, pa.array(list(SPLITS))).cast(pa.large_string())
    return pd.Series(arr.to_pandas(types_mapper=lambda t: pd.StringDtype("pyarrow", na_value=np.nan)))


def split_levels(split: pd.Series) -> np.ndarray:
    """``train``/``val``/``test`` -> 0/1/2 (vectorised in Arrow; unknown values -> -1)."""
    idx = pc.index_in(pa.array(split), value_set=pa.array(list(SPLITS)))
    return idx.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def per_user_chrono_split(user: np.ndarray, order: np.ndarray, val_frac: float = 0.1, test_frac: float = 0.1,
                          min_rows: int = 3) -> np.ndarray:
    """Split level per row: each user's last ``test_frac`` rows (by ``order``, ties by row order) -> test (2),
    the ``val_frac`` before -> val (1), the rest -> train (0).

    Counts per user are ``max(1, round_half_up(frac * n))`` (0 when ``frac == 0``); users with fewer than ``min_rows`` rows go entirely
    to train (they cannot fill three splits).
    """
    user = np.asarray(user, dtype=np.int64)
    n = len(user)
    idx = np.lexsort((np.arange(n), np.asarray(order), user))
    u_sorted = user[idx]
    starts = np.r_[0, np.flatnonzero(u_sorted[1:] != u_sorted[:-1]) + 1]
    counts = np.diff(np.r_[starts, n])
    rank_sorted = np.arange(n) - np.repeat(starts, counts)
    cnt_sorted = np.repeat(counts, counts)
    n_test = np.maximum(int(test_frac > 0), np.floor(test_frac * cnt_sorted + 0.5)).astype(np.int64)
    n_val = np.maximum(int(val_frac > 0), np.floor(val_frac * cnt_sorted + 0.5)).astype(np.int64)
    lvl = np.where(rank_sorted >= cnt_sorted - n_test, 2, np.where(rank_sorted >= cnt_sorted - n_test - n_val, 1, 0))
    lvl[cnt_sorted < min_rows] = 0
    level = np.empty(n, dtype=np.int64)
    level[idx] = lvl
    return level


def positions_in_user(user: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """0-based position of each row within its user's sequence (by ``order``, ties by row order)."""
    user = np.asarray(user, dtype=np.int64)
    n = len(user)
    keys = (np.arange(n), user) if order is None else (np.arange(n), np.asarray(order), user)
    idx = np.lexsort(keys)
    u_sorted = user[idx]
    starts = np.r_[0, np.flatnonzero(u_sorted[1:] != u_sorted[:-1]) + 1]
    counts = np.diff(np.r_[starts, n])
    pos = np.empty(n, dtype=np.int64)
    pos[idx] = np.arange(n) - np.repeat(starts, counts)
    return pos


# --------------------------------------------------------------------------------------------- negatives


def sample_negatives(owner_user: np.ndarray, num: int, num_items: int, pos_keys: np.ndarray,
                     rng: np.random.Generator, distinct: bool = True, max_rounds: int = 200) -> np.ndarray:
    """For each row of ``owner_user``, ``num`` items drawn uniformly from the items that user never interacted
    with (``pos_keys``: sorted unique ``user * num_items + item`` of every observed interaction). With
    ``distinct`` the ``num`` items of one row are all different. Returns ``[len(owner_user), num]`` int64.
    """
    owner_user = np.asarray(owner_user, dtype=np.int64)
    g = len(owner_user)
    out = np.full((g, num), -1, dtype=np.int64)
    if g == 0 or num == 0:
        return out
    todo = np.arange(g)
    extra = max(8, num // 4)
    for _ in range(max_rounds):
        if len(todo) == 0:
            return out
        m = num + extra
        cand = rng.integers(0, num_items, size=(len(todo), m), dtype=np.int64)
        keys = owner_user[todo, None] * num_items + cand
        ok = ~contains_sorted(pos_keys, keys)
        if distinct:
            order = np.argsort(cand, axis=1, kind="stable")
            s = np.take_along_axis(cand, order, axis=1)
            dup_sorted = np.zeros_like(s, dtype=bool)
            dup_sorted[:, 1:] = s[:, 1:] == s[:, :-1]
            dup = np.zeros_like(dup_sorted)
            np.put_along_axis(dup, order, dup_sorted, axis=1)
            ok &= ~dup
        enough = ok.sum(axis=1) >= num
        rows = np.flatnonzero(enough)
        if len(rows):
            sel = np.argsort(~ok[rows], axis=1, kind="stable")[:, :num]  # first `num` valid, in draw order
            out[todo[rows]] = np.take_along_axis(cand[rows], sel, axis=1)
        todo = todo[~enough]
        extra *= 2
    raise RawDataError(f"could not sample {num} negatives for {len(todo)} users in {max_rounds} rounds "
                       f"(they interacted with almost every one of {num_items} items)")


def contains_sorted(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Vectorised membership of ``keys`` in the sorted array ``sorted_keys``."""
    if len(sorted_keys) == 0:
        return np.zeros(np.shape(keys), dtype=bool)
    idx = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[idx] == keys


def sorted_unique(x: np.ndarray) -> np.ndarray:
    """``np.unique`` via a plain sort (numpy 2.4's hash-based ``np.unique`` is ~100x slower on millions of
    distinct int64 values)."""
    s = np.sort(np.asarray(x).reshape(-1))
    return s[np.r_[True, s[1:] != s[:-1]]] if len(s) else s


def interaction_keys(user: np.ndarray, item: np.ndarray, num_items: int) -> np.ndarray:
    """Sorted unique ``user * num_items + item`` keys of observed interactions."""
    return sorted_unique(np.asarray(user, dtype=np.int64) * num_items + np.asarray(item, dtype=np.int64))


# ----------------------------------------------------------------------------------- multi / text fields


def multi_field(owner: np.ndarray, value: np.ndarray, n_owner: int, max_len: int,
                rank: np.ndarray | None = None) -> tuple[list[np.ndarray], int]:
    """Per-owner lists from (owner, value) pairs: values are already ``>= 1`` (0 = missing), deduplicated,
    ordered by ``rank`` ascending (ties by value) and cut to ``max_len``. Returns (lists for owners
    ``0..n_owner-1``, longest list length)."""
    owner = np.asarray(owner, dtype=np.int64)
    value = np.asarray(value, dtype=np.int64)
    df = pd.DataFrame({"o": owner, "v": value, "r": np.zeros(len(owner)) if rank is None else rank})
    df = df.drop_duplicates(["o", "v"]).sort_values(["o", "r", "v"], kind="stable")
    df["k"] = df.groupby("o", sort=False).cumcount()
    df = df[df["k"] < max_len]
    counts = np.bincount(df["o"].to_numpy(), minlength=n_owner)
    vals = df["v"].to_numpy()
    lists = np.split(vals, np.cumsum(counts)[:-1]) if n_owner else []
    return lists, int(counts.max()) if len(counts) else 0


_WORD = re.compile(r"[a-z0-9]+")


def tokenize(texts: pd.Series) -> pd.Series:
    """Lowercase alphanumeric words of each text (a list per row)."""
    return texts.fillna("").astype(str).str.lower().str.findall(_WORD)


def word_id(word: str, buckets: int) -> int:
    """Stable id of a word in ``1..buckets-1`` (blake2b, independent of the scenario and of PYTHONHASHSEED)."""
    h = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")
    return 1 + h % (buckets - 1)


def text_field(texts: pd.Series, max_len: int, buckets: int, vocab_texts: pd.Series | None = None
               ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
    """Token id lists (first ``max_len`` words) for each text, plus vocab size and a summary.

    ``buckets > 0``: word -> :func:`word_id` (same id for the same word in every scenario: the namespace is
    ``shared:tokens``); vocab size = ``buckets``. ``buckets == 0``: a vocabulary of this scenario's words
    (sorted, ids ``1..V``; built from ``vocab_texts`` too when given, e.g. every name in skill.json); vocab size
    ``V + 1``.
    """
    toks = tokenize(texts.reset_index(drop=True))
    lens = toks.map(len).to_numpy()
    flat = toks.explode()
    flat = flat[flat.notna()]
    words = pd.Index(pd.unique(flat.to_numpy(dtype=object)))
    if buckets <= 0 and vocab_texts is not None:
        extra = tokenize(vocab_texts.reset_index(drop=True)).explode().dropna().to_numpy(dtype=object)
        words = words.append(pd.Index(extra)).unique()
    if buckets > 0:
        ids = np.fromiter((word_id(w, buckets) for w in words), dtype=np.int64, count=len(words))
        vocab = buckets
        collided = int(len(words) - len(np.unique(ids)))
    else:
        order = np.argsort(np.asarray(words, dtype=object).astype(str))
        ids = np.empty(len(words), dtype=np.int64)
        ids[order] = np.arange(1, len(words) + 1)
        vocab = len(words) + 1
        collided = 0
    flat_ids = ids[words.get_indexer(flat.to_numpy(dtype=object))] if len(flat) else np.zeros(0, np.int64)
    owner = np.repeat(np.arange(len(toks)), lens)
    pos = positions_in_user(owner)
    keep = pos < max_len
    counts = np.bincount(owner[keep], minlength=len(toks))
    lists = np.split(flat_ids[keep], np.cumsum(counts)[:-1]) if len(toks) else []
    info = {"vocab_size": int(vocab), "distinct_words": int(len(words)), "buckets": int(buckets), "bucket_collisions": collided,
            "texts_with_tokens": int((lens > 0).sum()), "truncated_texts": int((lens > max_len).sum())}
    return lists, max(1, int(counts.max()) if len(counts) else 1), info


def list_column(lists: list[np.ndarray]) -> pd.Series:
    """An object column of int64 lists (parquet list<int64>)."""
    col = pd.Series([np.asarray(x, dtype=np.int64) for x in lists], dtype=object)
    return col


# ---------------------------------------------------------------------------------------------- statistics


def mean_history_len(inter: pd.DataFrame, k: int = STATS_HISTORY_LEN) -> float:
    """Mean history length per row, capped at ``k``: the explicit ``history`` column when present, else the
    number of the user's positives strictly earlier in time that the row's split may see (the rule of
    ``unirec_lab.data.history.build_histories``), computed without materialising the histories."""
    if len(inter) == 0:
        return 0.0
    if "history" in inter.columns:
        return float(np.minimum(inter["history"].map(len).to_numpy(), k).mean())
    user = inter["user"].to_numpy(np.int64)
    ts = inter["ts"].to_numpy(np.int64)
    span = int(ts.max()) - int(ts.min()) + 1
    if span * (int(user.max()) + 1) < 2**62:  # (user, ts) key without ranking the timestamps (no big sort)
        t_rank, n_t = ts - ts.min(), span
    else:
        t_rank = np.unique(ts, return_inverse=True)[1].astype(np.int64).reshape(-1)
        n_t = int(t_rank.max()) + 1
    key = user * n_t + t_rank
    level = split_levels(inter["split"])
    pos = inter["label"].to_numpy() > 0.5
    total = 0
    for lv in (0, 1, 2):
        rows = np.flatnonzero(level == lv)
        if len(rows) == 0:
            continue
        p_key = np.sort(key[pos & (level <= lv)])
        end = np.searchsorted(p_key, key[rows], side="left")
        start = np.searchsorted(p_key, user[rows] * n_t, side="left")
        total += int(np.minimum(end - start, k).sum())
    return total / len(inter)


def make_spec(name: str, num_users: int, num_items: int, user_fields: list[FieldSpec],
              item_fields: list[FieldSpec], label: str, protocol: str, group_by: str,
              has_history: bool = False, max_history_len: int = 0, **extra: Any) -> FeatureSpec:
    return FeatureSpec(scenario=name, num_users=int(num_users), num_items=int(num_items),
                       user_fields=tuple(user_fields), item_fields=tuple(item_fields), has_group=True,
                       has_history=has_history, max_history_len=int(max_history_len), label=label,
                       extra={"protocol": protocol, "group_by": group_by, **extra})


def interactions_frame(user: np.ndarray, item: np.ndarray, label: np.ndarray, ts: np.ndarray,
                       level: np.ndarray, group: np.ndarray, rating: np.ndarray | None = None,
                       sort: bool = True) -> pd.DataFrame:
    """The interactions table with contract dtypes, sorted by (user, ts, split, row) when ``sort``."""
    cols = {"user": np.asarray(user, np.int64), "item": np.asarray(item, np.int64),
            "label": np.asarray(label, np.float32), "ts": np.asarray(ts, np.int64),
            "level": np.asarray(level, np.int64), "group": np.asarray(group, np.int64)}
    if rating is not None:
        cols["rating"] = np.asarray(rating, np.float32)
    if sort:
        order = np.lexsort((np.arange(len(cols["user"])), cols["level"], cols["ts"], cols["user"]))
        cols = {k: v[order] for k, v in cols.items()}
    level_sorted = cols.pop("level")
    df = pd.DataFrame(cols)
    df.insert(4, "split", split_names(level_sorted))
    return df


def rated_interactions(user_raw: np.ndarray, item_raw: np.ndarray, ts: np.ndarray, rating: np.ndarray,
                       p: dict) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """An explicit-rating data set as ``(user_ids, item_ids, interactions)``: dense ids (sorted raw ids), a
    per-user chronological split (``val_frac``, ``test_frac``, ``min_user_ratings`` of ``p``) and
    label = rating >= ``positive_threshold``, grouped by user."""
    user_ids, user = np.unique(np.asarray(user_raw), return_inverse=True)
    item_ids, item = np.unique(np.asarray(item_raw), return_inverse=True)
    user, item = user.reshape(-1).astype(np.int64), item.reshape(-1).astype(np.int64)
    ts = np.asarray(ts)
    level = per_user_chrono_split(user, ts, p["val_frac"], p["test_frac"], p["min_user_ratings"])
    rating = np.asarray(rating)
    label = (rating >= p["positive_threshold"]).astype(np.float32)
    return user_ids, item_ids, interactions_frame(user, item, label, ts, level, user, rating=rating)
