"""Dense ids, positions and sorted int64 keys: the id plumbing every loader shares, vectorised (no per-row loops).

Bundle convention (``unirec_lab/data/schema.py``): user / item ids are dense ``0..n-1`` within a scenario,
numbered in sorted raw-id order so a prepare is a pure function of the raw files.
"""

from __future__ import annotations

import numpy as np

from unirec_lab.utils.lazy import lazy_import

pd = lazy_import("pandas")  # imported on first use: a cached job never needs it


def dense_ids(values: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remap raw ids to ``0..n-1`` in sorted raw-id order; returns (codes, sorted unique raw ids). Object
    columns (a user's table mixing ``7`` and ``"x"``) are compared as strings."""
    arr = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
    if arr.dtype == object:
        arr = arr.astype(str)
    uniq, codes = np.unique(arr, return_inverse=True)
    return codes.astype(np.int64).reshape(-1), uniq


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


def sorted_unique(x: np.ndarray) -> np.ndarray:
    """``np.unique`` via a plain sort (numpy 2.4's hash-based ``np.unique`` is ~100x slower on millions of
    distinct int64 values)."""
    s = np.sort(np.asarray(x).reshape(-1))
    return s[np.r_[True, s[1:] != s[:-1]]] if len(s) else s


def contains_sorted(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Vectorised membership of ``keys`` in the sorted array ``sorted_keys``."""
    if len(sorted_keys) == 0:
        return np.zeros(np.shape(keys), dtype=bool)
    idx = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[idx] == keys


def interaction_keys(user: np.ndarray, item: np.ndarray, num_items: int) -> np.ndarray:
    """Sorted unique ``user * num_items + item`` keys of observed interactions."""
    return sorted_unique(np.asarray(user, dtype=np.int64) * num_items + np.asarray(item, dtype=np.int64))
