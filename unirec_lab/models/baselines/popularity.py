"""Popularity: an item's score is a fixed function of its train-split statistics.

``kind``:
- ``rate``: ``log((pos_i + a * p_s) / (count_i + a))``, the train positive rate shrunk towards its scenario's
  rate ``p_s`` with ``a = smoothing`` pseudo-rows (items unseen in train get ``log p_s``);
- ``positives``: ``log(pos_i + smoothing)`` (number of train positives: implicit-feedback popularity);
- ``count``: ``log(count_i + smoothing)`` (how often the item was shown in train).

It has no per-item weights. So that it trains through the same ``RecLitModule`` as every model, the logit is
``exp(log_scale) * score + bias`` with two trainable scalars: a positive scale and a shift are monotone, so
they calibrate the probabilities (log-loss) but cannot change any ranking (AUC, NDCG ...).
"""

from __future__ import annotations

import torch
from torch import nn

from unirec_lab.features import FeatureSpace

Batch = dict[str, torch.Tensor]
KINDS = ("rate", "positives", "count")


def popularity_scores(space: FeatureSpace, kind: str = "rate", smoothing: float = 1.0) -> torch.Tensor:
    """``[num_items]`` scores (see the module docstring); index 0 (padding) is the lowest score."""
    if kind not in KINDS:
        raise ValueError(f"popularity kind={kind!r}, expected one of {KINDS}")
    if not smoothing > 0:
        raise ValueError(f"popularity smoothing={smoothing}, expected > 0")
    if space.item_train_count is None or space.item_train_pos is None:
        raise ValueError("the feature space has no train statistics (item_train_count / item_train_pos); "
                         "build it through MultiScenarioDataModule.setup()")
    count = space.item_train_count.double()
    pos = space.item_train_pos.double()
    if kind == "positives":
        score = torch.log(pos + smoothing)
    elif kind == "count":
        score = torch.log(count + smoothing)
    else:
        sc = space.item_scenario.clamp(min=0)
        real = (space.item_scenario >= 0).double()
        s_pos = torch.zeros(space.num_scenarios, dtype=torch.float64).index_add(0, sc, pos * real)
        s_cnt = torch.zeros(space.num_scenarios, dtype=torch.float64).index_add(0, sc, count * real)
        prior = ((s_pos + 1.0) / (s_cnt + 2.0))[sc]  # scenario rate (Laplace, never 0 or 1)
        score = torch.log((pos + smoothing * prior) / (count + smoothing))
    score[0] = score[1:].min() - 1.0 if len(score) > 1 else 0.0
    return score.float()


class Popularity(nn.Module):
    def __init__(self, space: FeatureSpace, kind: str = "rate", smoothing: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("item_score", popularity_scores(space, kind, smoothing), persistent=False)
        self.log_scale = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(()))
        self.kind, self.smoothing = kind, smoothing
        self.description = (f"popularity: log train {kind} per item (smoothing {smoothing:g}) with a positive "
                            "scale + bias (2 scalars; ranking fixed)")

    def forward(self, batch: Batch) -> torch.Tensor:
        return torch.exp(self.log_scale) * self.item_score[batch["item"]] + self.bias

    # catalogue scoring (see unirec_lab.evaluation.catalogue): the same scores for every user
    def user_side(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {"rows": torch.zeros(len(batch["user"]), 1)}

    def item_side(self, items: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"score": torch.exp(self.log_scale) * self.item_score[items] + self.bias}

    def score_pairs(self, user: dict[str, torch.Tensor], item: dict[str, torch.Tensor]) -> torch.Tensor:
        return user["rows"] + item["score"]
