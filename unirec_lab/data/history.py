"""Behaviour histories: for each row, the user's most recent interactions strictly before it in time, each an
item and the user's feedback on it (positives only, the default, or every interaction: ``history.feedback``).

Leakage rule: a row of split ``s`` only sees entries from splits visible to ``s`` (train sees train; val sees
train + val; test sees all), on top of the strictly-earlier-in-time rule. So no val/test interaction can enter a
train history whatever the split protocol (temporal, leave-one-out, per-user chronological).

Vectorised: entries are sorted by (user, time); each row finds, with one ``searchsorted``, how many of its
user's visible entries precede it, and gathers the last ``k`` of them. No per-row Python loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from unirec_lab.features import SPLIT_LEVEL
from unirec_lab.utils.lazy import lazy_import

pd = lazy_import("pandas")  # imported on first use: a cached job never needs it
pa = lazy_import("pyarrow")
pc = lazy_import("pyarrow.compute")

# The stats table counts histories with the cap the data module uses by default (conf/data/default.yaml
# history_len); it only affects the reported statistic, never a bundle.
STATS_HISTORY_LEN = 20


def _dense_rank(x: np.ndarray) -> np.ndarray:
    return np.unique(x, return_inverse=True)[1].astype(np.int64)


FEEDBACK_MODES = ("positives", "all")
# history action ids (embedded summed with the item: item ⊕ action); 0 = padding
ACTION_NEGATIVE, ACTION_POSITIVE = 1, 2


def history_settings(name: str, value: Mapping[str, Any] | None) -> dict[str, Any]:
    """A scenario's ``history`` node, checked: ``feedback`` (positives | all), ``train_chunk`` and ``eval_chunk``
    (null | int)."""
    value = dict(value or {})
    unknown = sorted(set(value) - {"feedback", "train_chunk", "eval_chunk"})
    if unknown:
        raise ValueError(f"scenarios.{name}.history: unknown key(s) {unknown}, expected feedback, train_chunk, "
                         "eval_chunk")
    fb = value.get("feedback", "positives")
    if fb not in FEEDBACK_MODES:
        raise ValueError(f"scenarios.{name}.history.feedback={fb!r}, expected one of {list(FEEDBACK_MODES)}")
    out = {"feedback": fb}
    for key in ("train_chunk", "eval_chunk"):
        chunk = value.get(key)
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
            raise ValueError(f"scenarios.{name}.history.{key}={chunk!r}, expected a positive integer or null")
        out[key] = chunk
    if out["eval_chunk"] is not None and fb != "all":  # the cut counts rows, so every row must be an entry
        raise ValueError(f"scenarios.{name}.history.eval_chunk={out['eval_chunk']} needs history.feedback: all, "
                         f"got {fb!r}")
    return out


def chunk_positions(user: np.ndarray, ts: np.ndarray, chunk: int) -> np.ndarray:
    """Each row's position within its chunk of ``chunk`` consecutive rows of its user in time order (0 = the
    first row of a chunk). Knowledge-tracing protocols (AKT) cut every student into such chunks and run the model
    on each from an empty state, so a row sees only the earlier rows of its own chunk."""
    order = np.lexsort((np.arange(len(user)), ts, user))
    u = user[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = u[1:] != u[:-1]
    start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    out = np.empty(len(user), dtype=np.int64)
    out[order] = (np.arange(len(order)) - start) % chunk
    return out


def build_histories(user: np.ndarray, item: np.ndarray, label: np.ndarray, ts: np.ndarray,
                    split_level: np.ndarray, k: int, pad: int = -1) -> np.ndarray:
    """Return an ``[n, k]`` int64 array: row ``r``'s last ``k`` visible positive items, oldest first, left-padded.

    ``split_level``: 0 train, 1 val, 2 test (see :data:`unirec_lab.features.SPLIT_LEVEL`). Items equal to ``pad`` mark padding.
    """
    return build_feedback_histories(user, item, label, ts, split_level, k, "positives", pad)[0]


def build_feedback_histories(user: np.ndarray, item: np.ndarray, label: np.ndarray, ts: np.ndarray,
                             split_level: np.ndarray, k: int, feedback: str = "positives",
                             pad: int = -1, query: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(items [n, k] int64, actions [n, k] int8)``: row ``r``'s last ``k`` visible interactions, oldest first,
    left-padded, each with the user's feedback on it (:data:`ACTION_POSITIVE` / :data:`ACTION_NEGATIVE`, 0 on
    padding). ``feedback="positives"`` keeps positive interactions only (the classic click history, every action
    positive); ``"all"`` keeps every interaction, so incorrect answers / skips / low ratings enter too.

    The leakage rules are the same for both: strictly earlier in time than the row (never its own label) and
    only from splits the row's split may see (train sees train; val train + val; test all).
    ``query``: row indices to return histories for (default every row); every row still counts as an entry.
    """
    if feedback not in FEEDBACK_MODES:
        raise ValueError(f"history feedback={feedback!r}, expected one of {list(FEEDBACK_MODES)}")
    n = len(user)
    q = np.arange(n) if query is None else np.asarray(query, dtype=np.int64)
    out = np.full((len(q), k), pad, dtype=np.int64)
    act = np.zeros((len(q), k), dtype=np.int8)
    if len(q) == 0 or k == 0:
        return out, act
    user = np.asarray(user, dtype=np.int64)
    t_rank = _dense_rank(np.asarray(ts))
    n_t = int(t_rank.max()) + 1
    key = user * n_t + t_rank  # orders by (user, time); fits int64 for any realistic size
    pos = np.asarray(label) > 0.5
    entry = pos if feedback == "positives" else np.ones(n, dtype=bool)
    for level in (0, 1, 2):
        sel = np.flatnonzero(split_level[q] == level)  # positions in the output
        rows = q[sel]
        if len(rows) == 0:
            continue
        visible = entry & (split_level <= level)
        p_idx = np.flatnonzero(visible)
        order = np.lexsort((p_idx, key[p_idx]))  # stable by time, then original row order
        p_idx = p_idx[order]
        p_key = key[p_idx]
        p_item = np.asarray(item, dtype=np.int64)[p_idx]
        p_act = np.where(pos[p_idx], ACTION_POSITIVE, ACTION_NEGATIVE).astype(np.int8)
        end = np.searchsorted(p_key, key[rows], side="left")  # strictly earlier in time
        start = np.searchsorted(p_key, user[rows] * n_t, side="left")  # user's first visible entry
        idx = end[:, None] - k + np.arange(k)[None, :]
        ok = idx >= start[:, None]
        if len(p_item):
            safe = np.clip(idx, 0, len(p_item) - 1)
            out[sel] = np.where(ok, p_item[safe], pad)
            act[sel] = np.where(ok, p_act[safe], 0)
    return out, act


def pad_histories(lists: list | np.ndarray, k: int, pad: int = -1) -> np.ndarray:
    """Left-pad explicit history lists (e.g. MIND's click history) to ``[n, k]``, keeping the last ``k``."""
    import pyarrow as pa

    arr = pa.array(lists, type=pa.list_(pa.int64()))
    lens = arr.value_lengths().fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = arr.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lens)])
    n = len(lens)
    idx = offsets[1:, None] - k + np.arange(k)[None, :]
    ok = idx >= offsets[:-1, None]
    out = np.full((n, k), pad, dtype=np.int64)
    if len(flat):
        out = np.where(ok, flat[np.clip(idx, 0, len(flat) - 1)], pad)
    return out


def split_levels(split: pd.Series) -> np.ndarray:
    """``train``/``val``/``test`` -> 0/1/2 (vectorised in Arrow; unknown values -> -1)."""
    idx = pc.index_in(pa.array(split), value_set=pa.array(list(SPLIT_LEVEL)))
    return idx.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def mean_history_len(inter: pd.DataFrame, cap: int | None) -> float:
    """Mean history length per row, each capped at ``cap`` (``None``: uncapped): the explicit ``history`` column
    when present, else the number of the user's positives strictly earlier in time that the row's split may see
    (the rule of :func:`build_histories`), counted without materialising the histories."""
    if len(inter) == 0:
        return 0.0
    limit = np.iinfo(np.int64).max if cap is None else cap
    if "history" in inter.columns:
        lens = inter["history"].map(len).to_numpy()
        return float((lens if cap is None else np.minimum(lens, cap)).mean())
    user = inter["user"].to_numpy(np.int64)
    ts = inter["ts"].to_numpy(np.int64)
    span = int(ts.max()) - int(ts.min()) + 1
    if span * (int(user.max()) + 1) < 2**62:  # (user, ts) key without ranking the timestamps (no big sort)
        t_rank, n_t = ts - ts.min(), span
    else:
        t_rank = _dense_rank(ts).reshape(-1)
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
        total += int(np.minimum(end - start, limit).sum())
    return total / len(inter)
