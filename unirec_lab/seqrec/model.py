"""SASRec (Kang & McAuley, ICDM 2018) built on the framework's causal self-attention encoder.

``SASRec`` = one item embedding table (shared between the input sequence and the candidates, row 0 = padding)
+ :class:`~unirec_lab.models.backbones.encoders.CausalSelfAttention`, which already carries what SASRec needs:
learned position embeddings (right-aligned), LayerNorm + dropout over item + position embeddings, causal masking
that is safe for left padding, dropout inside the blocks, a final LayerNorm, N(0, 0.02) initialisation.
Nothing is re-implemented here; the wrapper only embeds ids and scores by dot product:

    score(u, t, i) = <F_t(u), E_i>      (F_t = encoder output at position t, E = item embedding table)

Training objective (SASRec / S3-Rec): at every real position of the training sequence, binary cross-entropy of
the next item (positive) against one sampled negative, averaged over real positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unirec_lab.models.backbones.encoders import CausalSelfAttention


class SASRec(nn.Module):
    def __init__(self, num_items: int, dim: int = 64, max_len: int = 50, num_layers: int = 2, num_heads: int = 2,
                 dropout: float = 0.5, ffn_mult: int = 4, init_std: float = 0.02) -> None:
        super().__init__()
        if num_items < 1:
            raise ValueError(f"num_items={num_items}, expected >= 1")
        self.num_items = num_items
        self.item_emb = nn.Embedding(num_items + 1, dim, padding_idx=0)
        nn.init.normal_(self.item_emb.weight, 0.0, init_std)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.encoder = CausalSelfAttention(dim, max_len, num_layers=num_layers, num_heads=num_heads,
                                           dropout=dropout, ffn_mult=ffn_mult, init_std=init_std)

    @property
    def description(self) -> str:
        e = self.encoder
        return (f"SASRec: CausalSelfAttention(d={e.dim}, layers={len(e.blocks)}, heads={e.blocks[0].num_heads}, "
                f"dropout={e.blocks[0].dropout}, max_len={e.max_len}) + shared item table ({self.num_items} items)")

    def sequence_outputs(self, seq: torch.Tensor) -> torch.Tensor:
        """``[B, K]`` item ids (0 = padding, left-padded) -> ``[B, K, d]`` state after each position."""
        return self.encoder.sequence_outputs(self.item_emb(seq), seq > 0)

    def user_vector(self, seq: torch.Tensor) -> torch.Tensor:
        """``[B, K]`` -> ``[B, d]``: the state at the most recent position (only that query is computed in the
        last block)."""
        return self.encoder(self.item_emb(seq), seq > 0, None)

    def score(self, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Dot products ``<state, E_item>``: ``state [B, d]`` with ``items [B, C]`` -> ``[B, C]``; or
        ``state [B, K, d]`` with ``items [B, K]`` -> ``[B, K]`` (one candidate per position)."""
        emb = self.item_emb(items)
        if state.dim() == 2:
            return torch.bmm(emb, state.unsqueeze(-1)).squeeze(-1)
        return (state * emb).sum(-1)

    def forward(self, seq: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, C]`` of candidate items after the sequences ``[B, K]``."""
        return self.score(self.user_vector(seq), candidates)

    def loss(self, seq: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Mean (or sum) over positions with a target (``pos > 0``) of
        ``-log s(<F_t, E_pos>) - log(1 - s(<F_t, E_neg>))``."""
        state = self.sequence_outputs(seq)
        m = pos > 0
        h = state[m]
        pos_logit = (h * self.item_emb(pos[m])).sum(-1)
        neg_logit = (h * self.item_emb(neg[m])).sum(-1)
        per_target = F.softplus(-pos_logit) + F.softplus(neg_logit)
        if reduction == "sum":
            return per_target.sum()
        if reduction != "mean":
            raise ValueError(f"reduction={reduction!r}, expected 'mean' or 'sum'")
        return per_target.mean()
