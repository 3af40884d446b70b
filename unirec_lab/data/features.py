"""The feature space of a multi-scenario run: global ids, embedding tables and feature matrices.

Scenarios keep private user/item ids; to embed a mixed batch with one lookup, each scenario's ids are offset
into one global id range (``0`` is padding). Feature fields become *slots*: one per embedding table
(``<scenario>/<entity>/<field>`` for private fields, ``shared/<name>`` for shared ones), so a shared field
used by several scenarios is one slot and one table. ``user_features`` / ``item_features`` are ``[ids+1, cols]``
matrices of table indices (0 = missing); models gather from them, so batches only carry ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from unirec_lab.data.schema import Bundle, BundleError, FeatureSpec, FieldSpec


@dataclass(frozen=True)
class Slot:
    """A group of feature columns looked up in one table and pooled into one vector."""

    table: str
    kind: str
    start: int
    width: int


@dataclass
class FeatureSpace:
    """Sizes (all from feature specs) and the feature matrices of a run."""

    scenarios: list[str]
    num_users: int  # global, including the padding row 0
    num_items: int
    user_offset: dict[str, int]
    item_offset: dict[str, int]
    tables: dict[str, int]  # table key -> vocabulary size
    user_slots: list[Slot]
    item_slots: list[Slot]
    user_features: torch.Tensor = field(repr=False)
    item_features: torch.Tensor = field(repr=False)
    item_scenario: torch.Tensor = field(repr=False)  # [num_items] scenario index of each global item (-1 pad)
    # filled by the datamodule from the train split only (popularity baselines, cold-start slices)
    item_train_count: torch.Tensor | None = field(default=None, repr=False)  # [num_items] train rows per item
    item_train_pos: torch.Tensor | None = field(default=None, repr=False)  # [num_items] train positives
    user_train_pos: torch.Tensor | None = field(default=None, repr=False)  # [num_users] train positives

    @property
    def num_scenarios(self) -> int:
        return len(self.scenarios)

    def describe(self) -> dict[str, Any]:
        """Sizes only: what a checkpoint must agree with to be loadable."""
        return {"scenarios": self.scenarios, "num_users": self.num_users, "num_items": self.num_items,
                "tables": self.tables, "user_slots": [s.__dict__ for s in self.user_slots],
                "item_slots": [s.__dict__ for s in self.item_slots]}

    def global_items(self, scenario: str, local: np.ndarray) -> np.ndarray:
        return np.asarray(local, dtype=np.int64) + self.item_offset[scenario] + 1

    def global_users(self, scenario: str, local: np.ndarray) -> np.ndarray:
        return np.asarray(local, dtype=np.int64) + self.user_offset[scenario] + 1


def _slots(specs: dict[str, FeatureSpec], entity: str) -> tuple[list[Slot], dict[str, int]]:
    widths: dict[str, int] = {}
    kinds: dict[str, str] = {}
    vocab: dict[str, int] = {}
    for name, spec in specs.items():
        for f in (spec.user_fields if entity == "user" else spec.item_fields):
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


def _fill(mat: np.ndarray, rows: np.ndarray, slot: Slot, f: FieldSpec, column: Any) -> None:
    if f.kind == "categorical":
        mat[rows, slot.start] = np.asarray(column, dtype=np.int64)
        return
    arr = pa.array(column, type=pa.list_(pa.int64()))
    lens = arr.value_lengths().fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = arr.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lens)])
    pos = np.arange(len(flat)) - np.repeat(offsets[:-1], lens)
    keep = pos < slot.width
    mat[np.repeat(rows, lens)[keep], slot.start + pos[keep]] = flat[keep]


def build_feature_space(bundles: dict[str, Bundle]) -> FeatureSpace:
    """Lay out global ids and feature matrices for the given scenarios (order = scenario index)."""
    specs = {name: b.spec for name, b in bundles.items()}
    user_offset, item_offset, nu, ni = {}, {}, 0, 0
    for name, spec in specs.items():
        user_offset[name], item_offset[name] = nu, ni
        nu += spec.num_users
        ni += spec.num_items
    user_slots, user_vocab = _slots(specs, "user")
    item_slots, item_vocab = _slots(specs, "item")
    u_cols = sum(s.width for s in user_slots)
    i_cols = sum(s.width for s in item_slots)
    user_mat = np.zeros((nu + 1, u_cols), dtype=np.int64)
    item_mat = np.zeros((ni + 1, i_cols), dtype=np.int64)
    item_scenario = np.full(ni + 1, -1, dtype=np.int64)
    for s_idx, (name, b) in enumerate(bundles.items()):
        item_scenario[item_offset[name] + 1: item_offset[name] + 1 + b.spec.num_items] = s_idx
        for entity, df, fields, mat, slots, offset in (
            ("user", b.users, b.spec.user_fields, user_mat, user_slots, user_offset[name]),
            ("item", b.items, b.spec.item_fields, item_mat, item_slots, item_offset[name]),
        ):
            by_key = {s.table: s for s in slots}
            rows = df[entity].to_numpy(dtype=np.int64) + offset + 1
            for f in fields:
                _fill(mat, rows, by_key[f.table_key(name, entity)], f, df[f.name])
    return FeatureSpace(
        scenarios=list(bundles), num_users=nu + 1, num_items=ni + 1, user_offset=user_offset,
        item_offset=item_offset, tables={k: max(user_vocab.get(k, 0), item_vocab.get(k, 0)) for k in {**user_vocab, **item_vocab}}, user_slots=user_slots,
        item_slots=item_slots, user_features=torch.from_numpy(user_mat),
        item_features=torch.from_numpy(item_mat), item_scenario=torch.from_numpy(item_scenario))
