"""The interactions table and feature spec of a bundle, with the contract's dtypes and ordering
(``unirec_lab/data/schema.py``), shared by every loader so no loader writes them its own way."""

from __future__ import annotations

from typing import Any

import numpy as np

from unirec_lab.data.scenarios.ids import dense_ids
from unirec_lab.data.scenarios.splits import per_user_chrono_split, split_names, temporal_split
from unirec_lab.data.schema import FeatureSpec, FieldSpec
from unirec_lab.utils.lazy import lazy_import

pd = lazy_import("pandas")  # imported on first use: a cached job never needs it


def make_spec(name: str, num_users: int, num_items: int, user_fields: list[FieldSpec],
              item_fields: list[FieldSpec], label: str, protocol: str, group_by: str,
              has_history: bool = False, max_history_len: int = 0, **extra: Any) -> FeatureSpec:
    """A grouped scenario's spec; ``protocol``, ``group_by`` and ``extra`` go to ``spec.extra`` (shown in reports)."""
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
    per-user chronological split (``val_frac``, ``test_frac``, ``min_user_ratings`` of ``p``; or a global
    temporal one when ``p["split"] == "temporal"``) and
    label = rating >= ``positive_threshold``, grouped by user."""
    user, user_ids = dense_ids(user_raw)
    item, item_ids = dense_ids(item_raw)
    ts = np.asarray(ts)
    if p.get("split", "user_chrono") == "temporal":  # the latest fractions of all rows (time replay)
        level = temporal_split(ts, p["val_frac"], p["test_frac"])
    else:
        level = per_user_chrono_split(user, ts, p["val_frac"], p["test_frac"], p["min_user_ratings"])
    rating = np.asarray(rating)
    label = (rating >= p["positive_threshold"]).astype(np.float32)
    return user_ids, item_ids, interactions_frame(user, item, label, ts, level, user, rating=rating)
