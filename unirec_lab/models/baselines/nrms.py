"""NRMS (Wu et al. 2019) as a content-based news baseline: ``logit = <user, candidate>``.

candidate = the article's item vector (the shared ``shared:text`` projection of its frozen sentence embedding
+ its other fields; an item id only with ``backbone.item_id_embedding`` (the one id switch of every model:
``false`` scores a never-seen article from its content alone, as ``experiments/text_cold_start`` runs it);
user = :class:`NRMSUserEncoder` over the clicked articles' vectors (no user id: NRMS models a user only by
what they read). Trained pointwise by the shared LightningModule like every model here, not with NRMS's
1 + K negative softmax.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from unirec_lab.features import FeatureSpace
from unirec_lab.models.backbones.nrms import NRMSUserEncoder
from unirec_lab.models.embedding import FeatureEmbedding

Batch = dict[str, torch.Tensor]


class NRMS(nn.Module):
    """Dot product of an NRMS user vector and the candidate's content vector."""

    def __init__(self, space: FeatureSpace, embedding_dim: int = 64, num_heads: int = 4, attention_dim: int = 64,
                 dropout: float = 0.2, item_id_embedding: bool = False, init_std: float = 0.02,
                 sparse: bool = True) -> None:
        super().__init__()
        if not space.item_slots and not space.text_slots and not item_id_embedding:
            raise ValueError("nrms: the scenarios have no item fields (no text, no tokens); set "
                             "backbone.item_id_embedding=true or add item fields")
        self.embedding = FeatureEmbedding(space, embedding_dim, init_std=init_std, use_user_id=False,
                                          use_item_id=item_id_embedding, sparse=sparse)
        self.user_encoder = NRMSUserEncoder(embedding_dim, num_heads, attention_dim, dropout)
        self.description = (f"NRMS: <MHSA + additive attention over clicked articles, article vector> "
                            f"(d={embedding_dim}, heads={num_heads}, item id {'on' if item_id_embedding else 'off'})")

    def user_side(self, batch: Batch) -> dict[str, torch.Tensor]:
        hist_ids = batch["history"]
        hist = self.embedding.item_vectors(hist_ids)
        return {"user": self.user_encoder(hist, hist_ids > 0, hist[:, 0])}

    def item_side(self, items: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"item": self.embedding.item_vectors(items)}

    def score_pairs(self, user: dict[str, torch.Tensor], item: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[b, C]`` logits; ``item["item"]`` is ``[C, d]`` (shared candidates) or ``[b, C, d]``."""
        vec = item["item"]
        if vec.dim() == 2:
            return user["user"] @ vec.T
        return torch.bmm(vec, user["user"].unsqueeze(-1)).squeeze(-1)

    def forward(self, batch: Batch) -> torch.Tensor:
        u = self.user_side(batch)["user"]
        return (u * self.embedding.item_vectors(batch["item"])).sum(-1)


def build_nrms(space: FeatureSpace, backbone: Callable[..., nn.Module], head: Callable[..., nn.Module],
               embedding_dim: int = 64, num_heads: int = 4, attention_dim: int = 64, dropout: float = 0.2,
               item_id_embedding: bool = False, init_std: float = 0.02, sparse: bool = True) -> NRMS:
    """NRMS content model (the configured backbone and head are not used; the config passes the backbone's
    ``item_id_embedding`` and ``sparse_embeddings`` switches)."""
    return NRMS(space, embedding_dim, num_heads, attention_dim, dropout, item_id_embedding, init_std, sparse)
