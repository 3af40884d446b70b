"""STAR (Sheng et al., CIKM 2021): star-topology FCN, partitioned normalisation, auxiliary scenario network.

- **Star layers**: scenario ``s`` uses ``W = W_shared ⊙ W_s`` and ``b = b_shared + b_s``; ``W_s`` starts at 1 and
  ``b_s`` at 0, so every scenario starts from the shared network. The last star layer outputs the logit.
- **Partitioned normalisation** (PN) of the head input: ``(x - mu_s) / sqrt(var_s + eps) * (gamma * gamma_s) +
  (beta + beta_s)``. In training ``mu_s, var_s`` are the batch statistics of scenario ``s``'s rows only, and
  each scenario keeps its own running mean/var; in eval mode the running statistics of the row's scenario are
  used, so a row's eval output does not depend on the other rows of the batch (their scenarios or number).
  A scenario with a single row in a training batch is normalised with its running statistics (no update).
- **Auxiliary network**: a small MLP on ``[scenario embedding, x]`` whose logit is added to the star logit.

Each scenario's slice of the stacked per-scenario tensors is only touched by its own rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from unirec_lab.features import FeatureSpace
from unirec_lab.models.heads.base import HeadInputs, ScenarioParams, stacked_params
from unirec_lab.models.heads.routing import ScenarioPartition
from unirec_lab.models.mlp import mlp


class PartitionedNorm(nn.Module):
    """BatchNorm with shared + per-scenario affine parameters and per-scenario running statistics."""

    def __init__(self, num_scenarios: int, dim: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"momentum={momentum}, expected a value in (0, 1]")
        self.momentum, self.eps = momentum, eps
        self.gamma = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.gamma_s = nn.Parameter(torch.ones(num_scenarios, dim))
        self.beta_s = nn.Parameter(torch.zeros(num_scenarios, dim))
        self.register_buffer("running_mean", torch.zeros(num_scenarios, dim))
        self.register_buffer("running_var", torch.ones(num_scenarios, dim))
        self.register_buffer("num_batches_tracked", torch.zeros(num_scenarios, dtype=torch.long))

    def forward(self, s: int, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x``, all of whose rows belong to scenario ``s``."""
        if self.training and x.shape[0] > 1:
            mean = x.mean(0)
            var = x.var(0, unbiased=False)
            with torch.no_grad():
                n = x.shape[0]
                m = self.momentum
                self.running_mean[s].mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var[s].mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
                self.num_batches_tracked[s] += 1
        else:
            mean, var = self.running_mean[s], self.running_var[s]
        z = (x - mean) * torch.rsqrt(var + self.eps)
        return z * (self.gamma * self.gamma_s[s]) + (self.beta + self.beta_s[s])


class StarLinear(nn.Module):
    """``x @ (W_shared ⊙ W_s) + b_shared + b_s`` for the rows of one scenario ``s``."""

    def __init__(self, num_scenarios: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.w_shared = nn.Parameter(torch.empty(in_dim, out_dim).uniform_(-bound, bound))
        self.b_shared = nn.Parameter(torch.zeros(out_dim))
        self.w_s = nn.Parameter(torch.ones(num_scenarios, in_dim, out_dim))
        self.b_s = nn.Parameter(torch.zeros(num_scenarios, out_dim))

    def forward(self, s: int, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.b_shared + self.b_s[s], x, self.w_shared * self.w_s[s])


class STAR(nn.Module):
    def __init__(self, space: FeatureSpace, in_dim: int, hidden_dims: Sequence[int] = (64, 32),
                 dropout: float = 0.0, partitioned_norm: bool = True, norm_momentum: float = 0.1,
                 aux_dims: Sequence[int] = (16,), scenario_embedding_dim: int = 8,
                 extra_inputs: Sequence[str] = (), feature_dims: Mapping[str, int] | None = None) -> None:
        super().__init__()
        if any(d <= 0 for d in hidden_dims):
            raise ValueError(f"hidden_dims must be positive, got {list(hidden_dims)}")
        self.num_scenarios = S = space.num_scenarios
        self.inputs = HeadInputs(in_dim, extra_inputs, feature_dims)
        d = self.inputs.out_dim
        self.norm = PartitionedNorm(S, d, momentum=norm_momentum) if partitioned_norm else None
        dims = [d, *hidden_dims, 1]
        self.layers = nn.ModuleList(StarLinear(S, a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.scenario_embedding = nn.Embedding(S, scenario_embedding_dim)
        nn.init.normal_(self.scenario_embedding.weight, 0.0, 0.02)
        self.aux = mlp(scenario_embedding_dim + d, list(aux_dims), dropout, out_dim=1)

    def _scenario_logit(self, s: int, x: torch.Tensor) -> torch.Tensor:
        z = self.norm(s, x) if self.norm is not None else x
        for i, layer in enumerate(self.layers):
            z = layer(s, z)
            if i < len(self.layers) - 1:
                z = self.dropout(torch.relu(z))
        return z.squeeze(-1)

    def forward(self, h: torch.Tensor, scenario: torch.Tensor, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.inputs(h, feats)
        star = ScenarioPartition(scenario, self.num_scenarios).map(self._scenario_logit, x)
        aux = self.aux(torch.cat([self.scenario_embedding(scenario), x], dim=-1)).squeeze(-1)
        return star + aux

    def scenario_parameters(self, s: int) -> ScenarioParams:
        out = stacked_params("scenario_embedding", {"weight": self.scenario_embedding.weight}, s)
        for i, layer in enumerate(self.layers):
            out += stacked_params(f"layers.{i}", {"w_s": layer.w_s, "b_s": layer.b_s}, s)
        if self.norm is not None:
            out += stacked_params("norm", {"gamma_s": self.norm.gamma_s, "beta_s": self.norm.beta_s}, s)
        return out

    def describe(self) -> str:
        pn = "partitioned norm" if self.norm is not None else "no norm"
        return f"STAR({len(self.layers)} star layers, {pn}, aux net, {self.num_scenarios} scenarios)"
