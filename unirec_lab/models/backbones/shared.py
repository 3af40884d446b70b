"""The shared backbone: user and item vectors in one space and their interaction features.

user = user id + user fields + history encoder(history item vectors); item = item id + item fields.
The interaction ``[u, i, u*i, <u,i>]`` (the dot product is the collaborative-filtering score) feeds a shared
trunk MLP whose output every scenario head reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from unirec_lab.data.features import FeatureSpace
from unirec_lab.models.embedding import FeatureEmbedding
from unirec_lab.models.mlp import mlp

Batch = dict[str, torch.Tensor]


class SharedBackbone(nn.Module):
    """Embeds a batch and returns ``{"h": trunk output, "user", "item", "dot"}``."""

    def __init__(self, space: FeatureSpace, history_encoder: Callable[[int], nn.Module],
                 embedding_dim: int = 32, trunk_dims: Sequence[int] = (128, 64), dropout: float = 0.0,
                 init_std: float = 0.02) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(space, embedding_dim, init_std=init_std)
        self.history_encoder = history_encoder(embedding_dim)
        self.trunk = mlp(3 * embedding_dim + 1, list(trunk_dims), dropout)
        self.out_dim = list(trunk_dims)[-1] if trunk_dims else 3 * embedding_dim + 1
        self.embedding_dim = embedding_dim

    def user_item(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        hist_ids = batch["history"]
        both = self.embedding.item_vectors(torch.cat([batch["item"].unsqueeze(1), hist_ids], dim=1))
        item, hist = both[:, 0], both[:, 1:]
        user = self.embedding.user_vectors(batch["user"]) + self.history_encoder(hist, hist_ids > 0, item)
        return user, item

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        user, item = self.user_item(batch)
        dot = (user * item).sum(-1, keepdim=True)
        h = self.trunk(torch.cat([user, item, user * item, dot], dim=-1))
        return {"h": h, "user": user, "item": item, "dot": dot.squeeze(-1)}
