"""History encoders: turn the embedded behaviour history into one user-interest vector.

Interface: ``forward(hist [B, K, d], mask [B, K] (True = real item), target [B, d]) -> [B, d]``.
"""

from __future__ import annotations

import torch
from torch import nn


class MeanPooling(nn.Module):
    """Masked mean of the history item vectors (zeros for an empty history)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, hist: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(hist.dtype)
        return (hist * m).sum(1) / m.sum(1).clamp(min=1.0)
