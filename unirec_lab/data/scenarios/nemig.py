"""NeMig (Iana et al. 2023): user-study news impressions about migration, with complete article text.

Raw (``news/nemig_en`` or ``news/nemig_de``): ``behaviors.tsv`` (impression_id, user_id, click history,
impressions ``news_123-1/0``; no timestamp) and ``news.tsv`` (news_id, title, abstract, title_entities,
abstract_entities, category, sentiment, political leaning; a different column order from MIND).

Protocol (``conf/scenario/news_nemig*.yaml`` says the same):
- one row per (impression, shown article); label = click (real negatives), ``group`` = impression id;
  ``ts`` = impression id (the file has no time; it orders rows only, no split uses it);
- ``history`` = the impression's click-history column (the articles the participant picked *before* the
  study's impressions; constant per user), last ``max_history`` kept;
- split **by user** (seeded): ``test_frac`` of the users -> test, ``val_frac`` -> val, the rest train. Every
  impression of a user is in one split, and histories are pre-study clicks, so no val/test click can reach
  training in any form (a per-user impression order would need a time the data does not have: each user's 5
  impressions have the same history and no timestamps);
- **held-out articles** (``cold_item_frac``, seeded): that share of the referenced articles is never seen in
  training: train rows showing one are dropped and they are removed from train rows' histories. Val/test rows
  keep them, so a test impression mixes articles seen in training and never-seen ones, as a live news feed
  does (fresh articles every day). Their text is still encoded at prepare time: an article's content is known
  when it is published; the frozen encoder is not trained on it and no training row reads it;
- item fields (``item_fields`` selects a subset): ``category`` / ``sentiment`` / ``leaning`` (private
  categorical), ``entities`` (Wikidata ids of title + abstract entities, ``shared:entities``: the same id in
  the English and the German data), ``title`` / ``abstract`` hashed tokens (``shared:tokens``), ``text_vec``
  (frozen encoder over ``text_columns``, ``shared:text``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from unirec_lab.data.prepare import BuiltBundle
from unirec_lab.data.scenarios.base import RawScenarioSource
from unirec_lab.data.scenarios.fields import (
    DEFAULT_TEXT_BUCKETS,
    list_column,
    multi_field,
    text_field,
    word_id,
)
from unirec_lab.data.scenarios.ids import dense_ids
from unirec_lab.data.scenarios.interactions import interactions_frame, make_spec
from unirec_lab.data.scenarios.mind import _codes, _first_bad, last_entries, line_of, read_tsv
from unirec_lab.data.scenarios.raw import RawDataError
from unirec_lab.data.scenarios.text_embedding import join_columns, text_embedding_field, text_fingerprint
from unirec_lab.data.schema import FieldSpec
from unirec_lab.data.text_encoder import EncoderSpec
from unirec_lab.utils.lazy import lazy_import

pd = lazy_import("pandas")  # imported on first use: a cached job never needs it
pa = lazy_import("pyarrow")

_NEWS_ID = r"news_\d+"
NEWS_COLUMNS = ["news", "title", "abstract", "title_entities", "abstract_entities", "category", "sentiment",
                "leaning"]
ITEM_FIELDS = ("category", "sentiment", "leaning", "entities", "title", "abstract", "text_vec")
LANGUAGES = ("en", "de")
_QID = r"wikidata\.org/wiki/(Q\d+)"


def read_behaviors(path: Path) -> pd.DataFrame:
    """behaviors.tsv with every line checked (a bad one is named by file:line)."""
    df = read_tsv(path, ["impression", "user", "history", "impressions"])
    if len(df) == 0:
        raise RawDataError(f"{path}: no impressions (empty file)")
    checks = [(~df["impression"].str.fullmatch(r"\d+") | ~df["user"].str.fullmatch(r"U\d+"),
               "expected '<impression id>\\t U<user>\\t...'", "impression"),
              (~df["history"].str.fullmatch(rf"(?:{_NEWS_ID}(?: {_NEWS_ID})*)?"),
               "history must be space-separated news ids 'news_<n>'", "history"),
              (~df["impressions"].str.fullmatch(rf"{_NEWS_ID}-[01](?: {_NEWS_ID}-[01])*"),
               "impressions must be space-separated 'news_<n>-0/1'", "impressions")]
    for bad, what, col in checks:
        if bad.any():
            i = _first_bad(bad)
            raise RawDataError(f"{path}:{line_of(path, i)}: {what}, got {df[col].iloc[i][:60]!r}")
    df["impression"] = df["impression"].astype(np.int64)
    if df["impression"].duplicated().any():
        i = _first_bad(df["impression"].duplicated())
        raise RawDataError(f"{path}:{line_of(path, i)}: impression id {df['impression'].iloc[i]} appears twice")
    return df


def _entity_lists(meta: pd.DataFrame, max_len: int, buckets: int) -> tuple[list[np.ndarray], int, int]:
    """Wikidata ids of each item's title + abstract entities, hashed into ``buckets`` (shared across languages)."""
    qids = (meta["title_entities"].fillna("") + " " + meta["abstract_entities"].fillna("")).str.findall(_QID)
    n = qids.map(len).to_numpy()
    flat = np.concatenate([np.asarray(q, dtype=object) for q in qids]) if n.sum() else np.zeros(0, dtype=object)
    uniq, inv = np.unique(flat.astype(str), return_inverse=True) if len(flat) else (np.zeros(0, str), np.zeros(0, int))
    ids = np.fromiter((word_id(q, buckets) for q in uniq), dtype=np.int64, count=len(uniq))
    owner = np.repeat(np.arange(len(meta)), n)
    rank = np.arange(len(flat))  # first mention first
    lists, longest = multi_field(owner, ids[inv] if len(flat) else np.zeros(0, np.int64), len(meta), max_len, rank)
    return lists, max(1, longest), int(len(uniq))


class NemigScenario(RawScenarioSource):
    """NeMig impressions (English or German user data): click labels with real negatives, grouped by impression,
    split by user, a held-out share of articles never seen in training, every article field as an item field."""

    loader_version = 1

    def __init__(self, name: str, raw_dir: str | Path, language: str = "en", max_history: int = 50,
                 val_frac: float = 0.1, test_frac: float = 0.1, cold_item_frac: float = 0.2, seed: int = 0,
                 item_fields: list[str] | tuple[str, ...] = ITEM_FIELDS,
                 text_columns: list[str] | tuple[str, ...] = ("title", "abstract"),
                 encoder: dict[str, Any] | None = None, max_title_len: int = 30, max_abstract_len: int = 50,
                 max_entities: int = 10, text_buckets: int = DEFAULT_TEXT_BUCKETS,
                 entity_buckets: int = 1 << 16, embedding_cache: str | None = None) -> None:
        if language not in LANGUAGES:
            raise ValueError(f"scenario {name!r}: language={language!r}, expected one of {LANGUAGES}")
        if not (0 < val_frac and 0 < test_frac and val_frac + test_frac < 1 and 0 <= cold_item_frac < 1):
            raise ValueError(f"scenario {name!r}: val_frac={val_frac}, test_frac={test_frac}, cold_item_frac="
                             f"{cold_item_frac}; expected val_frac, test_frac > 0 with sum < 1 and 0 <= "
                             "cold_item_frac < 1")
        bad = sorted(set(item_fields) - set(ITEM_FIELDS))
        if bad:
            raise ValueError(f"scenario {name!r}: item_fields {bad} unknown; expected some of {list(ITEM_FIELDS)}")
        bad_cols = sorted(set(text_columns) - {"title", "abstract", "category"})
        if bad_cols or not text_columns:
            raise ValueError(f"scenario {name!r}: text_columns={list(text_columns)}, expected a non-empty subset "
                             "of ['title', 'abstract', 'category']")
        self.dataset = f"news/nemig_{language}"
        self.encoder = EncoderSpec.from_config(encoder)
        self.embedding_cache = embedding_cache  # where encoder outputs are memoised; not a bundle parameter
        super().__init__(name, raw_dir, dict(
            language=language, max_history=max_history, val_frac=val_frac, test_frac=test_frac,
            cold_item_frac=cold_item_frac, seed=seed, item_fields=list(item_fields), text_columns=list(text_columns),
            max_title_len=max_title_len, max_abstract_len=max_abstract_len, max_entities=max_entities,
            text_buckets=text_buckets, entity_buckets=entity_buckets))

    def raw_files(self) -> list[str]:
        return ["behaviors.tsv", "news.tsv"]

    def fingerprint(self) -> dict[str, Any]:
        fp = super().fingerprint()
        if "text_vec" in self.params["item_fields"]:  # encoder name + verified weights hash + text columns
            fp["text_embedding"] = text_fingerprint(self.encoder, self.params["text_columns"])
        return fp

    def _build(self) -> BuiltBundle:
        p = self.params
        beh_file, news_file = (self.raw.file(f) for f in self.raw_files())
        beh = read_behaviors(beh_file)
        news = read_tsv(news_file, NEWS_COLUMNS)
        bad = ~news["news"].str.fullmatch(_NEWS_ID)
        if bad.any():
            i = _first_bad(bad)
            raise RawDataError(f"{news_file}:{line_of(news_file, i)}: expected a news id 'news_<n>', got "
                               f"{news['news'].iloc[i]!r}")
        news = news.drop_duplicates("news")

        # one row per shown article
        pairs = beh["impressions"].str.split(" ")
        tok = pd.Series(np.concatenate(pairs.to_numpy()))
        shown = tok.str[:-2].to_numpy(dtype=object)
        label = (tok.str[-1] == "1").to_numpy().astype(np.float32)
        imp_idx = np.repeat(np.arange(len(beh)), pairs.str.len().to_numpy())
        hist_tok = beh["history"].str.split(" ").map(lambda x: [] if x == [""] else x)  # per impression
        h_len = hist_tok.map(len).to_numpy()
        h_flat = np.concatenate([np.asarray(x, dtype=object) for x in hist_tok]) if h_len.sum() else np.zeros(
            0, dtype=object)
        item_codes, item_ids = dense_ids(np.concatenate([shown, h_flat]).astype(str))
        item, h_item = item_codes[: len(shown)], item_codes[len(shown):]
        user_codes, user_ids = dense_ids(beh["user"].to_numpy(dtype=str))
        nu, ni = len(user_ids), len(item_ids)
        missing = ~pd.Index(item_ids).isin(news["news"])
        if missing.any():
            raise RawDataError(f"{news_file}: {int(missing.sum())} referenced article(s) have no row, e.g. "
                               f"{item_ids[missing][0]!r} (NeMig has text for every referenced article)")

        # split by user; held-out articles
        rng = self.rng(1)
        perm = rng.permutation(nu)
        n_test, n_val = max(1, round(p["test_frac"] * nu)), max(1, round(p["val_frac"] * nu))
        user_level = np.zeros(nu, dtype=np.int64)
        user_level[perm[:n_test]], user_level[perm[n_test:n_test + n_val]] = 2, 1
        cold = np.zeros(ni, dtype=bool)
        cold[self.rng(2).permutation(ni)[: round(p["cold_item_frac"] * ni)]] = True
        imp_level = user_level[user_codes]
        row_level = imp_level[imp_idx]
        keep = ~((row_level == 0) & cold[item])

        # histories: drop held-out articles from train impressions' histories, keep the last max_history
        h_owner = np.repeat(np.arange(len(beh)), h_len)
        h_keep = ~((imp_level[h_owner] == 0) & cold[h_item])
        h_item, h_owner = h_item[h_keep], h_owner[h_keep]
        h_len = np.bincount(h_owner, minlength=len(beh))
        k = p["max_history"]
        hist_arr = last_entries(h_item, h_len, k)
        group_row = beh["impression"].to_numpy()[imp_idx]
        order = np.flatnonzero(keep)[np.lexsort((np.flatnonzero(keep), group_row[keep]))]
        inter = interactions_frame(user_codes[imp_idx][order], item[order], label[order], group_row[order],
                                   row_level[order], group_row[order], sort=False)
        inter["history"] = hist_arr.take(pa.array(imp_idx[order])).to_pandas()

        items, fields, text_info = self._item_table(news.set_index("news").reindex(item_ids).reset_index(), ni)
        spec = make_spec(
            self.name, nu, ni, [], fields,
            label="1 = clicked in the impression, 0 = shown and not clicked",
            protocol=f"impression clicks with real negatives, grouped by impression; split by user "
                     f"({p['val_frac']:.0%} val / {p['test_frac']:.0%} test users, seed {p['seed']}); "
                     f"{p['cold_item_frac']:.0%} of articles held out of training; history = NeMig click "
                     f"history (last {k})",
            group_by="impression", has_history=True, max_history_len=k, dataset=f"nemig_{p['language']}",
            held_out_items=int(cold.sum()), **({"text_embedding": text_info} if text_info else {}))
        cats = news.set_index("news").reindex(item_ids)["category"]
        prov = {"raw_counts": {
            "impressions": int(len(beh)), "users": int(nu), "pairs": int(len(shown)), "clicks": int(label.sum()),
            "shown_news": int(len(np.unique(shown))), "history_news": int(len(np.unique(h_flat))),
            "referenced_news": int(ni), "news_tsv_rows": int(len(news)), "news_tsv_categories":
                int(news["category"].replace("", np.nan).nunique()), "referenced_categories": int(cats.nunique()),
            "mean_history_len": round(float(hist_tok.map(len).mean()), 2)},
            "held_out_items": int(cold.sum()), "rows_dropped_held_out": int((~keep).sum())}
        return BuiltBundle(spec, inter, pd.DataFrame({"user": np.arange(nu)}), items, prov)

    def _item_table(self, meta: pd.DataFrame, ni: int) -> tuple[pd.DataFrame, list[FieldSpec], dict[str, Any]]:
        """items.parquet and its field specs: the configured subset of :data:`ITEM_FIELDS`."""
        p, want = self.params, set(self.params["item_fields"])
        items = pd.DataFrame({"item": np.arange(ni)})
        fields: list[FieldSpec] = []
        for col in ("category", "sentiment", "leaning"):
            if col in want:
                items[col], vocab = _codes(meta[col])
                fields.append(FieldSpec(col, "categorical", vocab, "private"))
        if "entities" in want:
            lists, longest, _ = _entity_lists(meta, p["max_entities"], p["entity_buckets"])
            items["entities"] = list_column(lists)
            fields.append(FieldSpec("entities", "multi", p["entity_buckets"], "shared:entities", max_len=longest))
        for col, max_len in (("title", p["max_title_len"]), ("abstract", p["max_abstract_len"])):
            if col in want:
                toks, longest, info = text_field(meta[col].fillna(""), max_len, p["text_buckets"])
                items[col] = list_column(toks)
                fields.append(FieldSpec(col, "text", info["vocab_size"], "shared:tokens", max_len=longest))
        text_info: dict[str, Any] = {}
        if "text_vec" in want:
            texts = join_columns(meta, p["text_columns"], f"scenario {self.name!r}")
            items["text_vec"], f, text_info = text_embedding_field(texts, self.encoder,
                                                                   cache_dir=self.embedding_cache)
            text_info = {**text_info, **text_fingerprint(self.encoder, p["text_columns"])}
            fields.append(f)
        return items, fields, text_info
