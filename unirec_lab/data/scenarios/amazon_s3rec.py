"""Amazon Beauty / Sports_and_Outdoors / Toys_and_Games (S3-Rec 5-core sequences): implicit-feedback e-commerce.

Raw (``ecommerce/amazon_s3rec``): ``<Name>.txt`` = ``user item_1 item_2 ...`` per line, chronological, ids from 1;
``<Name>_item2attributes.json`` = ``{item: [attribute ids]}`` (category + brand ids, no names).

Protocol (S3-Rec / SASRec style):
- every observed interaction is a positive row (label 1); ``ts`` = position in the user's sequence (0-based;
  the data has order only);
- leave-one-out: last item -> test, second-last -> val, the rest -> train (users with < 3 items: all train; in
  the 5-core data every user has >= 5);
- training negatives: ``train_negatives`` per train positive, uniform over items the user never interacted with
  (in any split), ts = the positive's ts;
- val/test: the positive + ``eval_negatives`` distinct sampled items the user never interacted with (seeded, so
  fixed across runs), all with the positive's ts, forming one ``group`` per (user, split): grouped metrics give
  the 1-vs-99 ranking protocol. ``group = 3 * user + split level`` (train rows are grouped per user too).
- item field ``attributes``: multi-valued, private namespace, first ``max_attributes`` ids of the item;
- ``max_users``: keep the users of the first ``max_users`` lines only (a seeded slice for smoke tests).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unirec_lab.data.prepare import BuiltBundle
from unirec_lab.data.scenarios.base import RawScenarioSource
from unirec_lab.data.scenarios.fields import list_column, multi_field
from unirec_lab.data.scenarios.ids import dense_ids, interaction_keys
from unirec_lab.data.scenarios.interactions import interactions_frame, make_spec
from unirec_lab.data.scenarios.negatives import sample_negatives
from unirec_lab.data.scenarios.raw import RawDataError, parse_int_list, read_json, read_lines
from unirec_lab.data.schema import FieldSpec
from unirec_lab.utils.lazy import lazy_import

pd = lazy_import("pandas")  # imported on first use: a cached job never needs it

DATASETS = ("Beauty", "Sports_and_Outdoors", "Toys_and_Games")


def read_sequences(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse ``user item item ...`` lines -> (raw user per row, raw item per row, position per row)."""
    users, items, lengths = [], [], []
    for lineno, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        ids = parse_int_list(line, path, lineno, sep=None)
        if len(ids) < 2:
            raise RawDataError(f"{path}:{lineno}: expected 'user item [item ...]', got {line[:60]!r}")
        users.append(ids[0])
        items.extend(ids[1:])
        lengths.append(len(ids) - 1)
    if not users:
        raise RawDataError(f"{path}: no sequences (empty file)")
    lengths_a = np.asarray(lengths, dtype=np.int64)
    if len(set(users)) != len(users):
        raise RawDataError(f"{path}: a user id appears on more than one line")
    user = np.repeat(np.asarray(users, dtype=np.int64), lengths_a)
    pos = np.arange(len(user)) - np.repeat(np.cumsum(lengths_a) - lengths_a, lengths_a)
    return user, np.asarray(items, dtype=np.int64), pos


def read_attributes(path: Path) -> pd.DataFrame:
    """``{"item": [attr, ...]}`` -> long frame (item, attr, rank)."""
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise RawDataError(f"{path}: expected a JSON object {{item: [attribute ids]}}")
    try:
        s = pd.Series(obj, dtype=object)
        s.index = s.index.astype(np.int64)
        long = s.explode().dropna()
        return pd.DataFrame({"item": long.index.to_numpy(np.int64), "attr": long.to_numpy().astype(np.int64),
                             "rank": long.groupby(level=0).cumcount().to_numpy()})
    except (ValueError, TypeError) as e:
        raise RawDataError(f"{path}: item ids and attribute ids must be integers ({e})") from None


class AmazonS3RecScenario(RawScenarioSource):
    """S3-Rec Amazon sequences (Beauty by default) as an implicit-feedback leave-one-out scenario."""

    dataset = "ecommerce/amazon_s3rec"
    loader_version = 1

    def __init__(self, name: str, raw_dir: str | Path, category: str = "Beauty", train_negatives: int = 1,
                 eval_negatives: int = 99, max_attributes: int = 10, seed: int = 0,
                 max_users: int | None = None) -> None:
        if category not in DATASETS:
            raise ValueError(f"scenario {name!r}: category={category!r}, expected one of {DATASETS}")
        if train_negatives < 0 or eval_negatives < 1:
            raise ValueError(f"scenario {name!r}: need train_negatives >= 0 and eval_negatives >= 1")
        if max_users is not None and (isinstance(max_users, bool) or not isinstance(max_users, int) or max_users < 1):
            raise ValueError(f"scenario {name!r}: max_users={max_users!r}, expected a positive integer or null")
        params = dict(category=category, train_negatives=train_negatives, eval_negatives=eval_negatives,
                      max_attributes=max_attributes, seed=seed)
        if max_users is not None:  # only when set: the full data's bundle fingerprint stays as it was
            params["max_users"] = max_users
        super().__init__(name, raw_dir, params)

    def raw_files(self) -> list[str]:
        c = self.params["category"]
        return [f"{c}.txt", f"{c}_item2attributes.json"]

    def _build(self) -> BuiltBundle:
        p = self.params
        seq_file, attr_file = (self.raw.file(f) for f in self.raw_files())
        raw_user, raw_item, pos = read_sequences(seq_file)
        if p.get("max_users"):
            keep = np.isin(raw_user, pd.unique(raw_user)[: p["max_users"]])
            raw_user, raw_item, pos = raw_user[keep], raw_item[keep], pos[keep]
        attrs = read_attributes(attr_file)

        user, user_ids = dense_ids(raw_user)
        item, item_ids = dense_ids(raw_item)
        nu, ni = len(user_ids), len(item_ids)

        length = np.bincount(user, minlength=nu)[user]
        level = np.where(length < 3, 0, np.where(pos == length - 1, 2, np.where(pos == length - 2, 1, 0)))
        keys = interaction_keys(user, item, ni)

        parts_u, parts_i, parts_l, parts_ts, parts_lv = [user], [item], [np.ones(len(user))], [pos], [level]
        tr = np.flatnonzero(level == 0)
        k_tr = p["train_negatives"]
        if k_tr:
            neg = sample_negatives(user[tr], k_tr, ni, keys, self.rng(1), distinct=False)
            parts_u.append(np.repeat(user[tr], k_tr))
            parts_i.append(neg.reshape(-1))
            parts_l.append(np.zeros(neg.size))
            parts_ts.append(np.repeat(pos[tr], k_tr))
            parts_lv.append(np.zeros(neg.size, np.int64))
        ev = np.flatnonzero(level > 0)
        k_ev = p["eval_negatives"]
        if k_ev > ni - 1:
            raise RawDataError(f"{seq_file}: eval_negatives={k_ev} but only {ni} items exist")
        neg = sample_negatives(user[ev], k_ev, ni, keys, self.rng(2), distinct=True)
        parts_u.append(np.repeat(user[ev], k_ev))
        parts_i.append(neg.reshape(-1))
        parts_l.append(np.zeros(neg.size))
        parts_ts.append(np.repeat(pos[ev], k_ev))
        parts_lv.append(np.repeat(level[ev], k_ev))

        u, i, lv = np.concatenate(parts_u), np.concatenate(parts_i), np.concatenate(parts_lv)
        inter = interactions_frame(u, i, np.concatenate(parts_l), np.concatenate(parts_ts), lv, 3 * u + lv)

        # item attributes: keep items of this scenario, ids kept as published (1..max) so 0 stays "missing"
        attrs = attrs[np.isin(attrs["item"].to_numpy(), item_ids)]
        if len(attrs) and attrs["attr"].min() < 1:
            raise RawDataError(f"{attr_file}: attribute ids must be >= 1, found {attrs['attr'].min()}")
        a_owner = np.searchsorted(item_ids, attrs["item"].to_numpy())
        lists, longest = multi_field(a_owner, attrs["attr"].to_numpy(), ni, p["max_attributes"],
                                     rank=attrs["rank"].to_numpy())
        vocab = int(attrs["attr"].max()) + 1 if len(attrs) else 1
        items = pd.DataFrame({"item": np.arange(ni), "attributes": list_column(lists)})
        users = pd.DataFrame({"user": np.arange(nu)})
        spec = make_spec(
            self.name, nu, ni, [],
            [FieldSpec("attributes", "multi", vocab, "private", max_len=max(1, longest))],
            label="1 = observed interaction (implicit), 0 = sampled unobserved item",
            protocol=f"leave-one-out (last item test, second-last val); 1 positive + {k_ev} sampled negatives "
                     f"per val/test user (seeded, fixed); {k_tr} sampled negative(s) per train positive; "
                     "ts = position in sequence",
            group_by="user_split", dataset=f"amazon_s3rec/{p['category']}", eval_negatives=k_ev,
            train_negatives=k_tr, items_without_attributes=int(sum(len(x) == 0 for x in lists)))
        prov = {"raw_counts": {"users": int(nu), "items": int(ni), "interactions": int(len(user)),
                               "attribute_ids": int(attrs["attr"].nunique())},
                "raw_user_ids": "dense id = rank of the raw user id", "raw_item_ids": "dense id = rank of raw id"}
        return BuiltBundle(spec, inter, users, items, prov)
