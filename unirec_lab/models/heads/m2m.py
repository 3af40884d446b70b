"""M2M (Zhang et al., "Leaving No One Behind: A Multi-Scenario Multi-Task Meta Learning Approach for
Advertiser Modeling", WSDM 2022) as a scenario head: weights generated from the scenario representation.

Equations (``x`` = head input, ``e_s`` = learned embedding of the row's scenario, ``t`` = the task vector):

- experts ``E_i = LeakyReLU(W_i x + b_i)``, ``i = 1..K`` (shared by all rows);
- scenario representation ``r_s = LeakyReLU(W_r e_s + b_r)``;
- meta attention: ``W_a(s), b_a(s) = G_a(r_s)`` (generated), ``a_i = v^T LeakyReLU([E_i, t] W_a(s) + b_a(s))``,
  ``α = softmax_i(a)``, ``m = Σ_i α_i E_i``;
- meta tower: ``W_t(s), b_t(s) = G_t(r_s)``, ``o = LeakyReLU(m W_t(s) + b_t(s) + m)`` (residual);
- ``logit = MLP(o)``.

The generated weights depend on the scenario only, so they are produced once per forward for all scenarios
(:meth:`meta_weights`, ``[S, ...]``) and each scenario's rows are multiplied by their own.

Differences from SWR's ``M2M`` (scenario_wise_rec/models/multi_domain/m2m.py):

- the transformer: SWR runs ``nn.Transformer(d_model=D, nhead=4, 2 + 2 layers, feed-forward 16)`` on the
  ``[B, D]`` embedding matrix as one *unbatched sequence* of ``B`` tokens, so every row attends over the other
  rows of its batch (an output depends on the batch it sits in, and attention costs ``O(B^2)``). With
  ``transformer_layers=[encoder, decoder]`` ours is the same module on each row as its own one-token sequence
  (``src = tgt = x``): the same layers and parameter count at equal input width, no row sees another; with one
  token, attention reduces to its value and output projections (query / key get no gradient), so the module
  is a residual, layer-normed MLP stack. ``[]`` (the code default) leaves it out: the experts read the head
  input. The paper's transformer encodes the advertiser's behaviour sequence; here that is the backbone's
  history encoder (``backbone=sasrec``);
- the task vector ``t`` is a learned vector (one task, CTR); SWR derives it from the scenario embedding
  through an MLP, which makes it a second scenario representation;
- the weight generators ``G_a, G_t`` are linear maps of ``r_s``; SWR's are ``Linear -> BatchNorm ->
  LeakyReLU`` over the batch of per-row copies of ``r_s``;
- SWR's MLPs carry BatchNorm after each layer; ours do not. The logit is returned (the loss applies the
  sigmoid).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from unirec_lab.features import FeatureSpace
from unirec_lab.models.heads.banks import LinearBank
from unirec_lab.models.heads.base import HeadInputs, ScenarioParams, stacked_params
from unirec_lab.models.heads.routing import ScenarioPartition
from unirec_lab.models.mlp import mlp

SLOPE = 0.01  # LeakyReLU's default negative slope


class M2M(nn.Module):
    def __init__(self, space: FeatureSpace, in_dim: int, num_experts: int = 4, expert_dim: int = 16,
                 scenario_embedding_dim: int = 16, tower_dims: Sequence[int] = (64, 32), dropout: float = 0.0,
                 transformer_layers: Sequence[int] = (), transformer_ff: int = 16, transformer_heads: int = 1,
                 transformer_dropout: float = 0.1, extra_inputs: Sequence[str] = (),
                 feature_dims: Mapping[str, int] | None = None) -> None:
        super().__init__()
        if num_experts <= 0 or expert_dim <= 0 or scenario_embedding_dim <= 0:
            raise ValueError(f"num_experts={num_experts}, expert_dim={expert_dim}, scenario_embedding_dim="
                             f"{scenario_embedding_dim}: expected positive integers")
        self.num_scenarios = S = space.num_scenarios
        self.inputs = HeadInputs(in_dim, extra_inputs, feature_dims)
        self.transformer = self._transformer(list(transformer_layers), transformer_ff, transformer_heads,
                                             transformer_dropout)
        e = self.expert_dim = expert_dim
        self.experts = LinearBank(self.inputs.out_dim, e, num_experts)
        self.scenario_embedding = nn.Embedding(S, scenario_embedding_dim)  # N(0, 1): the generators' input
        self.scenario_mlp = nn.Linear(scenario_embedding_dim, e)
        self.task = nn.Parameter(torch.empty(e).normal_(0.0, 0.1))
        self.gen_attention_w = nn.Linear(e, 4 * e * e)
        self.gen_attention_b = nn.Linear(e, 2 * e)
        self.v = nn.Parameter(torch.ones(2 * e))
        self.gen_tower_w = nn.Linear(e, e * e)
        self.gen_tower_b = nn.Linear(e, e)
        self.tower = mlp(e, list(tower_dims), dropout, out_dim=1)

    def _transformer(self, layers: list[int], ff: int, heads: int, dropout: float) -> nn.Transformer | None:
        """SWR's ``nn.Transformer`` over the head input (``layers = [encoder, decoder]``), or None for ``[]``."""
        if not layers:
            return None
        d = self.inputs.out_dim
        if len(layers) != 2 or min(layers) <= 0 or ff <= 0 or heads <= 0 or d % heads:
            raise ValueError(f"head.transformer_layers={layers}, transformer_ff={ff}, transformer_heads={heads}: "
                             f"expected [encoder, decoder] positive layer counts, a positive feed-forward width "
                             f"and a head count dividing the input width {d}")
        return nn.Transformer(d_model=d, nhead=heads, num_encoder_layers=layers[0], num_decoder_layers=layers[1],
                              dim_feedforward=ff, dropout=dropout, batch_first=True)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, D]``: the transformer on each row as a one-token sequence (identity without one)."""
        if self.transformer is None:
            return x
        t = x.unsqueeze(1)
        return self.transformer(t, t).squeeze(1)

    def meta_weights(self) -> dict[str, torch.Tensor]:
        """The generated weights of every scenario: ``attention_w [S, 2e, 2e]``, ``attention_b [S, 2e]``,
        ``tower_w [S, e, e]``, ``tower_b [S, e]``."""
        e, S = self.expert_dim, self.num_scenarios
        r = F.leaky_relu(self.scenario_mlp(self.scenario_embedding.weight), SLOPE)  # [S, e]
        return {"attention_w": self.gen_attention_w(r).view(S, 2 * e, 2 * e),
                "attention_b": self.gen_attention_b(r), "tower_w": self.gen_tower_w(r).view(S, e, e),
                "tower_b": self.gen_tower_b(r)}

    def _scenario(self, s: int, experts: torch.Tensor, meta: dict[str, torch.Tensor]) -> torch.Tensor:
        """Meta attention + meta tower for the rows of scenario ``s`` (``experts``: ``[n, K, e]``)."""
        t = self.task.expand(experts.shape[0], experts.shape[1], -1)
        a = F.leaky_relu(torch.cat([experts, t], dim=-1) @ meta["attention_w"][s] + meta["attention_b"][s], SLOPE)
        alpha = torch.softmax(a @ self.v, dim=1).unsqueeze(-1)  # [n, K, 1]
        m = (alpha * experts).sum(1)
        return F.leaky_relu(m @ meta["tower_w"][s] + meta["tower_b"][s] + m, SLOPE)

    def forward(self, h: torch.Tensor, scenario: torch.Tensor, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        experts = F.leaky_relu(self.experts(self.encode(self.inputs(h, feats))), SLOPE)  # [B, K, e]
        meta = self.meta_weights()
        o = ScenarioPartition(scenario, self.num_scenarios).map(lambda s, es: self._scenario(s, es, meta), experts)
        return self.tower(o).squeeze(-1)

    def scenario_parameters(self, s: int) -> ScenarioParams:
        return stacked_params("scenario_embedding", {"weight": self.scenario_embedding.weight}, s)

    def describe(self) -> str:
        tf = "" if self.transformer is None else (
            f"transformer {len(self.transformer.encoder.layers)}+{len(self.transformer.decoder.layers)} layers, ")
        return (f"M2M({tf}{self.experts.num} experts, meta attention + meta tower generated per scenario, "
                f"{self.num_scenarios} scenarios)")
