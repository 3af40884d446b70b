"""SAR-Net (Shen et al., "SAR-Net: A Scenario-Aware Ranking Network for Personalized Fair Recommendation in
Hundreds of Travel Scenarios", CIKM 2021) as a scenario head.

Equations (``x`` = head input, ``s`` = the row's scenario):

- scenario-specific transfer: ``z = x ⊙ w_s + b_s`` (``w_s, b_s`` of the input width, one pair per scenario);
- experts: ``E_shared`` shared experts and ``E_spec`` experts of scenario ``s``, each a *debias expert*
  ``Linear(BatchNorm(z))`` (no activation, as in SWR); scenario ``s``'s experts run on ``s``'s rows only;
- gate: ``g = softmax(W_g z)`` over the ``E_shared + E_spec`` experts of the row;
- output: ``logit = MLP(Σ_e g_e · expert_e(z))``.

Differences from SWR's ``Sarnet`` (scenario_wise_rec/models/multi_domain/sarnet.py):

- the transfer starts as the identity (``w_s = 1``, ``b_s = 0``); SWR draws ``w_s`` Xavier-uniform and ``b_s``
  uniform(0, 1), so each scenario starts from a random rescaling of the input;
- SWR computes every scenario's transfer and specific experts on every row and keeps the row's own; here a
  scenario's specific experts see (and normalise over) only its own rows;
- one ``BatchNorm`` per expert *group* (shared / each scenario's): SWR gives every expert its own ``BatchNorm``
  over the same input, whose statistics are identical and whose affine part the expert's ``Linear`` absorbs
  (2 · input width fewer parameters per expert);
- the logit is returned (the loss applies the sigmoid); SWR's final MLP has BatchNorm after each hidden layer,
  ours is a plain ``Linear -> ReLU (-> Dropout)`` MLP;
- SAR-Net's cross-scenario behaviour attention is not part of the head: the backbone's history encoder
  (``backbone=din`` / ``sasrec``) plays that role; SWR's version has none either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from unirec_lab.features import FeatureSpace
from unirec_lab.models.heads.banks import LinearBank, RowSafeBatchNorm
from unirec_lab.models.heads.base import HeadInputs, ScenarioParams, module_params, stacked_params
from unirec_lab.models.heads.routing import ScenarioPartition
from unirec_lab.models.mlp import mlp


class SARNet(nn.Module):
    def __init__(self, space: FeatureSpace, in_dim: int, shared_experts: int = 8, specific_experts: int = 2,
                 expert_dim: int = 16, tower_dims: Sequence[int] = (32, 32), dropout: float = 0.0,
                 extra_inputs: Sequence[str] = (), feature_dims: Mapping[str, int] | None = None) -> None:
        super().__init__()
        if shared_experts < 0 or specific_experts < 0 or shared_experts + specific_experts == 0:
            raise ValueError(f"shared_experts={shared_experts}, specific_experts={specific_experts}: expected "
                             "non-negative counts, at least one expert in all")
        self.num_scenarios = S = space.num_scenarios
        self.inputs = HeadInputs(in_dim, extra_inputs, feature_dims)
        d = self.inputs.out_dim
        self.transfer_w = nn.Parameter(torch.ones(S, d))
        self.transfer_b = nn.Parameter(torch.zeros(S, d))
        self.num_shared, self.num_specific, self.expert_dim = shared_experts, specific_experts, expert_dim
        self.shared = (nn.Sequential(RowSafeBatchNorm(d), LinearBank(d, expert_dim, shared_experts))
                       if shared_experts else None)
        self.specific = nn.ModuleList(nn.Sequential(RowSafeBatchNorm(d), LinearBank(d, expert_dim, specific_experts))
                                      for _ in range(S)) if specific_experts else None
        self.gate = nn.Linear(d, shared_experts + specific_experts)
        self.tower = mlp(expert_dim, list(tower_dims), dropout, out_dim=1)

    def transfer(self, h: torch.Tensor, scenario: torch.Tensor, feats: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``x ⊙ w_s + b_s``: each row's input after its scenario's transfer."""
        x = self.inputs(h, feats)
        return torch.addcmul(self.transfer_b[scenario], x, self.transfer_w[scenario])

    def gate_weights(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, E_shared + E_spec]`` softmax weights (shared experts first, then the row's scenario's)."""
        return torch.softmax(self.gate(z), dim=-1)

    def forward(self, h: torch.Tensor, scenario: torch.Tensor, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        z = self.transfer(h, scenario, feats)
        experts = []
        if self.shared is not None:
            experts.append(self.shared(z))
        if self.specific is not None:
            part = ScenarioPartition(scenario, self.num_scenarios)
            spec = part.map(lambda s, zs: self.specific[s](zs).flatten(1), z)
            experts.append(spec.view(-1, self.num_specific, self.expert_dim))
        e = experts[0] if len(experts) == 1 else torch.cat(experts, dim=1)
        mixed = (self.gate_weights(z).unsqueeze(-1) * e).sum(1)
        return self.tower(mixed).squeeze(-1)

    def scenario_parameters(self, s: int) -> ScenarioParams:
        out = stacked_params("transfer", {"w": self.transfer_w, "b": self.transfer_b}, s)
        if self.specific is not None:
            out += module_params(f"specific.{s}", self.specific[s])
        return out

    def describe(self) -> str:
        return (f"SAR-Net({self.num_shared} shared + {self.num_specific} per-scenario debias experts, "
                f"{self.num_scenarios} scenario transfers)")
