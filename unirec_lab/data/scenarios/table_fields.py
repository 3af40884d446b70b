"""User / item side tables of a :class:`~unirec_lab.data.scenarios.table.TableScenario` as bundle fields.

A side table has its own file spec, a ``key`` column (the raw user / item id) and a list of ``fields``; each
field is one column turned into
- ``categorical``: one value per row;
- ``multi``: a ``sep``-separated list of values (first ``max_len`` distinct ones, in file order);
- ``text``: lowercase words, first ``max_len`` (the same tokenizer as the shipped loaders);
- ``dense``: a number, scaled by ``scale`` (minmax | standard | none) with training-row statistics once the
  split is known (``table_slices.scale_dense``); read here as raw floats.

Namespace ``private`` gives the field its own vocabulary (sorted distinct values ``1..V``; text: this
scenario's words). ``shared:<name>`` puts it in a table shared with every scenario naming the same namespace,
so a value must get the same id everywhere: values / words are hashed (blake2b) into ``buckets`` ids, exactly as
the shipped loaders hash text into ``shared:tokens``. Ids the side table does not list get ``0`` (missing).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from unirec_lab.data.scenarios.fields import (
    DEFAULT_TEXT_BUCKETS,
    list_column,
    multi_field,
    text_field,
    word_id,
)
from unirec_lab.data.scenarios.table_io import (
    FILE_KEYS,
    TableScenarioError,
    check_file_spec,
    check_keys,
    read_table,
    require_columns,
)
from unirec_lab.data.schema import FieldSpec
from unirec_lab.utils.lazy import lazy_import

pd = lazy_import("pandas")  # imported on first use: a cached job never needs it

KINDS = ("categorical", "multi", "text", "dense")
FIELD_KEYS = ("column", "name", "kind", "sep", "max_len", "namespace", "buckets", "scale")
SIDE_KEYS = (*FILE_KEYS, "key", "fields")
DEFAULT_SHARED_BUCKETS = 1 << 14  # hashed categorical / multi values in a shared namespace
DEFAULT_MAX_LEN = {"categorical": 1, "multi": 20, "text": 32, "dense": 1}


def check_field(f: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validate one field entry and fill its defaults."""
    check_keys(f, FIELD_KEYS, where)
    if not f.get("column"):
        raise TableScenarioError(f"{where}.column is missing (the side-table column to use)")
    kind = f.get("kind", "categorical")
    if kind not in KINDS:
        raise TableScenarioError(f"{where}.kind={kind!r}, expected one of {list(KINDS)}")
    name = str(f.get("name") or f["column"])
    if name in ("user", "item"):
        raise TableScenarioError(f"{where}.name={name!r} is reserved for the id column; pick another name")
    ns = str(f.get("namespace") or ("shared:tokens" if kind == "text" else "private"))
    if ns != "private" and not (ns.startswith("shared:") and len(ns) > len("shared:")):
        raise TableScenarioError(f"{where}.namespace={ns!r}, expected 'private' or 'shared:<name>'")
    default_buckets = 0 if ns == "private" else (DEFAULT_TEXT_BUCKETS if kind == "text" else DEFAULT_SHARED_BUCKETS)
    buckets = int(f.get("buckets") if f.get("buckets") is not None else default_buckets)
    if ns != "private" and buckets < 2:
        raise TableScenarioError(f"{where}.buckets={buckets}: a shared namespace hashes values, need buckets >= 2")
    max_len = int(f.get("max_len") or DEFAULT_MAX_LEN[kind])
    if max_len < 1:
        raise TableScenarioError(f"{where}.max_len={max_len}, expected >= 1")
    sep = f.get("sep", "|" if kind == "multi" else None)
    if kind == "multi" and not sep:
        raise TableScenarioError(f"{where}.sep is empty; a multi field needs the separator of its values")
    scale = f.get("scale", "minmax" if kind == "dense" else None)
    if kind == "dense" and scale not in ("minmax", "standard", "none"):
        raise TableScenarioError(f"{where}.scale={scale!r}, expected one of ['minmax', 'standard', 'none']")
    if kind != "dense" and f.get("scale") is not None:
        raise TableScenarioError(f"{where}.scale is only for kind: dense (this field is {kind})")
    return {"column": str(f["column"]), "name": name, "kind": kind, "sep": sep, "max_len": max_len,
            "namespace": ns, "buckets": buckets, "scale": scale}


def check_side_spec(spec: Mapping[str, Any], base_dir: Path, where: str) -> dict[str, Any]:
    check_keys(spec, SIDE_KEYS, where)
    if not spec.get("key"):
        raise TableScenarioError(f"{where}.key is missing (the column holding the {where[:-1]} id)")
    fields = spec.get("fields") or []
    if not isinstance(fields, list):
        raise TableScenarioError(f"{where}.fields must be a list of {{column, kind, ...}} entries")
    checked = [check_field(f, f"{where}.fields[{i}]") for i, f in enumerate(fields)]
    names = [f["name"] for f in checked]
    if len(set(names)) != len(names):
        raise TableScenarioError(f"{where}.fields: field names {names} are not distinct")
    file_spec = check_file_spec({k: v for k, v in spec.items() if k in FILE_KEYS}, base_dir, where)
    return {**file_spec, "key": str(spec["key"]), "fields": checked}


def _value_strings(values: pd.Series) -> pd.Series:
    """Values as strings, ``3.0`` written ``3`` (a column with gaps is read as float), so hashing is stable."""
    if pd.api.types.is_float_dtype(values) and np.all(np.mod(values.dropna().to_numpy(), 1) == 0):
        values = values.astype("Int64")
    return values.astype(str)


def _value_ids(values: pd.Series, f: Mapping[str, Any]) -> tuple[np.ndarray, int]:
    """Non-null values -> ids ``>= 1`` and the vocabulary size (private: sorted distinct; shared: hashed)."""
    if f["namespace"] == "private":
        codes, uniq = pd.factorize(values.astype(str) if values.dtype == object else values, sort=True)
        return codes.astype(np.int64) + 1, len(uniq) + 1
    strings = _value_strings(values)
    uniq, inv = np.unique(strings.to_numpy(dtype=object).astype(str), return_inverse=True)
    ids = np.fromiter((word_id(w, f["buckets"]) for w in uniq), dtype=np.int64, count=len(uniq))
    return ids[inv.reshape(-1)], int(f["buckets"])


def align_keys(raw_ids: np.ndarray, keys: pd.Series) -> np.ndarray:
    """Dense id of each side-table key (``-1`` when the interactions never mention it); ids compared as
    strings when the two files typed them differently (e.g. ``7`` vs ``"7"``)."""
    index = pd.Index(raw_ids)
    if index.inferred_type != pd.Index(keys.to_numpy()).inferred_type:
        index = pd.Index(_value_strings(pd.Series(raw_ids)).to_numpy())
        keys = _value_strings(keys)
    return index.get_indexer(keys.to_numpy())


def side_table(spec: Mapping[str, Any], raw_ids: np.ndarray, entity: str, where: str
               ) -> tuple[pd.DataFrame, list[FieldSpec], dict[str, Any]]:
    """The ``users`` / ``items`` frame (one row per dense id) and its field specs from one side table."""
    df = read_table(spec, where)
    require_columns(df, {"key": spec["key"], **{f"fields[{i}].column": f["column"]
                                                for i, f in enumerate(spec["fields"])}}, spec["path"], where)
    df = df[df[spec["key"]].notna()].reset_index(drop=True)
    owner = align_keys(raw_ids, df[spec["key"]])
    dup = df[spec["key"]][(owner >= 0) & pd.Series(owner).duplicated().to_numpy()]
    if len(dup):
        raise TableScenarioError(f"{spec['path']}: key column {spec['key']!r} ({where}.key) has duplicate value "
                                 f"{dup.iloc[0]!r}; expected one row per {entity}")
    keep = owner >= 0
    df, owner = df[keep].reset_index(drop=True), owner[keep]
    n = len(raw_ids)
    out = pd.DataFrame({entity: np.arange(n, dtype=np.int64)})
    specs: list[FieldSpec] = []
    info: dict[str, Any] = {"rows_matched": int(keep.sum()), "rows_unmatched": int((~keep).sum())}
    for f in spec["fields"]:
        col = df[f["column"]]
        if f["kind"] == "dense":
            num = pd.to_numeric(col, errors="coerce")
            bad = num.isna() & col.notna()
            if bad.any():
                raise TableScenarioError(f"{spec['path']}: dense field column {f['column']!r} ({where}) has "
                                         f"non-numeric value {col[bad].iloc[0]!r}")
            values = np.full(n, np.nan)
            values[owner] = num.to_numpy(np.float64)
            out[f["name"]] = values  # raw; scaled with train statistics by the scenario (table_slices.scale_dense)
            specs.append(FieldSpec(f["name"], "dense", 0, f["namespace"]))
        elif f["kind"] == "categorical":
            present = col.notna().to_numpy()
            ids, vocab = _value_ids(col[present], f)
            values = np.zeros(n, dtype=np.int64)
            values[owner[present]] = ids
            out[f["name"]] = values
            specs.append(FieldSpec(f["name"], "categorical", vocab, f["namespace"]))
        elif f["kind"] == "multi":
            parts = col.dropna().astype(str).str.split(f["sep"], regex=False).explode().str.strip()
            parts = parts[parts.notna() & (parts != "")]
            rank = parts.groupby(level=0).cumcount().to_numpy()
            ids, vocab = _value_ids(parts.reset_index(drop=True), f)
            lists, longest = multi_field(owner[parts.index.to_numpy()], ids, n, f["max_len"], rank=rank)
            out[f["name"]] = list_column(lists)
            specs.append(FieldSpec(f["name"], "multi", vocab, f["namespace"], max_len=max(1, longest)))
        else:
            texts = pd.Series([""] * n, dtype=object)
            texts[owner] = col.fillna("").astype(str).to_numpy()
            lists, longest, tinfo = text_field(texts, f["max_len"], f["buckets"])
            out[f["name"]] = list_column(lists)
            specs.append(FieldSpec(f["name"], "text", tinfo["vocab_size"], f["namespace"], max_len=longest))
            info[f["name"]] = tinfo
    return out, specs, info
