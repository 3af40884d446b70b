"""One loaded artifact version, ready to answer: id lookup, request rows, catalogue top-K, candidate scores.

A :class:`ServingState` is immutable once built (besides the feedback overlay, which only grows), so a server
swaps versions by replacing one reference between requests; a request that started on the old state finishes
on it. The item side of every scenario's catalogue is computed once, when the state is built
(``CatalogueRanker`` caches it per model version), so the first request after a swap is not slower.

History of a request: the artifact's latest positives of the user (training data, all splits) followed by the
positive feedback logged since the artifact was made (``label >= 0.5``, known items), the last ``history_len``
of them. ``exclude_seen`` masks every earlier positive (artifact and feedback). Fallbacks: a user outside the
id map gets the scenario's most popular items (positives per item, ``fallback: "popularity"``); a known item
with no training interactions (cold) is scored by the model from its content features (item fields) and its
untrained id vector, which is what the model learnt to do with rare items; an item outside the id map cannot
be scored (404) until an update appends it.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from unirec_lab.evaluation.catalogue import CatalogueRanker
from unirec_lab.serve.artifact import Artifact, load_artifact
from unirec_lab.serve.feedback import Event

POSITIVE = 0.5


class UnknownId(LookupError):
    """A request names an id the artifact does not know (the message says which)."""


@dataclass
class ScenarioIndex:
    """Raw id -> dense id lookups and the popularity order of one scenario."""

    users: dict[str, int]
    items: dict[str, int]
    by_popularity: np.ndarray  # dense item ids, most popular first (ties: lower id first)

    @classmethod
    def of(cls, user_ids: np.ndarray, item_ids: np.ndarray, popularity: np.ndarray) -> ScenarioIndex:
        order = np.lexsort((np.arange(len(item_ids)), -popularity))
        return cls({u: i for i, u in enumerate(user_ids.tolist())}, {t: i for i, t in enumerate(item_ids.tolist())},
                   order)

    def item_dense(self, raw: list[str]) -> np.ndarray:
        """Dense ids of ``raw`` items (a dict lookup each: ~0.1 us, where a pandas index costs ~3 ms a call)."""
        out = np.fromiter((self.items.get(r, -1) for r in raw), dtype=np.int64, count=len(raw))
        if (out < 0).any():
            raise UnknownId(f"item {raw[int(np.flatnonzero(out < 0)[0])]!r} is not in the catalogue")
        return out

    def user_dense(self, raw: str) -> int | None:
        return self.users.get(raw)


@dataclass
class ServingState:
    artifact: Artifact
    candidates: int | None = None
    rankers: dict[str, CatalogueRanker] = field(default_factory=dict)
    index: dict[str, ScenarioIndex] = field(default_factory=dict)
    overlay: dict[tuple[str, int], list[int]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)
    loaded_at: float = field(default_factory=time.time)
    observed: set[str] = field(default_factory=set)  # event ids already in the overlay (replays are idempotent)
    replayed_seq: int = 0  # the highest store seq replayed into this state

    @classmethod
    def load(cls, path: Path | str, candidates: int | None = None, events: list[Event] | None = None
             ) -> ServingState:
        """Load (verify) the artifact, index ids, warm every catalogue's item side, replay ``events``."""
        art = load_artifact(path)
        state = cls(art, candidates)
        for name, sc in art.scenarios.items():
            model, _ = art.model_for(name)
            state.rankers[name] = CatalogueRanker(model, art.catalogue(name), candidates=candidates)
            state.rankers[name].item_state()
            state.index[name] = ScenarioIndex.of(sc.user_ids, sc.item_ids, sc.popularity)
        for e in events or []:
            state.observe(e)
        return state

    @property
    def version(self) -> str:
        return self.artifact.version or "unversioned"

    @property
    def feedback_seq(self) -> int:
        """The feedback watermark this version already contains (0 for an export of a run)."""
        return int(self.artifact.info.get("feedback_seq") or 0)

    # -- feedback overlay ------------------------------------------------------------------------------------
    def observe(self, e: Event) -> None:
        """Add a logged positive of a known user on a known item to that user's history and seen set (once per
        event id, so replaying the store after a swap cannot add an event twice)."""
        if e.seq is not None:
            self.replayed_seq = max(self.replayed_seq, e.seq)
        idx = self.index.get(e.scenario)
        if idx is None or e.label < POSITIVE or e.event_id in self.observed:
            return
        user = idx.user_dense(e.user)
        item = idx.items.get(e.item)
        if user is None or item is None:
            return
        with self.lock:
            self.observed.add(e.event_id)
            self.overlay[(e.scenario, user)].append(int(item))

    def _extra(self, scenario: str, user: int) -> list[int]:
        with self.lock:
            return list(self.overlay.get((scenario, user), ()))

    # -- requests --------------------------------------------------------------------------------------------
    def rows(self, scenario: str, user: int) -> dict[str, torch.Tensor]:
        """The model input of one known user: scenario index, global user id, global history (0 = padding)."""
        art = self.artifact
        sc = art.scenarios[scenario]
        _, space = art.model_for(scenario)
        hist = sc.history[user]
        extra = self._extra(scenario, user)
        if extra:
            hist = np.concatenate([hist[hist >= 0], np.asarray(extra, dtype=np.int64)])[-art.history_len:]
            hist = np.concatenate([np.full(art.history_len - len(hist), -1, dtype=np.int64), hist])
        off = space.item_offset[scenario] + 1
        glob = np.where(hist >= 0, hist + off, 0)
        return {"scenario": torch.tensor([space.scenarios.index(scenario)]),
                "user": torch.tensor([space.user_offset[scenario] + 1 + user]),
                "history": torch.from_numpy(glob).reshape(1, -1), "item": torch.zeros(1, dtype=torch.long)}

    def seen(self, scenario: str, user: int) -> np.ndarray:
        sc = self.artifact.scenarios[scenario]
        base = sc.seen_items[sc.seen_indptr[user]:sc.seen_indptr[user + 1]]
        extra = self._extra(scenario, user)
        return np.concatenate([base, np.asarray(extra, dtype=np.int64)]) if extra else base

    def recommend(self, scenario: str, user_raw: str, k: int, exclude_seen: bool = True
                  ) -> tuple[list[str], list[float], str | None]:
        """(raw item ids, scores, fallback) of the top ``k`` of the scenario's whole catalogue."""
        sc, idx = self.artifact.scenarios[scenario], self.index[scenario]
        user = idx.user_dense(user_raw)
        if user is None:
            top = idx.by_popularity[:k]
            return sc.item_ids[top].tolist(), sc.popularity[top].tolist(), "popularity"
        exclude = None
        if exclude_seen:
            seen = self.seen(scenario, user)
            if len(seen):
                exclude = torch.zeros(1, sc.num_items, dtype=torch.bool)
                exclude[0, torch.from_numpy(seen)] = True
        values, pos = self.rankers[scenario].topk(self.rows(scenario, user), k, exclude)
        keep = torch.isfinite(values[0])  # fewer unseen items than k: drop the masked ones
        pos, values = pos[0][keep].numpy(), values[0][keep]
        return sc.item_ids[pos].tolist(), values.tolist(), None

    @torch.no_grad()
    def score(self, scenario: str, user_raw: str, items_raw: list[str]) -> tuple[list[float], str | None]:
        """Scores of the given items for the user (logits; popularity for an unknown user)."""
        sc, idx = self.artifact.scenarios[scenario], self.index[scenario]
        items = idx.item_dense(items_raw)
        user = idx.user_dense(user_raw)
        if user is None:
            return sc.popularity[items].tolist(), "popularity"
        model, space = self.artifact.model_for(scenario)
        rows = self.rows(scenario, user)
        n = len(items)
        batch = {k: v.repeat_interleave(n, dim=0) for k, v in rows.items()}
        batch["item"] = torch.from_numpy(items + space.item_offset[scenario] + 1)
        model.eval()
        return model(batch).float().tolist(), None
