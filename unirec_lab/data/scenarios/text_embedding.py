"""The ``text_embedding`` item field: one frozen-encoder vector per item, computed once at prepare time.

A loader joins the configured text columns of each item (``" . "`` between non-empty parts), encodes them in
batches with :func:`unirec_lab.data.text_encoder.encode_texts` and stores the vectors in ``items.parquet`` as
a ``list<float16>`` column (an empty list = no text: the item gets no text vector). The field's namespace
(``shared:text`` by default) names the one projection every scenario with text shares; ``max_len`` is the
vector width. :func:`text_fingerprint` is what the loader adds to its bundle fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unirec_lab.data.schema import FieldSpec
from unirec_lab.data.text_encoder import EncoderSpec, TextEncoderError, encode_texts
from unirec_lab.utils.lazy import lazy_import

pd = lazy_import("pandas")  # imported on first use: a cached job never needs it
pa = lazy_import("pyarrow")

TEXT_NAMESPACE = "shared:text"


def join_columns(df: pd.DataFrame, columns: Sequence[str], where: str) -> pd.Series:
    """One string per row: the non-empty values of ``columns`` joined by ``" . "``."""
    missing = [c for c in columns if c not in df.columns]
    if missing or not columns:
        raise TextEncoderError(f"{where}: text_columns {list(columns)} must be non-empty and name columns of "
                               f"{sorted(df.columns)} (missing: {missing})")
    parts = [df[c].fillna("").astype(str).str.strip() for c in columns]
    out = parts[0]
    for p in parts[1:]:
        out = out.where(p == "", out + np.where(out == "", "", " . ") + p)
    return out.str.strip()


def optional_encoder(cfg: Any) -> EncoderSpec | None:
    """A loader's ``text_encoder`` parameter: ``None`` = no ``text_embedding`` field, else the encoder."""
    return None if cfg is None else EncoderSpec.from_config(cfg)


def text_fingerprint(encoder: EncoderSpec, columns: Sequence[str]) -> dict[str, Any]:
    """What a bundle's text vectors depend on: the encoder (name, verified weights hash) and the columns."""
    return {**encoder.fingerprint(), "text_columns": list(columns)}


def cached_encode(texts: list[str], encoder: EncoderSpec, cache_dir: str | Path | None, progress: bool = True
                  ) -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`encode_texts`, memoised on disk under ``cache_dir`` (``None``: no cache) by the encoder's
    fingerprint (verified weights hash) and the exact strings, so bundles that differ in other fields (the
    cold-start variants) encode the same articles once. The cache holds the float32 output unchanged."""
    if cache_dir is None:
        return encode_texts(texts, encoder, progress=progress)
    h = hashlib.sha256(json.dumps(encoder.fingerprint(), sort_keys=True).encode())
    for t in texts:
        h.update(t.encode("utf-8") + b"\0")
    path = Path(cache_dir) / f"{encoder.name}-{h.hexdigest()[:24]}.npy"
    if path.is_file():
        vecs = np.load(path)
        if vecs.shape[0] == len(texts):
            return vecs, {"encoder": encoder.name, "dim": int(vecs.shape[1]), "texts": int((np.abs(vecs).sum(1) > 0).sum()),
                          "cached": str(path)}
    vecs, info = encode_texts(texts, encoder, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npy")
    with os.fdopen(fd, "wb") as fh:
        np.save(fh, vecs)
    os.replace(tmp, path)  # atomic: a concurrent reader sees the old state or the whole file
    return vecs, info


def text_embedding_field(texts: pd.Series, encoder: EncoderSpec, name: str = "text_vec",
                         namespace: str = TEXT_NAMESPACE, progress: bool = True,
                         cache_dir: str | Path | None = None, dedupe: bool = False
                         ) -> tuple[pd.Series, FieldSpec, dict[str, Any]]:
    """(``list<float16>`` column, its :class:`FieldSpec`, a summary) for the given item texts. ``dedupe``:
    encode each distinct text once (items that share a text, e.g. a category name, share its vector)."""
    strings = texts.fillna("").astype(str).to_numpy(dtype=object)
    if dedupe:
        uniq, inv = np.unique(strings.astype(str), return_inverse=True)
        vecs, info = cached_encode(uniq.tolist(), encoder, cache_dir, progress=progress)
        vecs = vecs[inv.reshape(-1)]
    else:
        vecs, info = cached_encode(strings.tolist(), encoder, cache_dir, progress=progress)
    has = np.abs(vecs).sum(1) > 0
    dim = vecs.shape[1]
    offsets = np.r_[0, np.cumsum(has * dim)].astype(np.int32)
    arr = pa.ListArray.from_arrays(pa.array(offsets), pa.array(vecs[has].astype(np.float16).reshape(-1)))
    col = pd.Series(arr.to_pandas(), dtype=object)
    info = {**info, "items_with_text": int(has.sum())}
    return col, FieldSpec(name, "text_embedding", 0, namespace, max_len=int(vecs.shape[1])), info
