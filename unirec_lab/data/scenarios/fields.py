"""Multi-valued and text fields of the users / items tables, as ``list<int>`` columns.

Bundle convention: values are ``>= 1`` (``0`` = missing). Text tokens live in the shared namespace
``shared:tokens``: hashing words with a fixed hash into a fixed number of buckets gives every scenario the same
id for the same word, so the shared embedding table means something.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np

from unirec_lab.data.scenarios.ids import positions_in_user
from unirec_lab.utils.lazy import lazy_import

pd = lazy_import("pandas")  # imported on first use: a cached job never needs it

DEFAULT_TEXT_BUCKETS = 1 << 17


def multi_field(owner: np.ndarray, value: np.ndarray, n_owner: int, max_len: int,
                rank: np.ndarray | None = None) -> tuple[list[np.ndarray], int]:
    """Per-owner lists from (owner, value) pairs: values are already ``>= 1`` (0 = missing), deduplicated,
    ordered by ``rank`` ascending (ties by value) and cut to ``max_len``. Returns (lists for owners
    ``0..n_owner-1``, longest list length)."""
    owner = np.asarray(owner, dtype=np.int64)
    value = np.asarray(value, dtype=np.int64)
    df = pd.DataFrame({"o": owner, "v": value, "r": np.zeros(len(owner)) if rank is None else rank})
    df = df.drop_duplicates(["o", "v"]).sort_values(["o", "r", "v"], kind="stable")
    df["k"] = df.groupby("o", sort=False).cumcount()
    df = df[df["k"] < max_len]
    counts = np.bincount(df["o"].to_numpy(), minlength=n_owner)
    vals = df["v"].to_numpy()
    lists = np.split(vals, np.cumsum(counts)[:-1]) if n_owner else []
    return lists, int(counts.max()) if len(counts) else 0


_WORD = re.compile(r"[a-z0-9]+")


def tokenize(texts: pd.Series) -> pd.Series:
    """Lowercase alphanumeric words of each text (a list per row)."""
    return texts.fillna("").astype(str).str.lower().str.findall(_WORD)


def word_id(word: str, buckets: int) -> int:
    """Stable id of a word in ``1..buckets-1`` (blake2b, independent of the scenario and of PYTHONHASHSEED)."""
    h = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")
    return 1 + h % (buckets - 1)


def text_field(texts: pd.Series, max_len: int, buckets: int, vocab_texts: pd.Series | None = None
               ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
    """Token id lists (first ``max_len`` words) for each text, plus vocab size and a summary.

    ``buckets > 0``: word -> :func:`word_id` (same id for the same word in every scenario: the namespace is
    ``shared:tokens``); vocab size = ``buckets``. ``buckets == 0``: a vocabulary of this scenario's words
    (sorted, ids ``1..V``; built from ``vocab_texts`` too when given, e.g. every name in skill.json); vocab size
    ``V + 1``.
    """
    toks = tokenize(texts.reset_index(drop=True))
    lens = toks.map(len).to_numpy()
    flat = toks.explode()
    flat = flat[flat.notna()]
    words = pd.Index(pd.unique(flat.to_numpy(dtype=object)))
    if buckets <= 0 and vocab_texts is not None:
        extra = tokenize(vocab_texts.reset_index(drop=True)).explode().dropna().to_numpy(dtype=object)
        words = words.append(pd.Index(extra)).unique()
    if buckets > 0:
        ids = np.fromiter((word_id(w, buckets) for w in words), dtype=np.int64, count=len(words))
        vocab = buckets
        collided = int(len(words) - len(np.unique(ids)))
    else:
        order = np.argsort(np.asarray(words, dtype=object).astype(str))
        ids = np.empty(len(words), dtype=np.int64)
        ids[order] = np.arange(1, len(words) + 1)
        vocab = len(words) + 1
        collided = 0
    flat_ids = ids[words.get_indexer(flat.to_numpy(dtype=object))] if len(flat) else np.zeros(0, np.int64)
    owner = np.repeat(np.arange(len(toks)), lens)
    pos = positions_in_user(owner)
    keep = pos < max_len
    counts = np.bincount(owner[keep], minlength=len(toks))
    lists = np.split(flat_ids[keep], np.cumsum(counts)[:-1]) if len(toks) else []
    info = {"vocab_size": int(vocab), "distinct_words": int(len(words)), "buckets": int(buckets),
            "bucket_collisions": collided, "texts_with_tokens": int((lens > 0).sum()), "truncated_texts": int((lens > max_len).sum())}
    return lists, max(1, int(counts.max()) if len(counts) else 1), info


def list_column(lists: list[np.ndarray]) -> pd.Series:
    """An object column of int64 lists (parquet list<int64>)."""
    return pd.Series([np.asarray(x, dtype=np.int64) for x in lists], dtype=object)
