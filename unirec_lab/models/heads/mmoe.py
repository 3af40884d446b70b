"""MMoE for scenarios (Ma et al., KDD 2018): shared experts, one softmax gate and one tower per scenario.

Every row goes through the shared experts (they are shared parameters); the gate and the tower of scenario
``s`` run on ``s``'s rows only, so their gradient comes from ``s`` alone. ``gate_weights`` returns each row's
mixture over experts (rows sum to 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from unirec_lab.features import FeatureSpace
from unirec_lab.models.heads.base import HeadInputs, ScenarioParams, module_params
from unirec_lab.models.heads.experts import ExpertBank
from unirec_lab.models.heads.routing import ScenarioPartition
from unirec_lab.models.mlp import mlp


class MMoE(nn.Module):
    def __init__(self, space: FeatureSpace, in_dim: int, num_experts: int = 4, expert_dims: Sequence[int] = (64,),
                 tower_dims: Sequence[int] = (32,), dropout: float = 0.0, extra_inputs: Sequence[str] = (),
                 feature_dims: Mapping[str, int] | None = None, batch_norm: bool = False) -> None:
        super().__init__()
        self.num_scenarios = space.num_scenarios
        self.inputs = HeadInputs(in_dim, extra_inputs, feature_dims)
        d = self.inputs.out_dim
        self.experts = ExpertBank(d, expert_dims, num_experts, dropout, batch_norm=batch_norm)
        self.gates = nn.ModuleList(nn.Linear(d, num_experts) for _ in range(self.num_scenarios))
        self.towers = nn.ModuleList(mlp(self.experts.out_dim, list(tower_dims), dropout, out_dim=1,
                                        batch_norm=batch_norm)
                                    for _ in range(self.num_scenarios))

    def _gate(self, s: int, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.gates[s](x), dim=-1)

    def gate_weights(self, h: torch.Tensor, scenario: torch.Tensor,
                     feats: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """``[B, num_experts]``: each row's softmax gate (its own scenario's gate)."""
        x = self.inputs(h, feats or {})
        return ScenarioPartition(scenario, self.num_scenarios).map(self._gate, x)

    def forward(self, h: torch.Tensor, scenario: torch.Tensor, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.inputs(h, feats)
        experts = self.experts(x)  # [B, E, D], shared

        def tower(s: int, xs: torch.Tensor, es: torch.Tensor) -> torch.Tensor:
            g = self._gate(s, xs).unsqueeze(-1)
            return self.towers[s]((g * es).sum(1)).squeeze(-1)

        return ScenarioPartition(scenario, self.num_scenarios).map(tower, x, experts)

    def scenario_parameters(self, s: int) -> ScenarioParams:
        return module_params(f"gates.{s}", self.gates[s]) + module_params(f"towers.{s}", self.towers[s])

    def describe(self) -> str:
        return f"MMoE({self.experts.num_experts} shared experts, {self.num_scenarios} gates+towers)"
