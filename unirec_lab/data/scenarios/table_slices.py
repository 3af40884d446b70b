"""Scenarios as slices of one dataset, and dense fields scaled with train statistics.

A :class:`~unirec_lab.data.scenarios.table.TableScenario` with ``slice`` keeps the rows whose value in one column
(of the interactions table or of the users / items side table) is one of ``values``: SWR's MovieLens domains are
``slice: {table: users, column: age, values: [1, 18]}``. With ``id_space`` every slice numbers users, items and
field values from the *whole* table, so the slices of one id space share one id range (one embedding per user)
and, with ``split.scope: pooled``, one random split of the pooled rows (seeded by the id space, not the scenario).

Dense fields are scaled here, after the split, with statistics of the training rows only (each training row
counts its user's / item's value once), so validation and test values can never move the scaler.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from unirec_lab.data.scenarios.table_io import TableScenarioError, check_keys, read_table, require_columns
from unirec_lab.utils.lazy import lazy_import

pd = lazy_import("pandas")  # imported on first use: a cached job never needs it

SLICE_KEYS = ("table", "column", "values")
SLICE_TABLES = ("interactions", "users", "items")
SCALERS = ("minmax", "standard", "none")


def check_slice(spec: Mapping[str, Any], has_side: dict[str, bool], where: str) -> dict[str, Any]:
    """Validate a ``slice`` block: ``table`` (interactions | users | items), ``column``, non-empty ``values``."""
    check_keys(spec, SLICE_KEYS, where)
    table = spec.get("table", "interactions")
    if table not in SLICE_TABLES:
        raise TableScenarioError(f"{where}.table={table!r}, expected one of {list(SLICE_TABLES)}")
    if table != "interactions" and not has_side[table]:
        raise TableScenarioError(f"{where}.table={table!r} but the scenario has no {table} side table "
                                 f"(add the {table}: block with path, key and fields)")
    if not spec.get("column"):
        raise TableScenarioError(f"{where}.column is missing (the column whose value picks the slice)")
    values = spec.get("values")
    if not isinstance(values, list) or not values:
        raise TableScenarioError(f"{where}.values={values!r}, expected a non-empty list of column values")
    return {"table": table, "column": str(spec["column"]), "values": list(values)}


def _as_strings(values: pd.Series | list) -> np.ndarray:
    """Values compared as text, ``18.0`` written ``18``, so a YAML ``18`` matches a file's ``18`` or ``"18"``."""
    s = pd.Series(values)
    if pd.api.types.is_float_dtype(s) and np.all(np.mod(s.dropna().to_numpy(), 1) == 0):
        s = s.astype("Int64")
    return s.astype(str).to_numpy()


def slice_mask(df: pd.DataFrame, cols: Mapping[str, str | None], spec: Mapping[str, Any],
               files: Mapping[str, Any], where: str) -> np.ndarray:
    """Which interaction rows belong to the slice (the side table's value of the row's user / item)."""
    table, column = spec["table"], spec["column"]
    if table == "interactions":
        require_columns(df, {"column": column}, files["interactions"]["path"], where)
        value = _as_strings(df[column])
    else:
        side = files[table]
        t = read_table(side, f"{where} ({table})")
        require_columns(t, {"key": side["key"], "column": column}, side["path"], where)
        key_col = cols["user" if table == "users" else "item"]
        lookup = pd.Series(_as_strings(t[column]), index=_as_strings(t[side["key"]]))
        lookup = lookup[~lookup.index.duplicated()]
        value = lookup.reindex(_as_strings(df[key_col])).to_numpy()
    keep = np.isin(value, _as_strings(spec["values"]))
    if not keep.any():
        seen = sorted({str(v) for v in pd.unique(value)})[:20]
        raise TableScenarioError(f"{where}: column {column!r} of {table} has none of the values {spec['values']} "
                                 f"on any row; values found: {seen}")
    return keep


def scale_dense(frame: pd.DataFrame, fields: list[str], entity_of_train_row: np.ndarray, how: str
                ) -> dict[str, dict[str, float]]:
    """Scale ``fields`` of ``frame`` (one row per dense id, in place) by statistics over the train rows
    (``entity_of_train_row``: the dense id of each training interaction). Missing values become 0 (the train
    minimum / mean after scaling). Returns the statistics used, for the bundle's provenance."""
    out: dict[str, dict[str, float]] = {}
    for name in fields:
        raw = frame[name].to_numpy(np.float64)
        seen = raw[entity_of_train_row]
        seen = seen[np.isfinite(seen)]
        if how == "none" or len(seen) == 0:
            lo, width = 0.0, 1.0
        elif how == "minmax":
            lo, width = float(seen.min()), float(seen.max() - seen.min())
        else:
            lo, width = float(seen.mean()), float(seen.std())
        width = width if width > 0 else 1.0
        scaled = (raw - lo) / width
        frame[name] = np.where(np.isfinite(scaled), scaled, 0.0).astype(np.float32)
        out[name] = {"scale": how, "shift": lo, "divisor": width, "train_rows": int(len(seen))}
    return out
