"""PLE for scenarios (Tang et al., RecSys 2020): stacked CGC extraction layers, then a tower per scenario.

Each level has shared experts and, per scenario, specific experts and a gate. A row of scenario ``s`` carries
two representations, ``x_spec`` (its scenario path) and ``x_shared`` (the shared path), both equal to the
head input at level 0. At each level:

- ``s``'s gate (on ``x_spec``) mixes ``s``'s specific experts (on ``x_spec``) with the shared experts (on
  ``x_shared``) into the next ``x_spec``;
- below the last level, the shared gate (on ``x_shared``) mixes the same experts into the next ``x_shared``.

Multi-task PLE feeds every task's experts to the shared gate because every row has every task; here a row has
one scenario, so its shared gate sees that scenario's specific experts only. That is what keeps scenario
``s``'s experts and gates trained by ``s``'s rows alone (and avoids running every scenario's experts on every
row). The last level's ``x_spec`` feeds scenario ``s``'s tower.
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


def _mix(gate_logits: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    return (torch.softmax(gate_logits, dim=-1).unsqueeze(-1) * experts).sum(1)


class CGCLevel(nn.Module):
    """One customized-gate-control extraction layer (see the module docstring)."""

    def __init__(self, num_scenarios: int, in_dim: int, expert_dims: Sequence[int], shared_experts: int,
                 specific_experts: int, dropout: float, last: bool, batch_norm: bool = False) -> None:
        super().__init__()
        n = shared_experts + specific_experts
        self.shared = ExpertBank(in_dim, expert_dims, shared_experts, dropout, batch_norm=batch_norm)
        self.specific = nn.ModuleList(ExpertBank(in_dim, expert_dims, specific_experts, dropout, batch_norm=batch_norm)
                                      for _ in range(num_scenarios))
        self.gates = nn.ModuleList(nn.Linear(in_dim, n) for _ in range(num_scenarios))
        self.shared_gate = None if last else nn.Linear(in_dim, n)
        self.out_dim = self.shared.out_dim

    def forward(self, part: ScenarioPartition, spec: list[torch.Tensor],
                shared: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Chunks (per present scenario) in, chunks out; the shared experts run on all rows at once."""
        all_shared = self.shared(torch.cat(shared)).split([len(c) for c in shared])
        new_spec, new_shared = [], []
        for i, s in enumerate(part.present):
            experts = torch.cat([self.specific[s](spec[i]), all_shared[i]], dim=1)
            new_spec.append(_mix(self.gates[s](spec[i]), experts))
            if self.shared_gate is not None:
                new_shared.append(_mix(self.shared_gate(shared[i]), experts))
        return new_spec, new_shared


class PLE(nn.Module):
    def __init__(self, space: FeatureSpace, in_dim: int, num_levels: int = 2, shared_experts: int = 2,
                 specific_experts: int = 1, expert_dims: Sequence[int] = (64,), tower_dims: Sequence[int] = (32,),
                 dropout: float = 0.0, extra_inputs: Sequence[str] = (),
                 feature_dims: Mapping[str, int] | None = None, batch_norm: bool = False) -> None:
        super().__init__()
        if num_levels < 1:
            raise ValueError(f"num_levels={num_levels}, expected >= 1")
        self.num_scenarios = space.num_scenarios
        self.inputs = HeadInputs(in_dim, extra_inputs, feature_dims)
        d = self.inputs.out_dim
        self.levels = nn.ModuleList()
        for level in range(num_levels):
            cgc = CGCLevel(self.num_scenarios, d, expert_dims, shared_experts, specific_experts, dropout,
                           last=level == num_levels - 1, batch_norm=batch_norm)
            self.levels.append(cgc)
            d = cgc.out_dim
        self.towers = nn.ModuleList(mlp(d, list(tower_dims), dropout, out_dim=1, batch_norm=batch_norm)
                                    for _ in range(self.num_scenarios))
        self.shared_experts, self.specific_experts = shared_experts, specific_experts

    def forward(self, h: torch.Tensor, scenario: torch.Tensor, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        part = ScenarioPartition(scenario, self.num_scenarios)
        spec = part.split(self.inputs(h, feats))
        shared = spec
        for cgc in self.levels:
            spec, shared = cgc(part, spec, shared)
        return part.merge([self.towers[s](x).squeeze(-1) for s, x in zip(part.present, spec)])

    def scenario_parameters(self, s: int) -> ScenarioParams:
        out = module_params(f"towers.{s}", self.towers[s])
        for i, cgc in enumerate(self.levels):
            out += module_params(f"levels.{i}.specific.{s}", cgc.specific[s])
            out += module_params(f"levels.{i}.gates.{s}", cgc.gates[s])
        return out

    def describe(self) -> str:
        return (f"PLE({len(self.levels)} CGC levels, {self.shared_experts} shared + {self.specific_experts} "
                f"specific experts per scenario, {self.num_scenarios} towers)")
