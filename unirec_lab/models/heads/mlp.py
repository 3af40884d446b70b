"""Per-scenario MLP towers (the Shared-Bottom head): scenario ``s``'s tower scores only ``s``'s rows."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from unirec_lab.data.features import FeatureSpace
from unirec_lab.models.heads.routing import route_by_scenario
from unirec_lab.models.mlp import mlp


class MLPTowers(nn.Module):
    """One ``mlp(hidden_dims) -> 1`` tower per scenario."""

    def __init__(self, space: FeatureSpace, in_dim: int, hidden_dims: Sequence[int] = (64,),
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.num_scenarios = space.num_scenarios
        self.towers = nn.ModuleList(mlp(in_dim, list(hidden_dims), dropout, out_dim=1)
                                    for _ in range(space.num_scenarios))

    def forward(self, h: torch.Tensor, scenario: torch.Tensor, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        return route_by_scenario(h, scenario, self.num_scenarios, lambda s, x: self.towers[s](x).squeeze(-1))
