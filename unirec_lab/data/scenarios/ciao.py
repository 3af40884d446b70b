"""Ciao (Tang et al. 2012): product ratings with timestamps + a directed trust network — the social scenario.

Raw (``social/ciao``): ``rating_with_timestamp.mat`` (variable ``rating``: user, item, category, rating 0-5,
helpfulness, unix timestamp), ``trustnetwork.mat`` (``trustnetwork``: truster, trustee), ``catalog_ciao.txt``
(category names; read for provenance only: the category ids are used).

Protocol:
- label = ``rating >= 4`` (``rating`` kept as a column); ``ts`` = the unix timestamp;
- duplicate (user, item) ratings (1,436 in the raw file) are collapsed to the latest one when
  ``dedupe: true`` (default) so the same pair cannot sit in train and test; raw counts stay in provenance;
- per-user chronological split (ties in time broken by file order): last ``test_frac`` of each user's ratings
  -> test, ``val_frac`` before -> val (each at least 1), rest train; users with fewer than ``min_user_ratings``
  (3) ratings go entirely to train (Ciao has none: every user has >= 4);
- ``group`` = user (GAUC per user);
- item field ``category`` (1..28, private): an item's most frequent category over its ratings (ties: smallest);
- user field ``trust``: the users this user trusts, as scenario user ids + 1, capped at ``max_trust`` (20)
  keeping the most active trustees (most ratings; ties: smallest id); private namespace.
  Helpfulness is not used (it rates the review, not the item or user).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from unirec_lab.data.prepare import BuiltBundle
from unirec_lab.data.scenarios.base import RawScenarioSource
from unirec_lab.data.scenarios.fields import list_column, multi_field
from unirec_lab.data.scenarios.interactions import make_spec, rated_interactions
from unirec_lab.data.scenarios.raw import RawDataError, read_lines
from unirec_lab.data.scenarios.text_embedding import optional_encoder, text_embedding_field, text_fingerprint
from unirec_lab.data.schema import FieldSpec
from unirec_lab.utils.lazy import lazy_import

pd = lazy_import("pandas")  # imported on first use: a cached job never needs it


def load_mat(path: Path, var: str, ncols: int) -> np.ndarray:
    """One numeric matrix from a MATLAB v5 file, checked for shape."""
    import scipy.io

    try:
        m = scipy.io.loadmat(path, variable_names=[var])
    except Exception as e:  # scipy raises several types for a corrupt file
        raise RawDataError(f"{path}: not a readable MATLAB .mat file ({type(e).__name__}: {e})") from None
    if var not in m:
        raise RawDataError(f"{path}: variable {var!r} not found")
    a = np.asarray(m[var])
    if a.ndim != 2 or a.shape[1] != ncols:
        raise RawDataError(f"{path}: variable {var!r} has shape {a.shape}, expected (n, {ncols})")
    if not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            bad = int(np.flatnonzero(~np.isfinite(a).all(1) | (a != np.round(a)).any(1))[0])
            raise RawDataError(f"{path}: variable {var!r} row {bad + 1} has non-integer values {a[bad].tolist()}")
    return a.astype(np.int64)


class CiaoScenario(RawScenarioSource):
    """Ciao ratings (label rating >= 4), per-user chronological split, trust network as a user field."""

    dataset = "social/ciao"
    loader_version = 1

    def __init__(self, name: str, raw_dir: str | Path, positive_threshold: float = 4.0, val_frac: float = 0.1,
                 test_frac: float = 0.1, min_user_ratings: int = 3, dedupe: bool = True, max_trust: int = 20,
                 split: str = "user_chrono", text_encoder: dict[str, Any] | None = None,
                 embedding_cache: str | None = None) -> None:
        """``split``: ``user_chrono`` (per user, the latest fractions; the benchmark protocol) or ``temporal``
        (the latest fractions of all ratings: a past / future cut, for the time replay)."""
        if split not in ("user_chrono", "temporal"):
            raise ValueError(f"scenario {name!r}: split={split!r}, expected 'user_chrono' or 'temporal'")
        self.encoder = optional_encoder(text_encoder)  # None: no category_vec field (the default bundle)
        self.embedding_cache = embedding_cache
        params = dict(positive_threshold=positive_threshold, val_frac=val_frac, test_frac=test_frac,
                      min_user_ratings=min_user_ratings, dedupe=dedupe, max_trust=max_trust)
        if split != "user_chrono":  # only then: the default's fingerprint (its cached bundle) stays as it was
            params["split"] = split
        super().__init__(name, raw_dir, params)

    def raw_files(self) -> list[str]:
        return ["rating_with_timestamp.mat", "trustnetwork.mat", "catalog_ciao.txt"]

    def fingerprint(self) -> dict[str, Any]:
        fp = super().fingerprint()
        if self.encoder is not None:  # encoder name + verified weights hash + the text (category names)
            fp["text_embedding"] = text_fingerprint(self.encoder, ["category_name"])
        return fp

    def _category_vectors(self, catalog: Path, category: np.ndarray) -> tuple[pd.Series, FieldSpec, dict[str, Any]]:
        """Each item's category name (``catalog_ciao.txt``: ``<id> <name>`` per line) through the encoder."""
        lines = [ln.split(" ", 1) for ln in read_lines(catalog) if ln.strip()]
        bad = [ln for ln in lines if len(ln) != 2 or not ln[0].isdigit()]
        if bad:
            raise RawDataError(f"{catalog}: expected '<category id> <name>' per line, got {' '.join(bad[0])!r}")
        names = pd.Series({int(i): n.strip() for i, n in lines})
        text = pd.Series(category).map(names).fillna("")
        return text_embedding_field(text, self.encoder, "category_vec", cache_dir=self.embedding_cache, dedupe=True)

    def _build(self) -> BuiltBundle:
        p = self.params
        rating_file, trust_file, catalog = (self.raw.file(f) for f in self.raw_files())
        r = load_mat(rating_file, "rating", 6)
        df = pd.DataFrame(r, columns=["user", "item", "category", "rating", "helpfulness", "ts"])
        raw_counts = {"ratings": int(len(df)), "users": int(df["user"].nunique()),
                      "items": int(df["item"].nunique()), "max_item_id": int(df["item"].max()) if len(df) else 0}
        if len(df) and (df["category"].min() < 1 or df["rating"].min() < 0 or df["rating"].max() > 5):
            raise RawDataError(f"{rating_file}: category must be >= 1 and rating in 0..5")
        if p["dedupe"]:
            df["row"] = np.arange(len(df))
            df = df.sort_values(["user", "item", "ts", "row"]).drop_duplicates(["user", "item"], keep="last")
            df = df.sort_values("row").drop(columns="row")
        if len(df) == 0:
            raise RawDataError(f"{rating_file}: no ratings")

        user_ids, item_ids, inter = rated_interactions(df["user"].to_numpy(), df["item"].to_numpy(),
                                                       df["ts"].to_numpy(), df["rating"].to_numpy(), p)
        nu, ni = len(user_ids), len(item_ids)
        user = np.searchsorted(user_ids, df["user"].to_numpy())  # dense ids of each rating, in row order
        item = np.searchsorted(item_ids, df["item"].to_numpy())

        # item category: the most frequent over the item's ratings (ties -> smallest id)
        ic = pd.DataFrame({"item": item, "c": df["category"].to_numpy()}).value_counts().reset_index(name="n")
        ic = ic.sort_values(["item", "n", "c"], ascending=[True, False, True]).drop_duplicates("item")
        category = np.zeros(ni, dtype=np.int64)
        category[ic["item"].to_numpy()] = ic["c"].to_numpy()
        n_cat = int(df["category"].max())

        # trust: truster -> trustees, both remapped into this scenario's user ids (+1); unknown users dropped
        t = load_mat(trust_file, "trustnetwork", 2)
        a = np.searchsorted(user_ids, t[:, 0])
        b = np.searchsorted(user_ids, t[:, 1])
        known = (a < nu) & (b < nu)
        known[known] = (user_ids[a[known]] == t[known, 0]) & (user_ids[b[known]] == t[known, 1])
        activity = np.bincount(user, minlength=nu)
        a, b = a[known], b[known]
        trust_lists, longest = multi_field(a, b + 1, nu, p["max_trust"], rank=-activity[b])

        users = pd.DataFrame({"user": np.arange(nu), "trust": list_column(trust_lists)})
        items = pd.DataFrame({"item": np.arange(ni), "category": category})
        item_fields = [FieldSpec("category", "categorical", n_cat + 1, "private")]
        text_info: dict[str, Any] = {}
        if self.encoder is not None:  # category names through the frozen encoder, into the shared text tower
            items["category_vec"], f, text_info = self._category_vectors(catalog, category)
            item_fields.append(f)
        spec = make_spec(
            self.name, nu, ni,
            [FieldSpec("trust", "multi", nu + 1, "private", max_len=max(1, longest))],
            item_fields,
            label=f"rating >= {p['positive_threshold']:g}",
            protocol=f"label rating>={p['positive_threshold']:g}; "
                     f"{'global temporal' if p.get('split') == 'temporal' else 'per-user chronological'} split "
                     f"{1 - p['val_frac'] - p['test_frac']:.0%}/{p['val_frac']:.0%}/{p['test_frac']:.0%} "
                     f"(users with <{p['min_user_ratings']} ratings: train only); GAUC grouped by user",
            group_by="user", dataset="ciao", trust_edges_used=int(known.sum()),
            users_with_trust=int(sum(len(x) > 0 for x in trust_lists)),
            **({"text_embedding": text_info} if text_info else {}))
        prov = {"raw_counts": {**raw_counts, "trust_edges": int(len(t))},
                "duplicates_removed": int(raw_counts["ratings"] - len(df))}
        return BuiltBundle(spec, inter, users, items, prov)
