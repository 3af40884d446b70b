"""Bing News sample from DKN (WWW'18): news clicks with tokenised titles and entities — a news variant.

Raw (``news/bing_dkn_sample``): ``raw_train.txt`` / ``raw_test.txt``, tab separated: user id, news title
(lower-cased, tokenised words), label (1 click / 0 no click), entities ``id:name;id:name``. No timestamps,
no news ids (the title string is the item key), no categories. Train 10,401 rows / 469 users, test 462 rows /
138 users (all seen in train); no test title occurs in train (items are cold in test: the title tokens carry
the signal).

Protocol:
- one row per line; label = click; ``ts`` = line order (train file then test file) — the data has no time, and
  that order is all we have;
- split: ``raw_test.txt`` -> test (the published split); in ``raw_train.txt`` each user's last ``val_frac`` of
  lines (at least 1 for users with >= ``min_user_rows`` lines) -> val, the rest -> train;
- ``group`` = user (GAUC per user: the data has no impressions);
- item fields: ``title`` tokens (``shared:tokens``), ``entities`` (multi, private: the entity ids, first
  ``max_entities``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unirec_lab.data.prepare import BuiltBundle
from unirec_lab.data.scenarios.base import RawScenarioSource
from unirec_lab.data.scenarios.fields import DEFAULT_TEXT_BUCKETS, list_column, multi_field, text_field
from unirec_lab.data.scenarios.ids import dense_ids
from unirec_lab.data.scenarios.interactions import interactions_frame, make_spec
from unirec_lab.data.scenarios.mind import _first_bad, line_of, read_tsv
from unirec_lab.data.scenarios.raw import RawDataError
from unirec_lab.data.scenarios.splits import per_user_chrono_split
from unirec_lab.data.schema import FieldSpec
from unirec_lab.utils.lazy import lazy_import

pd = lazy_import("pandas")  # imported on first use: a cached job never needs it


def read_dkn(path: Path) -> pd.DataFrame:
    df = read_tsv(path, ["user", "title", "label", "entities"])
    bad = ~df["user"].str.fullmatch(r"\d+") | ~df["label"].isin(["0", "1"]) | (df["title"].str.strip() == "")
    if bad.any():
        i = _first_bad(bad)
        r = df.iloc[i]
        raise RawDataError(f"{path}:{line_of(path, i)}: expected 'user_id<TAB>title<TAB>0|1<TAB>entities', got "
                           f"{r['user']!r}, {r['title'][:40]!r}, {r['label']!r}")
    ok_ent = df["entities"].str.fullmatch(r"(?:\d+:[^;]*(?:;\d+:[^;]*)*)?")
    if not ok_ent.all():
        i = _first_bad(~ok_ent)
        raise RawDataError(f"{path}:{line_of(path, i)}: entities must be 'id:name;id:name', got {df['entities'].iloc[i][:60]!r}")
    return df


class BingDknScenario(RawScenarioSource):
    """DKN Bing News sample: clicks, title tokens, entities; no time (line order)."""

    dataset = "news/bing_dkn_sample"
    loader_version = 1

    def __init__(self, name: str, raw_dir: str | Path, val_frac: float = 0.1, min_user_rows: int = 3,
                 max_title_len: int = 30, max_entities: int = 5, text_buckets: int = DEFAULT_TEXT_BUCKETS) -> None:
        super().__init__(name, raw_dir, dict(val_frac=val_frac, min_user_rows=min_user_rows,
                                             max_title_len=max_title_len, max_entities=max_entities,
                                             text_buckets=text_buckets))

    def raw_files(self) -> list[str]:
        return ["raw_train.txt", "raw_test.txt"]

    def _build(self) -> BuiltBundle:
        p = self.params
        tr_file, te_file = (self.raw.file(f) for f in self.raw_files())
        tr, te = read_dkn(tr_file), read_dkn(te_file)
        df = pd.concat([tr.assign(test=False), te.assign(test=True)], ignore_index=True)
        user, user_ids = dense_ids(df["user"].astype(np.int64).to_numpy())
        item, titles = dense_ids(df["title"].to_numpy(dtype=str))
        nu, ni = len(user_ids), len(titles)
        ts = np.arange(len(df), dtype=np.int64)
        is_test = df["test"].to_numpy()
        level = np.full(len(df), 2, dtype=np.int64)
        trm = ~is_test
        level[trm] = per_user_chrono_split(user[trm], ts[trm], val_frac=0.0, test_frac=p["val_frac"],
                                           min_rows=p["min_user_rows"]) // 2  # its "test" part is our val
        label = df["label"].astype(np.int64).to_numpy().astype(np.float32)
        inter = interactions_frame(user, item, label, ts, level, user)

        toks, title_len, info = text_field(pd.Series(titles), p["max_title_len"], p["text_buckets"])
        # entities: "id:name;id:name" -> (item, entity id) pairs over every line of the item
        ent = df["entities"].str.split(";").explode()
        ent = ent[ent.fillna("") != ""]
        ent_item = item[ent.index.to_numpy()]
        ent_raw = ent.str.split(":", n=1).str[0].astype(np.int64).to_numpy()
        ent_codes, ent_ids = dense_ids(ent_raw)
        e_lists, e_longest = multi_field(ent_item, ent_codes + 1, ni, p["max_entities"],
                                         rank=ent.index.to_numpy())
        items = pd.DataFrame({"item": np.arange(ni), "title": list_column(toks), "entities": list_column(e_lists)})
        users = pd.DataFrame({"user": np.arange(nu)})
        spec = make_spec(
            self.name, nu, ni, [],
            [FieldSpec("title", "text", info["vocab_size"], "shared:tokens", max_len=title_len),
             FieldSpec("entities", "multi", len(ent_ids) + 1, "private", max_len=max(1, e_longest))],
            label="1 = clicked, 0 = not clicked",
            protocol=f"clicks; no timestamps (ts = line order); raw_test.txt = test, each user's last "
                     f"{p['val_frac']:.0%} of raw_train.txt lines = val; GAUC by user",
            group_by="user", dataset="bing_dkn_sample", title_text=info)
        prov = {"raw_counts": {"train_rows": int(len(tr)), "test_rows": int(len(te)),
                               "train_users": int(tr["user"].nunique()), "test_users": int(te["user"].nunique()),
                               "titles": int(ni), "train_positives": int((tr["label"] == "1").sum())}}
        return BuiltBundle(spec, inter, users, items, prov)
