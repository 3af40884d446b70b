"""Split protocols: a level per row (0 train, 1 val, 2 test) and the bundle's ``split`` column built from it.

The shipped loaders and :class:`~unirec_lab.data.scenarios.table.TableScenario` use the same functions. Ties in
time are broken by row order everywhere, so a split is a pure function of the file.
"""

from __future__ import annotations

import numpy as np

from unirec_lab.data.scenarios.ids import positions_in_user
from unirec_lab.features import SPLITS
from unirec_lab.utils.lazy import lazy_import

pd = lazy_import("pandas")  # imported on first use: a cached job never needs it
pa = lazy_import("pyarrow")

PROTOCOLS = ("leave_one_out", "user_chrono", "temporal", "random")


def split_names(level: np.ndarray) -> pd.Series:
    """0/1/2 -> a pandas ``str`` column ``train``/``val``/``test`` (built in Arrow: fast for millions of rows)."""
    codes = pa.array(np.asarray(level, dtype=np.int8))
    arr = pa.DictionaryArray.from_arrays(codes, pa.array(list(SPLITS))).cast(pa.large_string())
    return pd.Series(arr.to_pandas(types_mapper=lambda t: pd.StringDtype("pyarrow", na_value=np.nan)))


def per_user_chrono_split(user: np.ndarray, order: np.ndarray, val_frac: float = 0.1, test_frac: float = 0.1,
                          min_rows: int = 3) -> np.ndarray:
    """Split level per row (``user``: dense ids ``>= 0``): each user's last ``test_frac`` rows (by ``order``,
    ties by row order) -> test (2), the ``val_frac`` before -> val (1), the rest -> train (0).

    Counts per user are ``max(1, round_half_up(frac * n))`` (0 when ``frac == 0``); users with fewer than
    ``min_rows`` rows go entirely to train (they cannot fill three splits).
    """
    user = np.asarray(user, dtype=np.int64)
    rank = positions_in_user(user, order)
    cnt = np.bincount(user)[user] if len(user) else np.zeros(0, dtype=np.int64)
    n_test = np.maximum(int(test_frac > 0), np.floor(test_frac * cnt + 0.5)).astype(np.int64)
    n_val = np.maximum(int(val_frac > 0), np.floor(val_frac * cnt + 0.5)).astype(np.int64)
    level = np.where(rank >= cnt - n_test, 2, np.where(rank >= cnt - n_test - n_val, 1, 0))
    level[cnt < min_rows] = 0
    return level.astype(np.int64)


def leave_one_out_split(user: np.ndarray, order: np.ndarray, min_user_rows: int = 3) -> np.ndarray:
    """Each user's last row -> test, second-last -> val, the rest -> train; users with fewer than
    ``min_user_rows`` rows stay in train (they cannot fill three splits)."""
    user = np.asarray(user, dtype=np.int64)
    pos = positions_in_user(user, order)
    length = np.bincount(user, minlength=int(user.max()) + 1 if len(user) else 0)[user]
    level = np.where(pos == length - 1, 2, np.where(pos == length - 2, 1, 0))
    return np.where(length < max(min_user_rows, 1), 0, level).astype(np.int64)


def fraction_levels(rank: np.ndarray, n: int, val_frac: float, test_frac: float) -> np.ndarray:
    """Rows ranked ``0..n-1``: the last ``round(test_frac * n)`` -> test, the ``round(val_frac * n)`` before -> val."""
    n_test = int(np.floor(test_frac * n + 0.5))
    n_val = int(np.floor(val_frac * n + 0.5))
    return np.where(rank >= n - n_test, 2, np.where(rank >= n - n_test - n_val, 1, 0)).astype(np.int64)


def temporal_split(order: np.ndarray, val_frac: float, test_frac: float) -> np.ndarray:
    """Global temporal split: the latest ``test_frac`` of all rows -> test, the ``val_frac`` before -> val."""
    n = len(order)
    idx = np.lexsort((np.arange(n), np.asarray(order)))
    rank = np.empty(n, dtype=np.int64)
    rank[idx] = np.arange(n)
    return fraction_levels(rank, n, val_frac, test_frac)


def random_split(n: int, val_frac: float, test_frac: float, rng: np.random.Generator) -> np.ndarray:
    """Seeded random split of rows (for data without a time column)."""
    rank = np.empty(n, dtype=np.int64)
    rank[rng.permutation(n)] = np.arange(n)
    return fraction_levels(rank, n, val_frac, test_frac)


def split_levels_for(protocol: str, user: np.ndarray, order: np.ndarray, p: dict,
                     rng: np.random.Generator) -> np.ndarray:
    """The level per row of one of :data:`PROTOCOLS` (``p``: ``val_frac``, ``test_frac``, ``min_user_rows``)."""
    if protocol == "leave_one_out":
        return leave_one_out_split(user, order, p["min_user_rows"])
    if protocol == "user_chrono":
        return per_user_chrono_split(user, order, p["val_frac"], p["test_frac"], p["min_user_rows"])
    if protocol == "temporal":
        return temporal_split(order, p["val_frac"], p["test_frac"])
    return random_split(len(user), p["val_frac"], p["test_frac"], rng)
