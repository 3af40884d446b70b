"""The unified multi-scenario model: shared backbone + scenario heads, scored per row."""

from __future__ import annotations

import torch
from torch import nn

Batch = dict[str, torch.Tensor]


class UnifiedModel(nn.Module):
    """``logit = head(backbone(batch), scenario)``; ``description`` says what it is in one line."""

    def __init__(self, backbone: nn.Module, head: nn.Module, description: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.description = description

    def forward(self, batch: Batch) -> torch.Tensor:
        feats = self.backbone(batch)
        return self.head(feats["h"], batch["scenario"], feats)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
