"""Full-ranking evaluation: every item of the scenario is a candidate, not 99 sampled negatives.

For each evaluated user of a scenario (users with a positive in ``split``; a seeded sample of ``max_users`` when
set), the model scores **all** the scenario's items in one batched pass per chunk of users, using the user's
state at their first positive ``split`` row (user id and behaviour history of that row). Items the user had
as positives in earlier splits are masked out (score ``-inf``), as is standard; the ground truth is the set of
the user's positive items in ``split`` (a ground-truth item seen earlier stays masked and counts as a miss, so
repeat consumption is never credited by leaking it out of the mask). Then top-K:

- ``recall@K`` = |top-K ∩ truth| / |truth|;
- ``ndcg@K`` = DCG@K / IDCG@K with binary gains, IDCG over min(K, |truth|) hits;
- ``hr@K`` = 1 if any truth item is in the top K.

Averaged over users. Scoring is :class:`~unirec_lab.evaluation.catalogue.CatalogueRanker`'s: a model with
the catalogue protocol (unified, MF, popularity) has its item side computed once per evaluation, its user side
once per user and the pairs scored in large batched matmuls (exact); any other model (``model(batch) ->
logits``) is scored on repeated rows. ``candidates`` adds an approximate retrieval stage (off by default).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from unirec_lab.evaluation.catalogue import CatalogueRanker
from unirec_lab.features import SPLIT_LEVEL

Batch = dict[str, torch.Tensor]


def _first_positive_rows(split: Batch, s_idx: int) -> torch.Tensor:
    """Index of each user's first positive row (in row order) of scenario ``s_idx``."""
    rows = torch.nonzero((split["scenario"] == s_idx) & (split["label"] > 0.5), as_tuple=True)[0]
    users = split["user"][rows]
    _, first = np.unique(users.numpy(), return_index=True)
    return rows[torch.from_numpy(first)]


class PairIndex:
    """(user, item) pairs indexed by user once, so a chunk of users gets its dense ``[b, num_items]`` bool
    matrix in time proportional to the chunk's own pairs (not to all pairs, chunk after chunk)."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor, item_lo: int, num_items: int) -> None:
        order = torch.argsort(users, stable=True)
        self.users, self.items = users[order], items[order] - item_lo
        self.num_items = num_items

    def matrix(self, chunk_users: torch.Tensor) -> torch.Tensor:
        lo = torch.searchsorted(self.users, chunk_users)
        counts = torch.searchsorted(self.users, chunk_users, right=True) - lo
        row = torch.repeat_interleave(torch.arange(len(chunk_users)), counts)
        starts = torch.cumsum(counts, 0) - counts  # each chunk row's first position among the gathered pairs
        pos = lo.repeat_interleave(counts) + torch.arange(int(counts.sum())) - starts.repeat_interleave(counts)
        out = torch.zeros(len(chunk_users), self.num_items, dtype=torch.bool)
        out[row, self.items[pos]] = True
        return out


@torch.no_grad()
def full_ranking_metrics(model: nn.Module, splits: dict[str, Batch], scenario_names: Sequence[str], scenario: str,
                         item_scenario: torch.Tensor, split: str = "test", ks: Sequence[int] = (10, 20),
                         max_users: int | None = None, max_rows: int = 262_144, seed: int = 0,
                         candidates: int | None = None, cached: bool = True,
                         user_chunk: int = 256, chain: bool = True) -> dict[str, float]:
    """``{"recall@K", "ndcg@K", "hr@K" for K in ks, "users", "candidates"}`` for one scenario (see module doc).
    ``max_rows`` bounds the (user, item) pairs scored in one pass (memory); ``candidates`` (null = exact) and
    ``cached`` (False = the reference path on repeated rows) and ``chain`` are :class:`CatalogueRanker`'s."""
    if not ks or min(ks) < 1:
        raise ValueError(f"full ranking ks={list(ks)}: expected positive integers")
    if scenario not in scenario_names:
        raise ValueError(f"full ranking scenario {scenario!r}: expected one of {list(scenario_names)}")
    s_idx = list(scenario_names).index(scenario)
    data = splits[split]
    first = _first_positive_rows(data, s_idx)
    if max_users is not None and len(first) > max_users:
        pick = np.sort(np.random.default_rng(seed).choice(len(first), size=max_users, replace=False))
        first = first[torch.from_numpy(pick)]
    items = torch.nonzero(item_scenario == s_idx, as_tuple=True)[0]
    item_lo, n_items = int(items.min()), len(items)
    if int(items.max()) - item_lo + 1 != n_items:
        raise ValueError(f"scenario {scenario!r}: its global item ids are not contiguous")
    # earlier positives (masked) and the split's positives (ground truth), as (user, item) pairs
    earlier = [splits[s] for s, lvl in SPLIT_LEVEL.items() if lvl < SPLIT_LEVEL[split]]
    seen_u = torch.cat([t["user"][(t["scenario"] == s_idx) & (t["label"] > 0.5)] for t in earlier])
    seen_i = torch.cat([t["item"][(t["scenario"] == s_idx) & (t["label"] > 0.5)] for t in earlier])
    pos = (data["scenario"] == s_idx) & (data["label"] > 0.5)
    truth_u, truth_i = data["user"][pos], data["item"][pos]
    seen = PairIndex(seen_u, seen_i, item_lo, n_items)
    truth_pairs = PairIndex(truth_u, truth_i, item_lo, n_items)
    kmax = min(max(ks), n_items)
    ranker = CatalogueRanker(model, items, candidates=candidates, block_rows=max_rows, cached=cached, seed=seed,
                             chain=chain)
    disc = 1.0 / torch.log2(torch.arange(kmax, dtype=torch.float64) + 2.0)
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg", "hr")}
    for start in range(0, len(first), user_chunk):
        rows = first[start:start + user_chunk]
        batch = {k: v[rows] for k, v in data.items()}
        users = batch["user"]
        _, top = ranker.topk(batch, kmax, exclude=seen.matrix(users))
        truth = truth_pairs.matrix(users)
        hits = truth.gather(1, top).double()  # [b, kmax]
        n_truth = truth.sum(1).double()
        for k in ks:
            kk = min(k, kmax)
            h = hits[:, :kk]
            ideal = torch.cumsum(disc[:kk], 0)[(n_truth.clamp(max=kk) - 1).long()]
            sums[f"recall@{k}"] += float((h.sum(1) / n_truth).sum())
            sums[f"ndcg@{k}"] += float(((h * disc[:kk]).sum(1) / ideal).sum())
            sums[f"hr@{k}"] += float((h.sum(1) > 0).double().sum())
    n = max(len(first), 1)
    return {**{k: v / n for k, v in sums.items()}, "users": int(len(first)), "candidates": n_items}
