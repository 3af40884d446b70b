"""EPNet (the embedding-personalisation half of PEPNet: Chang et al., "PEPNet: Parameter and Embedding
Personalized Network for Infusing with Personalized Prior Information", KDD 2023) as a scenario head.

Equations (``x`` = head input, ``e_s`` = learned embedding of the row's scenario, the scenario prior):

- gate ``δ = γ σ(W_2 ReLU(W_1 [e_s, sg(x)] + b_1) + b_2)``, ``γ = 2``, so ``δ ∈ (0, γ)`` and a neutral gate
  is 1; ``sg`` is the stop-gradient the paper puts on the general input of the gate (the gate learns from
  the scenario prior and does not push gradient into what it gates);
- ``logit = MLP(δ ⊙ x)`` with one MLP shared by all scenarios (the scenario acts through ``δ`` only).

Differences from SWR's ``EPNet`` (scenario_wise_rec/models/multi_domain/epnet.py):

- SWR builds its MLP as ``MLP(agn_dims, fcn_dims)``, which passes ``fcn_dims`` as MLP's ``output_layer``
  argument, so its ``dims`` stay empty: SWR's EPNet is the gate and **one linear layer** (no hidden layers;
  20,662 non-embedding parameters on MovieLens). ``head.hidden_dims=[]`` is that model; the default
  ``[128, 64, 32]`` is what SWR's run script asks for;
- the gate equations are the same (``GateNU`` with hidden width = gated width, ``γ = 2``, ``detach`` on the
  agnostic input); SWR's MLPs have BatchNorm after each hidden layer, ours ``Linear -> ReLU (-> Dropout)``;
- the logit is returned (the loss applies the sigmoid). The combined EPNet + PPNet head stays in
  ``pepnet.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from unirec_lab.features import FeatureSpace
from unirec_lab.models.heads.base import HeadInputs, ScenarioParams, stacked_params
from unirec_lab.models.heads.pepnet import GateUnit
from unirec_lab.models.mlp import mlp


class EPNet(nn.Module):
    def __init__(self, space: FeatureSpace, in_dim: int, hidden_dims: Sequence[int] = (128, 64, 32),
                 gate_hidden_dim: int | None = None, scenario_embedding_dim: int = 16, gamma: float = 2.0,
                 dropout: float = 0.0, extra_inputs: Sequence[str] = (),
                 feature_dims: Mapping[str, int] | None = None) -> None:
        super().__init__()
        self.num_scenarios = space.num_scenarios
        self.inputs = HeadInputs(in_dim, extra_inputs, feature_dims)
        d = self.inputs.out_dim
        self.scenario_embedding = nn.Embedding(self.num_scenarios, scenario_embedding_dim)
        nn.init.normal_(self.scenario_embedding.weight, 0.0, 0.02)
        self.gate = GateUnit(scenario_embedding_dim + d, gate_hidden_dim or d, d, gamma)
        self.tower = mlp(d, list(hidden_dims), dropout, out_dim=1)
        self.stop_gradient = True  # the paper's; explanations switch it off (unirec_lab.explain)

    def gated(self, h: torch.Tensor, scenario: torch.Tensor,
              feats: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, δ)``: the head input and its gate."""
        x = self.inputs(h, feats)
        prior = x.detach() if self.stop_gradient else x
        return x, self.gate(torch.cat([self.scenario_embedding(scenario), prior], dim=-1))

    def forward(self, h: torch.Tensor, scenario: torch.Tensor, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        x, delta = self.gated(h, scenario, feats)
        return self.tower(delta * x).squeeze(-1)

    def scenario_parameters(self, s: int) -> ScenarioParams:
        return stacked_params("scenario_embedding", {"weight": self.scenario_embedding.weight}, s)

    def describe(self) -> str:
        return f"EPNet(scenario-gated input, shared tower, {self.num_scenarios} scenarios)"
