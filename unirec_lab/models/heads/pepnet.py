"""PEPNet-style scenario-conditioned gating (Chang et al., KDD 2023), adapted to a scenario head.

A *gate unit* is ``gamma * sigmoid(W2 relu(W1 [e_s, stopgrad(v)]))`` with ``gamma = 2`` (a neutral gate is 1,
and a gate can amplify up to 2x). ``e_s`` is a learned embedding of the row's scenario; ``stopgrad(v)`` lets
the gate see the row without the gate's gradient flowing back into what it gates.

- **EPNet** (embedding personalisation): the embedding-level inputs named by ``extra_inputs`` (default the
  backbone's ``user`` and ``item`` vectors) are scaled element-wise by a gate on ``[e_s, sg(embeddings)]``,
  then concatenated to the trunk output ``h``. The backbone's own trunk sits before the head, so this gates
  the head's embedding input, not the trunk's.
- **PPNet** (parameter personalisation): a shared tower whose every hidden layer's units are scaled by a gate
  on ``[e_s, sg(tower input)]``.
- A per-scenario output layer turns the last hidden layer into the logit (on that scenario's rows only).

The scenario-specific parameters are ``e_s`` (an embedding row, so only ``s``'s rows touch it) and ``s``'s
output layer; everything else is shared and specialised through the gates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from unirec_lab.features import FeatureSpace
from unirec_lab.models.heads.base import HeadInputs, ScenarioParams, module_params, stacked_params
from unirec_lab.models.heads.routing import ScenarioPartition


class GateUnit(nn.Module):
    """``gamma * sigmoid(Linear(relu(Linear(x))))``, output width ``out_dim``."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, gamma: float = 2.0) -> None:
        super().__init__()
        if hidden_dim <= 0:
            raise ValueError(f"gate_hidden_dim={hidden_dim}, expected a positive integer")
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))
        self.gamma = gamma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gamma * torch.sigmoid(self.net(x))


class PEPNet(nn.Module):
    def __init__(self, space: FeatureSpace, in_dim: int, hidden_dims: Sequence[int] = (64, 32),
                 gate_hidden_dim: int = 64, scenario_embedding_dim: int = 16, gamma: float = 2.0,
                 dropout: float = 0.0, extra_inputs: Sequence[str] = ("user", "item"),
                 feature_dims: Mapping[str, int] | None = None) -> None:
        super().__init__()
        hidden_dims = list(hidden_dims)
        if not hidden_dims or any(d <= 0 for d in hidden_dims):
            raise ValueError(f"hidden_dims must be a non-empty list of positive ints, got {hidden_dims}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout}, expected a value in [0, 1)")
        self.num_scenarios = space.num_scenarios
        self.inputs = HeadInputs(in_dim, extra_inputs, feature_dims)
        e = scenario_embedding_dim
        self.scenario_embedding = nn.Embedding(self.num_scenarios, e)
        nn.init.normal_(self.scenario_embedding.weight, 0.0, 0.02)
        ex = self.inputs.extra_dim
        self.epnet = GateUnit(e + ex, gate_hidden_dim, ex, gamma) if ex > 0 else None
        d = self.inputs.out_dim
        self.layers = nn.ModuleList()
        self.ppnet = nn.ModuleList()
        for h in hidden_dims:
            self.layers.append(nn.Linear(d, h))
            self.ppnet.append(GateUnit(e + self.inputs.out_dim, gate_hidden_dim, h, gamma))
            d = h
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out = nn.ModuleList(nn.Linear(d, 1) for _ in range(self.num_scenarios))
        # the paper's stop-gradient on gate inputs (a training device; explanations switch it off to follow
        # every path from the inputs to the score, see unirec_lab.explain.full_gradients)
        self.stop_gradient = True

    def _sg(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach() if self.stop_gradient else x

    def gates(self, h: torch.Tensor, scenario: torch.Tensor,
              feats: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor]]:
        """``(tower input, EPNet gate or None, [PPNet gate per hidden layer])``."""
        es = self.scenario_embedding(scenario)
        ex = self.inputs.extras(feats)
        ep = None
        if ex is not None and self.epnet is not None:
            ep = self.epnet(torch.cat([es, self._sg(ex)], dim=-1))
            x = torch.cat([h, ep * ex], dim=-1)
        else:
            x = h
        prior = torch.cat([es, self._sg(x)], dim=-1)
        return x, ep, [g(prior) for g in self.ppnet]

    def forward(self, h: torch.Tensor, scenario: torch.Tensor, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        z, _, pp = self.gates(h, scenario, feats)
        for layer, g in zip(self.layers, pp):
            z = self.dropout(torch.relu(layer(z)) * g)
        part = ScenarioPartition(scenario, self.num_scenarios)
        return part.map(lambda s, zs: self.out[s](zs).squeeze(-1), z)

    def scenario_parameters(self, s: int) -> ScenarioParams:
        return (stacked_params("scenario_embedding", {"weight": self.scenario_embedding.weight}, s)
                + module_params(f"out.{s}", self.out[s]))

    def describe(self) -> str:
        ep = f"EPNet on {'+'.join(self.inputs.extra_inputs)}, " if self.epnet is not None else ""
        return f"PEPNet({ep}PPNet on {len(self.layers)} layers, {self.num_scenarios} scenarios)"
