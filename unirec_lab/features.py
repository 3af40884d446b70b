"""The data<->model contract: the feature space of a run and the split names, imported by data, models and
evaluation alike (it imports nothing of theirs, so the layers point one way).

The feature space of a multi-scenario run holds global ids, embedding tables and feature matrices.

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
import torch

SPLITS = ("train", "val", "test")
# a row of split s may see (history) or be masked by (full ranking) interactions of splits with a lower level
SPLIT_LEVEL = {s: level for level, s in enumerate(SPLITS)}


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
    # set once a model has grown past its bundles (serve/finetune.py appends new ids at the end of the global
    # ranges): per scenario, the global id of every local id; scenarios absent here use their offset
    user_global: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    item_global: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    # frozen pretrained text vectors (field kind ``text_embedding``): one float matrix, a slot per projection
    # (``shared/text``: one projection for every scenario that has text); empty when no scenario has them
    text_slots: list[Slot] = field(default_factory=list)
    item_text: torch.Tensor | None = field(default=None, repr=False)  # [num_items, sum of dense widths]
    # dense (numeric) fields, scaled at prepare time: ``[num_users, len(user_dense_names)]`` floats (0 = padding)
    user_dense_names: list[str] = field(default_factory=list)
    item_dense_names: list[str] = field(default_factory=list)
    user_dense: torch.Tensor | None = field(default=None, repr=False)
    item_dense: torch.Tensor | None = field(default=None, repr=False)
    # slices of one dataset share an id range: scenario -> the scenario whose range (and item_scenario) it uses
    id_owner: dict[str, str] = field(default_factory=dict)

    @property
    def num_scenarios(self) -> int:
        return len(self.scenarios)

    def describe(self) -> dict[str, Any]:
        """Sizes only: what a checkpoint must agree with to be loadable."""
        return {"scenarios": self.scenarios, "num_users": self.num_users, "num_items": self.num_items,
                "tables": self.tables, "user_slots": [s.__dict__ for s in self.user_slots],
                "item_slots": [s.__dict__ for s in self.item_slots],
                **({"text_slots": [s.__dict__ for s in self.text_slots]} if self.text_slots else {}),
                **({"user_dense": self.user_dense_names, "item_dense": self.item_dense_names}
                   if self.user_dense_names or self.item_dense_names else {})}

    def item_scenario_of(self, scenario: str) -> torch.Tensor:
        """``item_scenario`` as seen by ``scenario``: a slice's shared items count as its own (full ranking)."""
        owner = self.id_owner.get(scenario, scenario)
        if owner == scenario:
            return self.item_scenario
        o, s = self.scenarios.index(owner), self.scenarios.index(scenario)
        return torch.where(self.item_scenario == o, torch.full_like(self.item_scenario, s), self.item_scenario)

    def global_items(self, scenario: str, local: np.ndarray) -> np.ndarray:
        if scenario in self.item_global:
            return self.item_global[scenario][np.asarray(local, dtype=np.int64)]
        return np.asarray(local, dtype=np.int64) + (self.item_offset[scenario] + 1)  # one pass over the rows

    def global_users(self, scenario: str, local: np.ndarray) -> np.ndarray:
        if scenario in self.user_global:
            return self.user_global[scenario][np.asarray(local, dtype=np.int64)]
        return np.asarray(local, dtype=np.int64) + (self.user_offset[scenario] + 1)  # one pass over the rows
