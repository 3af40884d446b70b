"""Behaviour histories: for each row, the user's most recent positive items strictly before it in time.

Leakage rule: a row of split ``s`` only sees positives from splits visible to ``s`` (train sees train; val sees
train + val; test sees all), on top of the strictly-earlier-in-time rule. So no val/test interaction can enter a
train history whatever the split protocol (temporal, leave-one-out, per-user chronological).

Vectorised: positives are sorted by (user, time); each row finds, with one ``searchsorted``, how many of its
user's visible positives precede it, and gathers the last ``k`` of them. No per-row Python loop.
"""

from __future__ import annotations

import numpy as np


def _dense_rank(x: np.ndarray) -> np.ndarray:
    return np.unique(x, return_inverse=True)[1].astype(np.int64)


def build_histories(user: np.ndarray, item: np.ndarray, label: np.ndarray, ts: np.ndarray,
                    split_level: np.ndarray, k: int, pad: int = -1) -> np.ndarray:
    """Return an ``[n, k]`` int64 array: row ``r``'s last ``k`` visible positive items, oldest first, left-padded.

    ``split_level``: 0 train, 1 val, 2 test (see :data:`unirec_lab.features.SPLIT_LEVEL`). Items equal to ``pad`` mark padding.
    """
    n = len(user)
    out = np.full((n, k), pad, dtype=np.int64)
    if n == 0 or k == 0:
        return out
    user = np.asarray(user, dtype=np.int64)
    t_rank = _dense_rank(np.asarray(ts))
    n_t = int(t_rank.max()) + 1
    key = user * n_t + t_rank  # orders by (user, time); fits int64 for any realistic size
    pos = np.asarray(label) > 0.5
    for level in (0, 1, 2):
        rows = np.flatnonzero(split_level == level)
        if len(rows) == 0:
            continue
        visible = pos & (split_level <= level)
        p_idx = np.flatnonzero(visible)
        order = np.lexsort((p_idx, key[p_idx]))  # stable by time, then original row order
        p_key = key[p_idx][order]
        p_item = np.asarray(item, dtype=np.int64)[p_idx][order]
        end = np.searchsorted(p_key, key[rows], side="left")  # strictly earlier in time
        start = np.searchsorted(p_key, user[rows] * n_t, side="left")  # user's first positive
        idx = end[:, None] - k + np.arange(k)[None, :]
        ok = idx >= start[:, None]
        vals = p_item[np.clip(idx, 0, max(len(p_item) - 1, 0))] if len(p_item) else np.full(idx.shape, pad)
        out[rows] = np.where(ok, vals, pad)
    return out


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
