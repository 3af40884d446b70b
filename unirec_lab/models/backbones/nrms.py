"""NRMS's user encoder (Wu et al. 2019, "Neural News Recommendation with Multi-Head Self-Attention"): multi-head
self-attention over the vectors of the user's clicked articles, then additive attention pools them into one
user vector. Usable as the shared backbone's history encoder (``backbone=nrms``) and inside the NRMS baseline
(``model=nrms``, models/baselines/nrms.py).

NRMS's news encoder runs the same two layers over title words; here an article's vector is the item vector of
the embedding layer, i.e. the shared projection of its frozen sentence embedding (``shared:text``) plus its
other fields, so the word level is the pretrained encoder's job.
"""

from __future__ import annotations

import torch
from torch import nn

from unirec_lab.models.backbones.encoders import by_history_span


class AdditiveAttention(nn.Module):
    """``softmax_i(q^T tanh(W h_i + b))``-weighted sum of ``h`` over the real positions."""

    def __init__(self, dim: int, attention_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, attention_dim)
        self.query = nn.Linear(attention_dim, 1, bias=False)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        score = self.query(torch.tanh(self.proj(h))).squeeze(-1).masked_fill(~mask, float("-inf"))
        return (torch.softmax(score, dim=-1).unsqueeze(-1) * h).sum(1)


class NRMSUserEncoder(nn.Module):
    """History ``[B, K, d]`` -> user ``[B, d]``: multi-head self-attention, then additive attention (no position
    encoding: NRMS treats the clicked articles as a set). An empty history gives zeros."""

    target_dependent = False  # does the output depend on the candidate item? (eval dedupe in the backbone)

    def __init__(self, dim: int, num_heads: int = 4, attention_dim: int = 64, dropout: float = 0.2) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"nrms: embedding_dim={dim} is not divisible by num_heads={num_heads}")
        self.self_attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.pool = AdditiveAttention(dim, attention_dim)

    def _encode(self, hist: torch.Tensor, mask: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        h, _ = self.self_attention(hist, hist, hist, key_padding_mask=~mask, need_weights=False)
        return self.pool(self.dropout(h), mask)

    def forward(self, hist: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # exact under trimming of leading padding (padding is masked everywhere), so rows run by history span
        return by_history_span(hist, mask, None, self._encode)
