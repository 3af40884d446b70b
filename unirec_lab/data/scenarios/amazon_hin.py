"""HIN Amazon: explicit ratings 1-5 with day-level timestamps + item category / brand / also-viewed ids.

Raw (``ecommerce/amazon_hin``): ``user_item.dat`` (``user \\t item \\t rating \\t unix_ts``), ``item_category.dat``,
``item_brand.dat``, ``item_view.dat`` (``item,value``). 6,170 users, 2,753 items, 195,791 ratings.

Protocol (the ``ecommerce_ratings`` variant: explicit feedback, so real negatives):
- label = ``rating >= 4`` (``rating`` kept); ``ts`` = the unix timestamp (day granularity);
- per-user chronological split 80/10/10 (ties on the same day broken by file order; users with < 3 ratings:
  train only — the data has none, every user has >= 11). Per-user rather than global-by-time because the
  ratings span 1998-2014 and a global cut would leave most users without test rows;
- ``group`` = user (GAUC per user);
- item fields: ``category`` (multi: up to 4 per item), ``brand`` (categorical), ``also_viewed`` (multi,
  first ``max_views``); all private. Raw ids start at 0, so they are stored as id + 1 (0 = missing).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unirec_lab.data.prepare import BuiltBundle
from unirec_lab.data.scenarios.base import RawScenarioSource
from unirec_lab.data.scenarios.fields import list_column, multi_field
from unirec_lab.data.scenarios.interactions import make_spec, rated_interactions
from unirec_lab.data.scenarios.raw import RawDataError, data_line, read_int_table
from unirec_lab.data.schema import FieldSpec
from unirec_lab.utils.lazy import lazy_import

pd = lazy_import("pandas")  # imported on first use: a cached job never needs it


def item_side(path: Path, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """``item,value`` pairs restricted to known items -> (dense item, value + 1, vocab size)."""
    t = read_int_table(path, 2, ",", ["item", "value"])
    if len(t) and t["value"].min() < 0:
        raise RawDataError(f"{path}: negative value id {t['value'].min()}")
    owner = np.searchsorted(item_ids, t["item"].to_numpy())
    ok = (owner < len(item_ids)) & (item_ids[np.minimum(owner, len(item_ids) - 1)] == t["item"].to_numpy())
    vocab = int(t["value"].max()) + 2 if len(t) else 1
    return owner[ok], t["value"].to_numpy()[ok] + 1, vocab


class AmazonHinScenario(RawScenarioSource):
    """Amazon ratings (label rating >= 4), per-user chronological split, category/brand/also-viewed fields."""

    dataset = "ecommerce/amazon_hin"
    loader_version = 1

    def __init__(self, name: str, raw_dir: str | Path, positive_threshold: float = 4.0, val_frac: float = 0.1,
                 test_frac: float = 0.1, min_user_ratings: int = 3, max_views: int = 10) -> None:
        super().__init__(name, raw_dir, dict(positive_threshold=positive_threshold, val_frac=val_frac,
                                             test_frac=test_frac, min_user_ratings=min_user_ratings,
                                             max_views=max_views))

    def raw_files(self) -> list[str]:
        return ["user_item.dat", "item_category.dat", "item_brand.dat", "item_view.dat"]

    def _build(self) -> BuiltBundle:
        p = self.params
        ui_file, cat_file, brand_file, view_file = (self.raw.file(f) for f in self.raw_files())
        r = read_int_table(ui_file, 4, "\t", ["user", "item", "rating", "ts"])
        if len(r) == 0:
            raise RawDataError(f"{ui_file}: no ratings")
        if r["rating"].min() < 1 or r["rating"].max() > 5:
            bad = _first_bad(~r["rating"].between(1, 5))
            line = data_line(ui_file, bad, "\t")
            raise RawDataError(f"{ui_file}:{line}: rating {r['rating'].iloc[bad]} outside 1..5")
        user_ids, item_ids, inter = rated_interactions(r["user"].to_numpy(), r["item"].to_numpy(), r["ts"].to_numpy(),
                                                       r["rating"].to_numpy(), p)
        nu, ni = len(user_ids), len(item_ids)

        c_item, c_val, c_vocab = item_side(cat_file, item_ids)
        cat_lists, cat_len = multi_field(c_item, c_val, ni, 10)
        b_item, b_val, b_vocab = item_side(brand_file, item_ids)
        brand = np.zeros(ni, dtype=np.int64)
        brand[b_item[::-1]] = b_val[::-1]  # first listed brand wins
        v_item, v_val, v_vocab = item_side(view_file, item_ids)
        view_lists, view_len = multi_field(v_item, v_val, ni, p["max_views"], rank=np.arange(len(v_item)))
        items = pd.DataFrame({"item": np.arange(ni), "category": list_column(cat_lists), "brand": brand,
                              "also_viewed": list_column(view_lists)})
        users = pd.DataFrame({"user": np.arange(nu)})
        spec = make_spec(
            self.name, nu, ni, [],
            [FieldSpec("category", "multi", c_vocab, "private", max_len=max(1, cat_len)),
             FieldSpec("brand", "categorical", b_vocab, "private"),
             FieldSpec("also_viewed", "multi", v_vocab, "private", max_len=max(1, view_len))],
            label=f"rating >= {p['positive_threshold']:g}",
            protocol=f"explicit ratings, label rating>={p['positive_threshold']:g}; per-user chronological split "
                     f"{1 - p['val_frac'] - p['test_frac']:.0%}/{p['val_frac']:.0%}/{p['test_frac']:.0%} "
                     "(ts = unix day); GAUC by user",
            group_by="user", dataset="amazon_hin")
        prov = {"raw_counts": {"ratings": int(len(r)), "users": int(nu), "items": int(ni),
                               "categories": int(np.unique(c_val).size), "brands": int(np.unique(b_val).size),
                               "views": int(np.unique(v_val).size)}}
        return BuiltBundle(spec, inter, users, items, prov)


def _first_bad(mask: pd.Series) -> int:
    return int(np.flatnonzero(mask.to_numpy())[0])
