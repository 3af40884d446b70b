"""AdaSparse (Yang et al., "AdaSparse: Learning Adaptively Sparse Structures for Multi-Domain Click-Through
Rate Prediction", CIKM 2022) as a scenario head: a scenario-conditioned pruner per layer zeroes neurons.

Equations (``x^0`` = head input, ``e_s`` = learned embedding of the row's scenario):

- pruner of layer ``l``: ``v = W_l [e_s, x^l]`` (no bias), then the weighting factor
  ``fusion``: ``π = β σ(α v)``; ``scaling``: ``π = β σ(v)``; and ``π ← π · 1[π ≥ ε]`` (neurons below ``ε``
  are pruned: exactly 0). So ``π ∈ {0} ∪ [ε, β)``;
- ``x^0 ← [e_s, π^0 ⊙ x^0]`` (the domain features enter the network unpruned), and for each hidden layer
  ``x^{l+1} = π^{l+1} ⊙ Dropout(ReLU(BN(W x^l + b)))``;
- ``logit = w_out x^L + b_out``;
- ``α`` (fusion) grows by ``Δα`` at every training forward pass, sharpening the sigmoid towards a binary mask;
  it is a buffer, so it is saved in checkpoints and restored on resume.

Differences from SWR's ``AdaSparse`` (scenario_wise_rec/models/multi_domain/adasparse.py + basic/layers.py
``Pruner``):

- pruned neurons are 0, as in the paper; SWR multiplies ``π`` by ``sign(π - ε)``, so a neuron below ``ε``
  is multiplied by ``-π`` (flipped, not pruned);
- ``α`` grows in training passes only; SWR increments it in every forward pass, validation and test included
  (evaluating the model changes it);
- the "binarization" form is not offered (SWR's returns ``sign(σ(αv) - ε) ∈ {-1, +1}``; its run script uses
  ``fusion``);
- the domain-aware input is a learned scenario embedding (SWR: the embedding of the domain-indicator field, the
  same thing); the logit is returned (the loss applies the sigmoid).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from unirec_lab.features import FeatureSpace
from unirec_lab.models.heads.banks import RowSafeBatchNorm
from unirec_lab.models.heads.base import HeadInputs, ScenarioParams, stacked_params

FORMS = ("fusion", "scaling")


class Pruner(nn.Module):
    """``π = β σ(α W [e_s, x]) · 1[π ≥ ε]`` (fusion) or ``β σ(W [e_s, x]) · 1[π ≥ ε]`` (scaling)."""

    def __init__(self, cond_dim: int, dim: int, form: str, epsilon: float, beta: float) -> None:
        super().__init__()
        self.linear = nn.Linear(cond_dim + dim, dim, bias=False)
        self.form, self.epsilon, self.beta = form, epsilon, beta

    def forward(self, cond: torch.Tensor, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        v = self.linear(torch.cat([cond, x], dim=-1))
        pi = self.beta * torch.sigmoid(alpha * v if self.form == "fusion" else v)
        return pi * (pi >= self.epsilon)


class AdaSparse(nn.Module):
    def __init__(self, space: FeatureSpace, in_dim: int, hidden_dims: Sequence[int] = (32, 32),
                 scenario_embedding_dim: int = 16, form: str = "fusion", epsilon: float = 1e-2, beta: float = 2.0,
                 alpha: float = 1.0, delta_alpha: float = 1e-4, dropout: float = 0.0, batch_norm: bool = True,
                 extra_inputs: Sequence[str] = (), feature_dims: Mapping[str, int] | None = None) -> None:
        super().__init__()
        hidden_dims = list(hidden_dims)
        if form not in FORMS:
            raise ValueError(f"head.form={form!r}, expected one of {list(FORMS)}")
        if not 0.0 <= epsilon < beta:
            raise ValueError(f"head.epsilon={epsilon}, head.beta={beta}: expected 0 <= epsilon < beta")
        if any(d <= 0 for d in hidden_dims):
            raise ValueError(f"hidden_dims must be positive, got {hidden_dims}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout}, expected a value in [0, 1)")
        self.num_scenarios = space.num_scenarios
        self.inputs = HeadInputs(in_dim, extra_inputs, feature_dims)
        se = scenario_embedding_dim
        self.scenario_embedding = nn.Embedding(self.num_scenarios, se)
        nn.init.normal_(self.scenario_embedding.weight, 0.0, 0.02)
        self.register_buffer("alpha", torch.tensor(float(alpha)))
        self.delta_alpha = delta_alpha
        d = self.inputs.out_dim
        self.pruners = nn.ModuleList([Pruner(se, d, form, epsilon, beta)])
        d += se  # the first layer reads [e_s, pruned input]
        self.layers = nn.ModuleList()
        for h in hidden_dims:
            parts: list[nn.Module] = [nn.Linear(d, h)]
            if batch_norm:
                parts.append(RowSafeBatchNorm(h))
            parts.append(nn.ReLU())
            if dropout > 0:
                parts.append(nn.Dropout(dropout))
            self.layers.append(nn.Sequential(*parts))
            self.pruners.append(Pruner(se, h, form, epsilon, beta))
            d = h
        self.out = nn.Linear(d, 1)
        self.form = form

    def pruned(self, h: torch.Tensor, scenario: torch.Tensor,
               feats: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(x^L, [π^0, ..., π^L])``: the last (pruned) layer and every pruner's output; a training pass first
        grows ``α``."""
        if self.training and self.form == "fusion":
            with torch.no_grad():
                self.alpha.add_(self.delta_alpha)
        es = self.scenario_embedding(scenario)
        x = self.inputs(h, feats)
        pi = self.pruners[0](es, x, self.alpha)
        x = torch.cat([es, pi * x], dim=-1)
        gates = [pi]
        for layer, pruner in zip(self.layers, list(self.pruners)[1:]):
            x = layer(x)
            pi = pruner(es, x, self.alpha)
            x = pi * x
            gates.append(pi)
        return x, gates

    def forward(self, h: torch.Tensor, scenario: torch.Tensor, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.out(self.pruned(h, scenario, feats)[0]).squeeze(-1)

    def scenario_parameters(self, s: int) -> ScenarioParams:
        return stacked_params("scenario_embedding", {"weight": self.scenario_embedding.weight}, s)

    def describe(self) -> str:
        return f"AdaSparse({self.form} pruners on input + {len(self.layers)} layers, {self.num_scenarios} scenarios)"
