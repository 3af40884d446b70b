"""SASRec (Kang & McAuley, ICDM 2018) as a per-scenario model of the framework: ``logit = <F(history), E_item>``.

``F`` is the shared backbone's causal self-attention encoder over the row's history (item ⊕ feedback when the
backbone has ``feedback_embedding``), read at the most recent entry; ``E_item`` is the same item vector the
history is built from (one table for inputs and candidates, as in SASRec). There is no trunk and no head: the
score is the dot product, the quantity SASRec's next-item objective (``objectives=[next_item]``,
:class:`~unirec_lab.models.objectives.NextItemObjective`) trains at every history position, so training and
evaluation score the same thing. The user id is not embedded (SASRec has none); user fields, if a scenario has
any, are added to ``F`` as the backbone adds them.
"""

from __future__ import annotations

import torch
from torch import nn

Batch = dict[str, torch.Tensor]


class SASRec(nn.Module):
    """``backbone``: a :class:`~unirec_lab.models.backbones.shared.SharedBackbone` whose history encoder has
    per-position states (``sequence_outputs``); only its embeddings and encoder are used."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        enc = getattr(backbone, "history_encoder", None)
        if not hasattr(enc, "sequence_outputs"):
            raise ValueError(f"model=sasrec needs a sequence history encoder (backbone=sasrec), got "
                             f"{type(enc).__name__}")
        self.backbone = backbone
        e = enc
        blocks = getattr(e, "blocks", None)
        shape = (f"d={backbone.embedding_dim}, layers={len(blocks)}, heads={blocks[0].num_heads}, "
                 f"dropout={blocks[0].dropout}, max_len={e.max_len}" if blocks else f"d={backbone.embedding_dim}")
        self.description = (f"SASRec: <{type(e).__name__}({shape}) over the history, item vector>"
                            + (", item ⊕ feedback history" if backbone.action_embedding is not None else ""))

    def forward(self, batch: Batch) -> torch.Tensor:
        user, item = self.backbone.user_item(batch)
        return (user * item).sum(-1)

    # catalogue scoring (see unirec_lab.evaluation.catalogue): the user state once per user, one matmul for all pairs
    def user_side(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.backbone.user_side(batch)

    def item_side(self, items: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.backbone.item_side(items)

    def retrieval_keys(self, item: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[N, d]``: a user's score is exactly linear in the item vector."""
        return item["item"]

    def score_pairs(self, user: dict[str, torch.Tensor], item: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[b, C]`` logits; ``item["item"]`` is ``[C, d]`` (shared candidates) or ``[b, C, d]`` (per user)."""
        vec = item["item"]
        if vec.dim() == 2:
            return user["user"] @ vec.T
        return torch.bmm(vec, user["user"].unsqueeze(-1)).squeeze(-1)
