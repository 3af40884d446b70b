"""AdaptDHM (Li et al., "AdaptDHM: Adaptive Distribution Hierarchical Model for Multi-Domain CTR
Prediction", arXiv 2211.12105) as a head: rows are routed to clusters learned from the data, not to their
scenario's tower.

Equations (``x`` = ``[head input, e_s]``, ``e_s`` a learned embedding of the row's scenario; ``c_k`` the unit
cluster centres, a buffer):

- routing (no gradient): ``r_ik = softmax_k(x_i · c_k)``; in training the centres are first updated
  ``routing_iters`` times, each ``c_k ← normalize(β c_k + (1 - β) Σ_i r_ik x_i)`` over the batch rows (under
  DDP the sum runs over the global batch, so every replica keeps the same centres); then row ``i`` goes to
  cluster ``k_i = argmax_k x_i · c_k``. In eval mode the centres are fixed;
- cluster ``k``'s network (hierarchical, shared ⊙ specific): each layer ``y = x (W ⊙ W_k)`` (``+ b + b_k`` with
  ``bias``), ReLU
  between layers, the last layer gives the logit; cluster ``k``'s network runs on the rows routed to it only.

Differences from SWR's ``AdaptDHM`` (scenario_wise_rec/models/multi_domain/adaptdhm.py):

- SWR evaluates every cluster's network on every row and gathers the routed one; here each cluster sees only
  its rows (same output, less work);
- not a difference, an option: ``init=xavier`` (the default, SWR's) draws ``W`` and every ``W_k``
  Xavier-uniform with the ReLU gain; ``shared`` starts ``W_k`` at 1 (every cluster starts as the shared network,
  as in STAR). ``bias=false`` (the default) is SWR's forward pass, which leaves out the ``b`` and ``b_k`` it
  creates; ``true`` adds them. On SWR's MovieLens split the old ``shared`` + biases + StepLR reached 0.8010
  total AUC, SWR's init at SWR's constant lr 0.8084 (published 0.8083; experiments/reproduce_swr_movielens);
- the input is the head input plus a domain embedding (SWR: the six field embeddings plus the domain's);
- on data whose embeddings start near zero the centres collapse into one (uniform softmax, every centre pulled
  to the same batch mean), in SWR's code as in ours; the routing is kept as SWR's, collapse included;
- the centres are a registered buffer (saved in checkpoints, moved with the model, synchronised under DDP); in
  SWR they are a plain tensor attribute, not saved, and each DDP replica would drift on its own;
- the logit is returned (the loss applies the sigmoid).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from unirec_lab.features import FeatureSpace
from unirec_lab.models.heads.base import HeadInputs, ScenarioParams, stacked_params
from unirec_lab.models.heads.routing import ScenarioPartition


class ClusterLinear(nn.Module):
    """``x @ (W ⊙ W_k) [+ b + b_k]`` for the rows of cluster ``k``: one shared and one per-cluster weight."""

    def __init__(self, num_clusters: int, in_dim: int, out_dim: int, init: str, bias: bool) -> None:
        super().__init__()
        self.w_shared = nn.Parameter(torch.empty(in_dim, out_dim))
        self.w_s = nn.Parameter(torch.empty(num_clusters, in_dim, out_dim))
        if init == "xavier":  # SWR: each factor Xavier-uniform with the ReLU gain, drawn on its own
            for w in (self.w_shared, *self.w_s):
                nn.init.xavier_uniform_(w, gain=nn.init.calculate_gain("relu"))
        elif init == "shared":  # every cluster starts as the shared layer (STAR's init)
            bound = 1.0 / math.sqrt(in_dim)
            nn.init.uniform_(self.w_shared, -bound, bound)
            nn.init.ones_(self.w_s)
        else:
            raise ValueError(f"head.init={init!r}, expected 'xavier' (SWR's) or 'shared' (W_k = 1)")
        self.b_shared = nn.Parameter(torch.zeros(out_dim)) if bias else None
        self.b_s = nn.Parameter(torch.zeros(num_clusters, out_dim)) if bias else None

    def forward(self, k: int, x: torch.Tensor) -> torch.Tensor:
        w = self.w_shared * self.w_s[k]
        if self.b_shared is None:
            return x @ w
        return torch.addmm(self.b_shared + self.b_s[k], x, w)


def _global_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over the DDP processes (in place), so every replica updates its centres identically."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t


class AdaptDHM(nn.Module):
    def __init__(self, space: FeatureSpace, in_dim: int, hidden_dims: Sequence[int] = (64, 64),
                 num_clusters: int = 3, beta: float = 0.9, routing_iters: int = 3, scenario_embedding_dim: int = 16,
                 init: str = "xavier", bias: bool = False, extra_inputs: Sequence[str] = (),
                 feature_dims: Mapping[str, int] | None = None) -> None:
        super().__init__()
        if num_clusters <= 0 or routing_iters <= 0:
            raise ValueError(f"num_clusters={num_clusters}, routing_iters={routing_iters}: expected positive ints")
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"head.beta={beta}, expected a value in [0, 1] (the centres' update momentum)")
        if any(d <= 0 for d in hidden_dims):
            raise ValueError(f"hidden_dims must be positive, got {list(hidden_dims)}")
        self.num_scenarios = space.num_scenarios
        self.inputs = HeadInputs(in_dim, extra_inputs, feature_dims)
        self.scenario_embedding = nn.Embedding(self.num_scenarios, scenario_embedding_dim)
        nn.init.normal_(self.scenario_embedding.weight, 0.0, 0.02)
        d = self.inputs.out_dim + scenario_embedding_dim
        self.num_clusters, self.beta, self.routing_iters = num_clusters, beta, routing_iters
        self.register_buffer("centres", F.normalize(torch.randn(num_clusters, d), dim=1))
        dims = [d, *hidden_dims, 1]
        self.layers = nn.ModuleList(ClusterLinear(num_clusters, a, b, init, bias) for a, b in zip(dims[:-1], dims[1:]))

    def route_inputs(self, h: torch.Tensor, scenario: torch.Tensor,
                     feats: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``[B, d]``: what the rows are routed and scored on (head input and scenario embedding)."""
        return torch.cat([self.inputs(h, feats), self.scenario_embedding(scenario)], dim=-1)

    @torch.no_grad()
    def route(self, x: torch.Tensor) -> torch.Tensor:
        """``[B]`` cluster of each row; a training call first updates the centres (see the module doc)."""
        x = x.detach()
        if self.training:
            c = self.centres
            for _ in range(self.routing_iters):
                r = torch.softmax(x @ c.T, dim=1)  # [B, K]
                c = F.normalize(self.beta * c + (1 - self.beta) * _global_sum(r.T @ x), dim=1)
            self.centres.copy_(c)
        return torch.argmax(x @ self.centres.T, dim=1)

    def _cluster_logit(self, k: int, x: torch.Tensor) -> torch.Tensor:
        z = x
        for i, layer in enumerate(self.layers):
            z = layer(k, z)
            if i < len(self.layers) - 1:
                z = torch.relu(z)
        return z.squeeze(-1)

    def forward(self, h: torch.Tensor, scenario: torch.Tensor, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.route_inputs(h, scenario, feats)
        return ScenarioPartition(self.route(x), self.num_clusters).map(self._cluster_logit, x)

    def scenario_parameters(self, s: int) -> ScenarioParams:
        return stacked_params("scenario_embedding", {"weight": self.scenario_embedding.weight}, s)

    def describe(self) -> str:
        return (f"AdaptDHM({self.num_clusters} adaptive clusters, shared ⊙ cluster FCN of {len(self.layers)} "
                f"layers, {self.num_scenarios} scenarios)")
