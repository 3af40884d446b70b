"""Builds the run's :class:`~unirec_lab.features.FeatureSpace` from scenario bundles (needs the bundle schema,
so it lives in data/ while the class itself sits in the neutral contract module)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from unirec_lab.data.derived import BundleTables, ListColumn
from unirec_lab.data.schema import Bundle, BundleError, FeatureSpec, FieldSpec
from unirec_lab.features import FeatureSpace, Slot
from unirec_lab.utils.lazy import lazy_import

pa = lazy_import("pyarrow")  # only for frames read from parquet; cached tables are numpy already


def _slots(specs: dict[str, FeatureSpec], entity: str) -> tuple[list[Slot], dict[str, int]]:
    widths: dict[str, int] = {}
    kinds: dict[str, str] = {}
    vocab: dict[str, int] = {}
    for name, spec in specs.items():
        for f in (spec.user_fields if entity == "user" else spec.item_fields):
            if f.kind in ("text_embedding", "dense"):  # not embedding tables (see _text_slots, _dense_names)
                continue
            key = f.table_key(name, entity)
            kind = "categorical" if f.kind == "categorical" else "bag"
            if key in kinds and kinds[key] != kind:
                raise BundleError(f"shared table {key!r} is used as {kinds[key]} and as {kind} ({name}.{f.name})")
            kinds[key] = kind
            widths[key] = max(widths.get(key, 0), 1 if kind == "categorical" else f.max_len)
            vocab[key] = max(vocab.get(key, 0), f.vocab_size)
    slots, start = [], 0
    for key in widths:
        slots.append(Slot(key, kinds[key], start, widths[key]))
        start += widths[key]
    return slots, vocab


def _text_slots(specs: dict[str, FeatureSpec]) -> list[Slot]:
    """One float slot per text-embedding namespace; every scenario in it must use the same vector width."""
    widths: dict[str, int] = {}
    for name, spec in specs.items():
        for f in spec.user_fields:
            if f.kind == "text_embedding":
                raise BundleError(f"{name}.{f.name}: text_embedding is an item field kind; found on users")
        for f in spec.item_fields:
            if f.kind != "text_embedding":
                continue
            key = f.table_key(name, "item")
            if widths.setdefault(key, f.max_len) != f.max_len:
                raise BundleError(f"{name}.{f.name}: text vectors of width {f.max_len} in {key!r}, which other "
                                  f"scenarios fill with width {widths[key]} (one encoder per namespace)")
    slots, start = [], 0
    for key, width in widths.items():
        slots.append(Slot(key, "dense", start, width))
        start += width
    return slots


def _list_parts(column: Any, value_type: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """``(lengths, flat values)`` of a list column: a cached :class:`ListColumn` or a frame's column."""
    if isinstance(column, ListColumn):
        return np.diff(np.asarray(column.offsets)), np.asarray(column.values)
    arr = pa.array(column) if value_type is None else pa.array(column, type=pa.list_(value_type()))
    return (arr.value_lengths().fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64),
            arr.flatten().to_numpy(zero_copy_only=False))


def _fill_text(mat: np.ndarray, rows: np.ndarray, slot: Slot, column: Any) -> None:
    lens, flat = _list_parts(column)
    flat = flat.astype(np.float32)
    has = lens > 0
    mat[rows[has], slot.start:slot.start + slot.width] = flat.reshape(-1, slot.width)


def _fill(mat: np.ndarray, rows: np.ndarray, slot: Slot, f: FieldSpec, column: Any) -> None:
    if f.kind == "categorical":
        mat[rows, slot.start] = np.asarray(column, dtype=np.int64)
        return
    lens, flat = _list_parts(column, lambda: pa.int64())
    flat = flat.astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lens)])
    pos = np.arange(len(flat)) - np.repeat(offsets[:-1], lens)
    keep = pos < slot.width
    mat[np.repeat(rows, lens)[keep], slot.start + pos[keep]] = flat[keep]


def _dense_names(specs: dict[str, FeatureSpec], entity: str) -> list[str]:
    """One column per dense field key (shared across the slices of an id space, else per scenario)."""
    names: list[str] = []
    for name, spec in specs.items():
        for f in (spec.user_fields if entity == "user" else spec.item_fields):
            if f.kind == "dense" and f.table_key(name, entity) not in names:
                names.append(f.table_key(name, entity))
    return names


def _offsets(specs: dict[str, FeatureSpec]) -> tuple[dict[str, int], dict[str, int], int, int, dict[str, str]]:
    """Global id offsets: each scenario its own range, except slices of one id space, which share the range of
    the first of them (so a user in two slices has one embedding row)."""
    user_offset, item_offset, nu, ni = {}, {}, 0, 0
    first: dict[str, str] = {}  # id space -> the scenario whose range it uses
    for name, spec in specs.items():
        owner = first.setdefault(spec.id_space, name) if spec.id_space else name
        if owner != name:
            o = specs[owner]
            if (o.num_users, o.num_items) != (spec.num_users, spec.num_items):
                raise BundleError(f"scenario {name!r} shares id space {spec.id_space!r} with {owner!r} but has "
                                  f"{spec.num_users} users / {spec.num_items} items, expected {o.num_users} / "
                                  f"{o.num_items} (prepare both from the same files)")
            user_offset[name], item_offset[name] = user_offset[owner], item_offset[owner]
            continue
        user_offset[name], item_offset[name] = nu, ni
        nu += spec.num_users
        ni += spec.num_items
    return user_offset, item_offset, nu, ni, {n: first.get(s.id_space, n) for n, s in specs.items()}


def build_feature_space(bundles: dict[str, Bundle] | dict[str, BundleTables]) -> FeatureSpace:
    """Lay out global ids and feature matrices for the given scenarios (order = scenario index), from loaded
    bundles (frames) or their cached :class:`BundleTables`."""
    specs = {name: b.spec for name, b in bundles.items()}
    user_offset, item_offset, nu, ni, owner = _offsets(specs)
    dense_names = {"user": _dense_names(specs, "user"), "item": _dense_names(specs, "item")}
    dense = {"user": np.zeros((nu + 1, len(dense_names["user"])), dtype=np.float32),
             "item": np.zeros((ni + 1, len(dense_names["item"])), dtype=np.float32)}
    user_slots, user_vocab = _slots(specs, "user")
    item_slots, item_vocab = _slots(specs, "item")
    u_cols = sum(s.width for s in user_slots)
    i_cols = sum(s.width for s in item_slots)
    user_mat = np.zeros((nu + 1, u_cols), dtype=np.int64)
    item_mat = np.zeros((ni + 1, i_cols), dtype=np.int64)
    item_scenario = np.full(ni + 1, -1, dtype=np.int64)
    text_slots = _text_slots(specs)
    text_mat = np.zeros((ni + 1, sum(s.width for s in text_slots)), dtype=np.float32)
    for s_idx, (name, b) in enumerate(bundles.items()):
        if owner[name] == name:  # shared ranges belong to the first slice of their id space
            item_scenario[item_offset[name] + 1: item_offset[name] + 1 + b.spec.num_items] = s_idx
        for entity, df, fields, mat, slots, offset in (
            ("user", b.users, b.spec.user_fields, user_mat, user_slots, user_offset[name]),
            ("item", b.items, b.spec.item_fields, item_mat, item_slots, item_offset[name]),
        ):
            by_key = {s.table: s for s in slots}
            rows = np.asarray(df[entity], dtype=np.int64) + (offset + 1)
            for f in fields:
                if f.kind == "text_embedding":
                    text_by_key = {s.table: s for s in text_slots}
                    _fill_text(text_mat, rows, text_by_key[f.table_key(name, entity)], df[f.name])
                    continue
                if f.kind == "dense":
                    col = dense_names[entity].index(f.table_key(name, entity))
                    dense[entity][rows, col] = np.asarray(df[f.name], dtype=np.float32)
                    continue
                _fill(mat, rows, by_key[f.table_key(name, entity)], f, df[f.name])
    return FeatureSpace(
        scenarios=list(bundles), num_users=nu + 1, num_items=ni + 1, user_offset=user_offset,
        item_offset=item_offset, tables={k: max(user_vocab.get(k, 0), item_vocab.get(k, 0)) for k in {**user_vocab, **item_vocab}}, user_slots=user_slots,
        item_slots=item_slots, user_features=torch.from_numpy(user_mat),
        item_features=torch.from_numpy(item_mat), item_scenario=torch.from_numpy(item_scenario),
        text_slots=text_slots, item_text=torch.from_numpy(text_mat) if text_slots else None,
        user_dense_names=dense_names["user"], item_dense_names=dense_names["item"],
        user_dense=torch.from_numpy(dense["user"]), item_dense=torch.from_numpy(dense["item"]),
        id_owner={n: o for n, o in owner.items() if n != o})
