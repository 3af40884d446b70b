"""HIN Yelp (HERec version): ratings 1-5 + friendships + business category / city ids — a social variant.

Raw (``social/yelp_hin``): ``user_business.dat`` (``user \\t business \\t rating``), ``user_user.dat``
(``user \\t user \\t 1``, symmetric friendships), ``business_category.dat`` / ``business_city.dat``
(``business \\t id \\t 1``). 16,239 users, 14,284 businesses, 198,397 ratings. ``user_compliment.dat`` is not
used.

Protocol:
- label = ``rating >= 4`` (``rating`` kept);
- NO timestamps: ``ts`` = line order in user_business.dat, and the per-user "chronological" 80/10/10 split
  follows that order, which is not known to be time (so it is effectively a fixed per-user random-order split);
  users with < ``min_user_ratings`` (3) ratings — 7,706 of them — go entirely to train;
- ``group`` = user (GAUC per user);
- user field ``friends``: friends as scenario user ids + 1 (multi, private), capped at ``max_friends`` (20)
  keeping the most active friends (most ratings; ties: smallest id);
- item fields ``city`` (categorical) and ``category`` (multi, first ``max_categories``), private.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unirec_lab.data.prepare import BuiltBundle
from unirec_lab.data.scenarios.base import RawScenarioSource
from unirec_lab.data.scenarios.fields import list_column, multi_field
from unirec_lab.data.scenarios.ids import contains_sorted, dense_ids
from unirec_lab.data.scenarios.interactions import interactions_frame, make_spec
from unirec_lab.data.scenarios.raw import RawDataError, data_line, read_int_table
from unirec_lab.data.scenarios.splits import per_user_chrono_split
from unirec_lab.data.schema import FieldSpec
from unirec_lab.utils.lazy import lazy_import

pd = lazy_import("pandas")  # imported on first use: a cached job never needs it


def _remap(raw: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw ids -> dense positions in sorted ``ids``; returns (codes, known mask)."""
    known = contains_sorted(ids, raw)
    return np.searchsorted(ids, raw), known


class YelpHinScenario(RawScenarioSource):
    """Yelp ratings (label rating >= 4), per-user split in file order, friends / city / category fields."""

    dataset = "social/yelp_hin"
    loader_version = 1

    def __init__(self, name: str, raw_dir: str | Path, positive_threshold: float = 4.0, val_frac: float = 0.1,
                 test_frac: float = 0.1, min_user_ratings: int = 3, max_friends: int = 20,
                 max_categories: int = 10) -> None:
        super().__init__(name, raw_dir, dict(positive_threshold=positive_threshold, val_frac=val_frac,
                                             test_frac=test_frac, min_user_ratings=min_user_ratings,
                                             max_friends=max_friends, max_categories=max_categories))

    def raw_files(self) -> list[str]:
        return ["user_business.dat", "user_user.dat", "business_category.dat", "business_city.dat"]

    def _build(self) -> BuiltBundle:
        p = self.params
        ub_file, uu_file, cat_file, city_file = (self.raw.file(f) for f in self.raw_files())
        r = read_int_table(ub_file, 3, "\t", ["user", "item", "rating"])
        if len(r) == 0:
            raise RawDataError(f"{ub_file}: no ratings")
        if r["rating"].min() < 1 or r["rating"].max() > 5:
            bad = int(np.flatnonzero(~r["rating"].between(1, 5).to_numpy())[0])
            line = data_line(ub_file, bad, "\t")
            raise RawDataError(f"{ub_file}:{line}: rating {r['rating'].iloc[bad]} outside 1..5")
        user, user_ids = dense_ids(r["user"].to_numpy())
        item, item_ids = dense_ids(r["item"].to_numpy())
        nu, ni = len(user_ids), len(item_ids)
        ts = np.arange(len(r), dtype=np.int64)
        level = per_user_chrono_split(user, ts, p["val_frac"], p["test_frac"], p["min_user_ratings"])
        rating = r["rating"].to_numpy()
        inter = interactions_frame(user, item, rating >= p["positive_threshold"], ts, level, user, rating=rating)

        uu = read_int_table(uu_file, 3, "\t", ["a", "b", "w"])
        a, ka = _remap(uu["a"].to_numpy(), user_ids)
        b, kb = _remap(uu["b"].to_numpy(), user_ids)
        ok = ka & kb & (a != b)
        activity = np.bincount(user, minlength=nu)
        f_lists, f_len = multi_field(a[ok], b[ok] + 1, nu, p["max_friends"], rank=-activity[b[ok]])

        cat = read_int_table(cat_file, 3, "\t", ["item", "c", "w"])
        ci, kc = _remap(cat["item"].to_numpy(), item_ids)
        cv = cat["c"].to_numpy()
        if len(cv) and cv.min() < 1:
            raise RawDataError(f"{cat_file}: category ids must be >= 1")
        c_lists, c_len = multi_field(ci[kc], cv[kc], ni, p["max_categories"], rank=np.arange(int(kc.sum())))
        city_t = read_int_table(city_file, 3, "\t", ["item", "c", "w"])
        ti, kt = _remap(city_t["item"].to_numpy(), item_ids)
        tv = city_t["c"].to_numpy()
        if len(tv) and tv.min() < 1:
            raise RawDataError(f"{city_file}: city ids must be >= 1")
        city = np.zeros(ni, dtype=np.int64)
        city[ti[kt][::-1]] = tv[kt][::-1]  # first listed city wins
        users = pd.DataFrame({"user": np.arange(nu), "friends": list_column(f_lists)})
        items = pd.DataFrame({"item": np.arange(ni), "city": city, "category": list_column(c_lists)})
        spec = make_spec(
            self.name, nu, ni,
            [FieldSpec("friends", "multi", nu + 1, "private", max_len=max(1, f_len))],
            [FieldSpec("city", "categorical", int(tv.max()) + 1 if len(tv) else 1, "private"),
             FieldSpec("category", "multi", int(cv.max()) + 1 if len(cv) else 1, "private",
                       max_len=max(1, c_len))],
            label=f"rating >= {p['positive_threshold']:g}",
            protocol=f"label rating>={p['positive_threshold']:g}; no timestamps (ts = file order); per-user "
                     f"{1 - p['val_frac'] - p['test_frac']:.0%}/{p['val_frac']:.0%}/{p['test_frac']:.0%} split in "
                     f"file order (users with <{p['min_user_ratings']} ratings: train only); GAUC by user",
            group_by="user", dataset="yelp_hin")
        prov = {"raw_counts": {"ratings": int(len(r)), "users": int(nu), "items": int(ni),
                               "friend_edges": int(len(uu)), "business_category": int(len(cat)),
                               "business_city": int(len(city_t))}}
        return BuiltBundle(spec, inter, users, items, prov)
