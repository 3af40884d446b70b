"""HAMUR (Li et al., "HAMUR: Hyper Adapter for Multi-Domain Recommendation", CIKM 2023) as a scenario head:
per-scenario networks with a shared adapter whose weights a shared hyper-network generates per row.

Equations (``x`` = head input, ``e_s`` = learned embedding of the row's scenario, ``k`` = the rank):

- scenario ``s``'s network, on ``s``'s rows only: ``z = MLP_s(x)`` (``Linear -> BN -> ReLU`` per hidden layer);
- hyper-network (shared): ``H = HyperNet([x, e_s]) ∈ R^{k×k}`` per row (``Linear -> BN -> ReLU`` layers, the last
  of width ``k²``, as SWR);
- adapter (shared parameters ``U_1 ∈ R^{m×k}, V_1 ∈ R^{k×a}, U_2 ∈ R^{a×k}, V_2 ∈ R^{k×m}``, biases):
  ``W_down = U_1 H V_1``, ``W_up = U_2 H V_2``; ``t = σ(z W_down + b_1) W_up + b_2``;
  computed as ``((z U_1) H) V_1`` so the ``m × a`` matrices are never formed per row;
- domain norm: ``t̂ = DomainNorm_s(t)`` (statistics of scenario ``s``'s rows in training, its running
  statistics in eval; shared and per-scenario scale / shift: STAR's partitioned norm);
- ``logit = w_s^T (z + t̂) + b_s`` (the adapter is a residual).

The scenario-specific part is ``MLP_s``, ``DomainNorm_s``'s per-scenario scale / shift and the output layer;
the hyper-network, ``U``, ``V`` and the adapter biases are shared by all rows.

Differences from SWR's ``HamurSmall`` (scenario_wise_rec/models/multi_domain/hamur.py):

- the hyper-network reads ``[x, e_s]``; SWR's reads the feature embeddings without the domain indicator (the
  scenario reaches the adapter only through the features);
- the domain norm keeps per-scenario running statistics for eval; SWR normalises with the statistics of the
  current batch at test time too (a row's score depends on the other rows of its batch) and shares one scale
  / shift across domains;
- ``U, V`` are drawn ``N(0, 1/fan_in)``; SWR initialises them to ones (a rank-1 adapter at the start);
- the adapter width ``a`` is a parameter (SWR hard-codes 32); SWR computes every scenario's network on
  every row and keeps the row's own; the logit is returned (the loss applies the sigmoid).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from unirec_lab.features import FeatureSpace
from unirec_lab.models.heads.banks import RowSafeBatchNorm
from unirec_lab.models.heads.base import HeadInputs, ScenarioParams, module_params, stacked_params
from unirec_lab.models.heads.routing import ScenarioPartition
from unirec_lab.models.heads.star import PartitionedNorm


def _bn_mlp(in_dim: int, dims: Sequence[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = in_dim
    for h in dims:
        layers += [nn.Linear(d, h), RowSafeBatchNorm(h), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        d = h
    return nn.Sequential(*layers)


def _normal(rows: int, cols: int) -> nn.Parameter:
    return nn.Parameter(torch.randn(rows, cols) / rows ** 0.5)


class HAMUR(nn.Module):
    def __init__(self, space: FeatureSpace, in_dim: int, hidden_dims: Sequence[int] = (256, 128),
                 adapter_dim: int = 32, rank: int = 35, hyper_dims: Sequence[int] = (64,),
                 scenario_embedding_dim: int = 16, norm_momentum: float = 0.1, dropout: float = 0.0,
                 extra_inputs: Sequence[str] = (), feature_dims: Mapping[str, int] | None = None) -> None:
        super().__init__()
        hidden_dims = list(hidden_dims)
        if not hidden_dims or any(d <= 0 for d in hidden_dims):
            raise ValueError(f"hidden_dims must be a non-empty list of positive ints, got {hidden_dims}")
        if adapter_dim <= 0 or rank <= 0:
            raise ValueError(f"adapter_dim={adapter_dim}, rank={rank}: expected positive integers")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout}, expected a value in [0, 1)")
        self.num_scenarios = S = space.num_scenarios
        self.inputs = HeadInputs(in_dim, extra_inputs, feature_dims)
        d, m, a, self.rank = self.inputs.out_dim, hidden_dims[-1], adapter_dim, rank
        self.scenario_embedding = nn.Embedding(S, scenario_embedding_dim)
        nn.init.normal_(self.scenario_embedding.weight, 0.0, 0.02)
        self.nets = nn.ModuleList(_bn_mlp(d, hidden_dims, dropout) for _ in range(S))
        self.out = nn.ModuleList(nn.Linear(m, 1) for _ in range(S))
        self.hyper = _bn_mlp(d + scenario_embedding_dim, [*hyper_dims, rank * rank], 0.0)
        self.u_down, self.v_down, self.b_down = _normal(m, rank), _normal(rank, a), nn.Parameter(torch.zeros(a))
        self.u_up, self.v_up, self.b_up = _normal(a, rank), _normal(rank, m), nn.Parameter(torch.zeros(m))
        self.norm = PartitionedNorm(S, m, momentum=norm_momentum)

    def hyper_matrix(self, h: torch.Tensor, scenario: torch.Tensor,
                     feats: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``[B, k, k]``: the hyper-network's output for each row (its input and its scenario)."""
        return self._hyper(self.inputs(h, feats), scenario)

    def _hyper(self, x: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
        return self.hyper(torch.cat([x, self.scenario_embedding(scenario)], dim=-1)).view(-1, self.rank, self.rank)

    def adapter(self, s: int, z: torch.Tensor, hm: torch.Tensor) -> torch.Tensor:
        """``z + DomainNorm_s(σ(z U_1 H V_1 + b_1) U_2 H V_2 + b_2)`` for rows of scenario ``s``."""
        t = torch.bmm((z @ self.u_down).unsqueeze(1), hm).squeeze(1) @ self.v_down + self.b_down
        t = torch.sigmoid(t)
        t = torch.bmm((t @ self.u_up).unsqueeze(1), hm).squeeze(1) @ self.v_up + self.b_up
        return z + self.norm(s, t)

    def _scenario(self, s: int, x: torch.Tensor, hm: torch.Tensor) -> torch.Tensor:
        return self.out[s](self.adapter(s, self.nets[s](x), hm)).squeeze(-1)

    def forward(self, h: torch.Tensor, scenario: torch.Tensor, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.inputs(h, feats)
        return ScenarioPartition(scenario, self.num_scenarios).map(self._scenario, x, self._hyper(x, scenario))

    def scenario_parameters(self, s: int) -> ScenarioParams:
        return (module_params(f"nets.{s}", self.nets[s]) + module_params(f"out.{s}", self.out[s])
                + stacked_params("scenario_embedding", {"weight": self.scenario_embedding.weight}, s)
                + stacked_params("norm", {"gamma_s": self.norm.gamma_s, "beta_s": self.norm.beta_s}, s))

    def describe(self) -> str:
        return (f"HAMUR({self.num_scenarios} scenario networks, shared hyper-network adapter of rank "
                f"{self.rank})")
