"""MIND-small (train) subset: 5,000 impression logs + a 2,000-article news sample — the default news scenario.

Raw (``news/mind_small_subset``): ``behaviors.tsv`` (impression_id, user_id, time ``M/D/YYYY h:mm:ss AM/PM``,
history = space-separated clicked news ids, impressions = ``Nxxx-1/0``), ``news.tsv`` (news_id, category,
subcategory, title, abstract, url, title_entities, abstract_entities).

Protocol:
- one row per (impression, shown news); label = click (real negatives: the news shown and not clicked);
- ``group`` = impression id (grouped AUC / NDCG / MRR per impression); ``ts`` = impression time in unix
  seconds (the file's local times read as UTC);
- ``history`` = the impression's click history (MIND's pre-window clicks of the user, oldest first), mapped to
  this scenario's item ids, last ``max_history`` kept. Items = the union of impression news and history news
  (22,592), so every history entry has an id. Being clicks from before the log window, these histories
  contain no val/test interaction;
- split by impression calendar day: the last ``test_days`` day(s) in the file -> test, the ``val_days`` before ->
  val, the rest -> train. In this subset: 2019-11-14 test (968 impressions), 2019-11-13 val (974), 2019-11-09 ..
  2019-11-12 train (3,058);
- item fields ``category`` / ``subcategory`` (private) and ``title`` tokens (``shared:tokens``) come from
  news.tsv, which is an independent sample: only 838 of the 22,592 items (3.7%) have them; the rest are
  0 / empty (coverage is recorded in the feature spec's ``extra``).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np

from unirec_lab.data.prepare import BuiltBundle
from unirec_lab.data.scenarios.base import RawScenarioSource
from unirec_lab.data.scenarios.fields import DEFAULT_TEXT_BUCKETS, list_column, text_field
from unirec_lab.data.scenarios.ids import dense_ids
from unirec_lab.data.scenarios.interactions import interactions_frame, make_spec
from unirec_lab.data.scenarios.raw import RawDataError, data_line, utf8_error
from unirec_lab.data.scenarios.text_embedding import optional_encoder, text_embedding_field, text_fingerprint
from unirec_lab.data.schema import FieldSpec
from unirec_lab.utils.lazy import lazy_import

pd = lazy_import("pandas")  # imported on first use: a cached job never needs it
pa = lazy_import("pyarrow")

_NEWS_ID = r"N\d+"


def read_tsv(path: Path, names: list[str]) -> pd.DataFrame:
    """A headerless TSV of strings with exactly ``len(names)`` fields per line (a bad line is named)."""
    try:
        df = pd.read_csv(path, sep="\t", header=None, names=names, dtype=str, keep_default_na=False,
                         quoting=csv.QUOTE_NONE, engine="c", on_bad_lines="error", encoding="utf-8")
    except pd.errors.ParserError as e:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if m:  # pandas counts every line (blank ones too), as an editor does
            raise RawDataError(f"{path}:{m[2]}: expected {m[1]} tab-separated fields, found {m[3]}") from None
        raise RawDataError(f"{path}: {e}".replace("\n", " ")) from None
    except UnicodeDecodeError:
        raise utf8_error(path) from None
    # short lines come back padded with empty strings: the last column being empty where it must not be
    return df


def line_of(path: Path, row: int) -> int:
    """File line of data row ``row`` of :func:`read_tsv` (blank lines are skipped as rows, counted as lines)."""
    return data_line(path, row, "\t")


def _first_bad(mask: pd.Series | np.ndarray) -> int:
    return int(np.flatnonzero(np.asarray(mask))[0])


def read_behaviors(path: Path) -> pd.DataFrame:
    df = read_tsv(path, ["impression", "user", "time", "history", "impressions"])
    if len(df) == 0:
        raise RawDataError(f"{path}: no impressions (empty file)")
    bad = ~df["impression"].str.fullmatch(r"\d+") | ~df["user"].str.fullmatch(r"U\d+")
    if bad.any():
        i = _first_bad(bad)
        raise RawDataError(f"{path}:{line_of(path, i)}: expected '<impression id>\\t U<user>\\t...', got "
                           f"{df.iloc[i]['impression']!r}, {df.iloc[i]['user']!r}")
    t = pd.to_datetime(df["time"], format="%m/%d/%Y %I:%M:%S %p", errors="coerce")
    if t.isna().any():
        i = _first_bad(t.isna())
        raise RawDataError(f"{path}:{line_of(path, i)}: unparsable time {df.iloc[i]['time']!r} (expected M/D/YYYY h:mm:ss AM/PM)")
    ok_hist = df["history"].str.fullmatch(rf"(?:{_NEWS_ID}(?: {_NEWS_ID})*)?")
    if not ok_hist.all():
        i = _first_bad(~ok_hist)
        raise RawDataError(f"{path}:{line_of(path, i)}: history must be space-separated news ids, got "
                           f"{df.iloc[i]['history'][:60]!r}")
    ok_imp = df["impressions"].str.fullmatch(rf"{_NEWS_ID}-[01](?: {_NEWS_ID}-[01])*")
    if not ok_imp.all():
        i = _first_bad(~ok_imp)
        raise RawDataError(f"{path}:{line_of(path, i)}: impressions must be space-separated 'Nxxx-0/1', got "
                           f"{df.iloc[i]['impressions'][:60]!r}")
    df["impression"] = df["impression"].astype(np.int64)
    if df["impression"].duplicated().any():
        i = _first_bad(df["impression"].duplicated())
        raise RawDataError(f"{path}:{line_of(path, i)}: impression id {df['impression'].iloc[i]} appears twice")
    df["ts"] = (t.astype("datetime64[s]").astype(np.int64)).to_numpy()
    df["day"] = t.dt.normalize()
    return df



def last_entries(values: np.ndarray, lengths: np.ndarray, k: int) -> pa.ListArray:
    """The last ``k`` entries of each ragged list (``values`` concatenated, ``lengths`` per list), vectorised."""
    offsets = np.r_[0, np.cumsum(lengths)]
    keep_from = np.maximum(offsets[:-1], offsets[1:] - k)
    kept_len = offsets[1:] - keep_from
    sel = np.repeat(keep_from, kept_len) + (np.arange(kept_len.sum()) - np.repeat(np.cumsum(kept_len) - kept_len,
                                                                                  kept_len))
    return pa.ListArray.from_arrays(pa.array(np.r_[0, np.cumsum(kept_len)].astype(np.int32)),
                                    pa.array(values[sel].astype(np.int64)))

class MindScenario(RawScenarioSource):
    """MIND impressions: click labels with real negatives, grouped by impression, explicit click histories."""

    dataset = "news/mind_small_subset"
    loader_version = 1

    def __init__(self, name: str, raw_dir: str | Path, max_history: int = 50, val_days: int = 1,
                 test_days: int = 1, max_title_len: int = 30, text_buckets: int = DEFAULT_TEXT_BUCKETS,
                 text_encoder: dict[str, Any] | None = None, embedding_cache: str | None = None) -> None:
        if val_days < 1 or test_days < 1 or max_history < 0:
            raise ValueError(f"scenario {name!r}: need val_days >= 1, test_days >= 1, max_history >= 0")
        self.encoder = optional_encoder(text_encoder)  # None: no title_vec field (the default bundle)
        self.embedding_cache = embedding_cache
        super().__init__(name, raw_dir, dict(max_history=max_history, val_days=val_days, test_days=test_days,
                                             max_title_len=max_title_len, text_buckets=text_buckets))

    def raw_files(self) -> list[str]:
        return ["behaviors.tsv", "news.tsv"]

    def fingerprint(self) -> dict[str, Any]:
        fp = super().fingerprint()
        if self.encoder is not None:  # encoder name + verified weights hash + the text column
            fp["text_embedding"] = text_fingerprint(self.encoder, ["title"])
        return fp

    def _build(self) -> BuiltBundle:
        p = self.params
        beh_file, news_file = (self.raw.file(f) for f in self.raw_files())
        beh = read_behaviors(beh_file)
        news = read_tsv(news_file, ["news", "category", "subcategory", "title", "abstract", "url",
                                    "title_entities", "abstract_entities"])
        bad = ~news["news"].str.fullmatch(_NEWS_ID)
        if bad.any():
            i = _first_bad(bad)
            raise RawDataError(f"{news_file}:{line_of(news_file, i)}: expected a news id 'Nxxx', got {news['news'].iloc[i]!r}")
        news = news.drop_duplicates("news")

        # one row per shown news
        pairs = beh["impressions"].str.split(" ")
        n_per = pairs.str.len().to_numpy()
        tok = pd.Series(np.concatenate(pairs.to_numpy()) if len(pairs) else np.zeros(0, dtype=object))
        shown = tok.str[:-2].to_numpy(dtype=object)
        label = (tok.str[-1] == "1").to_numpy().astype(np.float32)
        imp_idx = np.repeat(np.arange(len(beh)), n_per)

        hist_tok = beh["history"].str.split(" ").map(lambda x: [] if x == [""] else x)  # per impression, small
        h_len = hist_tok.map(len).to_numpy()
        h_flat = np.concatenate([np.asarray(x, dtype=object) for x in hist_tok]) if h_len.sum() else np.zeros(
            0, dtype=object)

        item_codes, item_ids = dense_ids(np.concatenate([shown, h_flat]).astype(str))
        item = item_codes[: len(shown)]
        h_item = item_codes[len(shown):]
        user_codes, user_ids = dense_ids(beh["user"].to_numpy(dtype=str))
        nu, ni = len(user_ids), len(item_ids)

        # split by calendar day of the impression
        days = np.sort(beh["day"].unique())
        if len(days) < p["val_days"] + p["test_days"] + 1:
            raise RawDataError(f"{beh_file}: impressions span {len(days)} day(s); need at least "
                               f"{p['val_days'] + p['test_days'] + 1} for train/val/test by day")
        test_from, val_from = days[-p["test_days"]], days[-p["test_days"] - p["val_days"]]
        day = beh["day"].to_numpy()
        imp_level = np.where(day >= test_from, 2, np.where(day >= val_from, 1, 0))

        # histories: last max_history entries per impression, as an Arrow list column gathered per row
        k = p["max_history"]
        hist_arr = last_entries(h_item, h_len, k)
        # rows in time order (impression time, then impression id, then position in the impression)
        ts_row = beh["ts"].to_numpy()[imp_idx]
        group_row = beh["impression"].to_numpy()[imp_idx]
        order = np.lexsort((np.arange(len(imp_idx)), group_row, ts_row))
        row_hist = hist_arr.take(pa.array(imp_idx[order]))
        inter = interactions_frame(user_codes[imp_idx][order], item[order], label[order], ts_row[order],
                                   imp_level[imp_idx][order], group_row[order], sort=False)
        inter["history"] = row_hist.to_pandas()

        # item metadata where news.tsv has it
        meta = news.set_index("news").reindex(item_ids)
        has_meta = meta["category"].notna().to_numpy()
        cat_codes, cat_vocab = _codes(meta["category"])
        sub_codes, sub_vocab = _codes(meta["subcategory"])
        toks, title_len, info = text_field(meta["title"].fillna(""), p["max_title_len"], p["text_buckets"])
        items = pd.DataFrame({"item": np.arange(ni), "category": cat_codes, "subcategory": sub_codes,
                              "title": list_column(toks)})
        item_fields = [FieldSpec("category", "categorical", cat_vocab, "private"),
                       FieldSpec("subcategory", "categorical", sub_vocab, "private"),
                       FieldSpec("title", "text", info["vocab_size"], "shared:tokens", max_len=title_len)]
        text_info: dict[str, Any] = {}
        if self.encoder is not None:  # titles through the frozen encoder, into the shared text tower
            items["title_vec"], f, text_info = text_embedding_field(meta["title"].fillna(""), self.encoder,
                                                                    "title_vec", cache_dir=self.embedding_cache)
            item_fields.append(f)
        users = pd.DataFrame({"user": np.arange(nu)})
        coverage = {"items_with_metadata": int(has_meta.sum()), "items": int(ni),
                    "share": round(float(has_meta.mean()), 4) if ni else 0.0,
                    "rows_with_metadata": round(float(has_meta[item].mean()), 4) if len(item) else 0.0}
        spec = make_spec(
            self.name, nu, ni, [], item_fields,
            label="1 = clicked in the impression, 0 = shown and not clicked",
            protocol=f"impression clicks with real negatives, grouped by impression; split by day (last "
                     f"{p['test_days']} day test: {str(test_from)[:10]}+, {p['val_days']} day before val: "
                     f"{str(val_from)[:10]}); history = MIND click history (last {k})",
            group_by="impression", has_history=True, max_history_len=k, dataset="mind_small_subset",
            metadata_coverage=coverage, title_text=info, day_split={"val_from": str(val_from)[:10],
                                                                     "test_from": str(test_from)[:10]},
            **({"text_embedding": text_info} if text_info else {}))
        prov = {"raw_counts": {"impressions": int(len(beh)), "users": int(nu), "pairs": int(len(item)),
                               "clicks": int(label.sum()), "history_news": int(len(np.unique(h_flat))),
                               "impression_news": int(len(np.unique(shown))), "news_tsv": int(len(news))},
                "days": [str(d)[:10] for d in days]}
        return BuiltBundle(spec, inter, users, items, prov)


def _codes(col: pd.Series) -> tuple[np.ndarray, int]:
    """Strings -> ``1..V`` in sorted order, missing / empty -> 0; returns (codes, vocab size V + 1)."""
    vals = col.fillna("").astype(str).to_numpy(dtype=object)
    uniq = np.unique(vals[vals != ""])
    codes = np.zeros(len(vals), dtype=np.int64)
    present = vals != ""
    codes[present] = np.searchsorted(uniq, vals[present].astype(str)) + 1
    return codes, len(uniq) + 1
