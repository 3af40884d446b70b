"""Matrix factorisation: ``logit = <e_u, e_i> (+ b_u + b_i + b_0)``. No features, no history, no MLP."""

from __future__ import annotations

import torch
from torch import nn

from unirec_lab.features import FeatureSpace
from unirec_lab.models.embedding import init_embedding

Batch = dict[str, torch.Tensor]


class MatrixFactorization(nn.Module):
    """Global user/item id embeddings (ids are scenario-private, so each scenario is its own MF)."""

    def __init__(self, space: FeatureSpace, embedding_dim: int = 32, bias: bool = True,
                 init_std: float = 0.02, sparse: bool = True) -> None:
        super().__init__()
        if embedding_dim <= 0:
            raise ValueError(f"embedding_dim={embedding_dim}, expected a positive integer")
        # sparse gradients (as the backbone's tables): the optimizer touches only the rows a batch used
        self.user = nn.Embedding(space.num_users, embedding_dim, padding_idx=0, sparse=sparse)
        self.item = nn.Embedding(space.num_items, embedding_dim, padding_idx=0, sparse=sparse)
        init_embedding(self.user, init_std)
        init_embedding(self.item, init_std)
        self.bias = bias
        if bias:
            self.user_bias = nn.Embedding(space.num_users, 1, padding_idx=0, sparse=sparse)
            self.item_bias = nn.Embedding(space.num_items, 1, padding_idx=0, sparse=sparse)
            nn.init.zeros_(self.user_bias.weight)
            nn.init.zeros_(self.item_bias.weight)
            self.global_bias = nn.Parameter(torch.zeros(()))
        self.embedding_dim = embedding_dim
        self.description = (f"MF: <user id emb, item id emb> (d={embedding_dim})"
                            + (" + user/item/global bias" if bias else ", no biases") + "; no features, no history")

    def score(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        logit = (self.user(user) * self.item(item)).sum(-1)
        if self.bias:
            logit = logit + self.user_bias(user).squeeze(-1) + self.item_bias(item).squeeze(-1) + self.global_bias
        return logit

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.score(batch["user"], batch["item"])

    # catalogue scoring (see unirec_lab.evaluation.catalogue): one matmul for all pairs
    def user_side(self, batch: Batch) -> dict[str, torch.Tensor]:
        u = batch["user"]
        bias = self.user_bias(u).squeeze(-1) + self.global_bias if self.bias else torch.zeros(len(u))
        return {"user": self.user(u), "bias": bias}

    def item_side(self, items: torch.Tensor) -> dict[str, torch.Tensor]:
        bias = self.item_bias(items).squeeze(-1) if self.bias else torch.zeros(items.shape)
        return {"item": self.item(items), "bias": bias}

    def retrieval_keys(self, item: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[N, d + 1]``: a user's score is exactly linear in ``[item vector, item bias]``."""
        return torch.cat([item["item"], item["bias"].unsqueeze(-1)], dim=-1)

    def score_pairs(self, user: dict[str, torch.Tensor], item: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[b, C]`` logits; ``item`` tensors are ``[C, ...]`` (shared) or ``[b, C, ...]`` (per user)."""
        vec = item["item"]
        if vec.dim() == 2:  # the same candidates for every user: one matmul
            dot = torch.addmm(item["bias"].unsqueeze(0), user["user"], vec.T)
        else:
            dot = torch.bmm(vec, user["user"].unsqueeze(-1)).squeeze(-1) + item["bias"]
        return dot + user["bias"].unsqueeze(-1)
