"""Per-scenario MLP towers (the Shared-Bottom head): scenario ``s``'s tower scores only ``s``'s rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from unirec_lab.features import FeatureSpace
from unirec_lab.models.heads.base import HeadInputs, ScenarioParams, module_params
from unirec_lab.models.heads.routing import ScenarioPartition
from unirec_lab.models.mlp import mlp


class MLPTowers(nn.Module):
    """One ``mlp(hidden_dims) -> 1`` tower per scenario over the shared trunk output."""

    def __init__(self, space: FeatureSpace, in_dim: int, hidden_dims: Sequence[int] = (64,),
                 dropout: float = 0.0, extra_inputs: Sequence[str] = (),
                 feature_dims: Mapping[str, int] | None = None, batch_norm: bool = False) -> None:
        super().__init__()
        self.num_scenarios = space.num_scenarios
        self.inputs = HeadInputs(in_dim, extra_inputs, feature_dims)
        self.towers = nn.ModuleList(mlp(self.inputs.out_dim, list(hidden_dims), dropout, out_dim=1,
                                        batch_norm=batch_norm)
                                    for _ in range(space.num_scenarios))

    def forward(self, h: torch.Tensor, scenario: torch.Tensor, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.inputs(h, feats)
        part = ScenarioPartition(scenario, self.num_scenarios)
        return part.map(lambda s, xs: self.towers[s](xs).squeeze(-1), x)

    def tower_modules(self, s: int) -> list[nn.Module] | None:
        """Scenario ``s``'s tower as a module list when the head is that tower alone (no extra inputs), for
        catalogue scoring as one ReLU chain; ``None`` otherwise."""
        return None if self.inputs.extra_inputs else list(self.towers[s])

    def scenario_parameters(self, s: int) -> ScenarioParams:
        return module_params(f"towers.{s}", self.towers[s])

    def describe(self) -> str:
        return f"MLPTowers(shared-bottom, {self.num_scenarios} towers)"
