"""PPNet (the parameter-personalisation half of PEPNet: Chang et al., KDD 2023; first deployed at Kuaishou as
"PPNet") as a scenario head: one gated tower per scenario.

Equations (``x`` = head input; ``p`` = the personal prior, ``feats`` keys named by ``gate_inputs``, by default
the backbone's ``user`` and ``item`` vectors, which carry the id embeddings):

- gate input ``g = [p, sg(x)]``: the prior keeps its gradient (the ids learn through the gates, as in the
  paper), the general input is stop-gradiented;
- scenario ``s``'s tower, on ``s``'s rows only: ``z_0 = x``,
  ``z_l = ReLU(W_l z_{l-1} + b_l) ⊙ δ_l(g)`` with ``δ_l = γ σ(W_2 ReLU(W_1 g + b_1) + b_2) ∈ (0, γ)``,
  ``γ = 2``; ``logit = w z_L + b``.

Differences from SWR's ``PPNet`` (scenario_wise_rec/models/multi_domain/ppnet.py):

- the tower reads ``x`` (with gradient); SWR's tower reads the *gate input* ``[ids, detach(agnostic)]``, so
  in SWR the non-id embeddings never receive any gradient (they stay at their initial values);
- each scenario's tower runs on its own rows (SWR runs every tower on every row and keeps the row's own);
- SWR detaches the domain-indicator embedding too (it is an agnostic feature there), so it never trains; here
  the scenario enters through the per-scenario towers;
- SWR's tower layers carry BatchNorm; ours do not. The logit is returned (the loss applies the sigmoid).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from unirec_lab.features import FeatureSpace
from unirec_lab.models.heads.base import HeadInputs, ScenarioParams, module_params
from unirec_lab.models.heads.pepnet import GateUnit
from unirec_lab.models.heads.routing import ScenarioPartition


class GatedTower(nn.Module):
    """``z_l = ReLU(W_l z_{l-1}) ⊙ δ_l(g)`` per layer, then a linear logit."""

    def __init__(self, in_dim: int, gate_dim: int, hidden_dims: Sequence[int], gate_hidden_dim: int | None,
                 gamma: float, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        self.gates = nn.ModuleList()
        d = in_dim
        for h in hidden_dims:
            self.layers.append(nn.Linear(d, h))
            self.gates.append(GateUnit(gate_dim, gate_hidden_dim or h, h, gamma))
            d = h
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out = nn.Linear(d, 1)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        z = x
        for layer, gate in zip(self.layers, self.gates):
            z = self.dropout(torch.relu(layer(z)) * gate(g))
        return self.out(z).squeeze(-1)


class PPNet(nn.Module):
    def __init__(self, space: FeatureSpace, in_dim: int, hidden_dims: Sequence[int] = (128, 64, 32),
                 gate_inputs: Sequence[str] = ("user", "item"), gate_hidden_dim: int | None = None,
                 gamma: float = 2.0, dropout: float = 0.0, extra_inputs: Sequence[str] = (),
                 feature_dims: Mapping[str, int] | None = None) -> None:
        super().__init__()
        hidden_dims = list(hidden_dims)
        if not hidden_dims or any(d <= 0 for d in hidden_dims):
            raise ValueError(f"hidden_dims must be a non-empty list of positive ints, got {hidden_dims}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout}, expected a value in [0, 1)")
        self.num_scenarios = space.num_scenarios
        self.inputs = HeadInputs(in_dim, extra_inputs, feature_dims)
        unknown = [k for k in gate_inputs if k not in (feature_dims or {})]
        if unknown:
            raise ValueError(f"head.gate_inputs {unknown} not produced by the backbone "
                             f"(available: {sorted(feature_dims or {})})")
        self.prior = HeadInputs(0, gate_inputs, feature_dims)  # only its extras: the personal prior
        gate_dim = self.prior.extra_dim + self.inputs.out_dim
        self.towers = nn.ModuleList(GatedTower(self.inputs.out_dim, gate_dim, hidden_dims, gate_hidden_dim, gamma,
                                               dropout) for _ in range(self.num_scenarios))
        self.stop_gradient = True  # the paper's; explanations switch it off (unirec_lab.explain)

    def gate_input(self, x: torch.Tensor, feats: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``[p, sg(x)]``: the personal prior with gradient, the general input without."""
        general = x.detach() if self.stop_gradient else x
        p = self.prior.extras(feats)
        return general if p is None else torch.cat([p, general], dim=-1)

    def forward(self, h: torch.Tensor, scenario: torch.Tensor, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.inputs(h, feats)
        g = self.gate_input(x, feats)
        part = ScenarioPartition(scenario, self.num_scenarios)
        return part.map(lambda s, xs, gs: self.towers[s](xs, gs), x, g)

    def scenario_parameters(self, s: int) -> ScenarioParams:
        return module_params(f"towers.{s}", self.towers[s])

    def describe(self) -> str:
        prior = "+".join(self.prior.extra_inputs) or "none"
        return f"PPNet({self.num_scenarios} gated towers, prior {prior})"
