"""The unified multi-scenario model: shared backbone + scenario heads, scored per row."""

from __future__ import annotations

import torch
from torch import nn

from unirec_lab.models.mlp import relu_linears

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

    # catalogue scoring (see unirec_lab.evaluation.catalogue): the backbone's cached user / item sides
    def user_side(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.backbone.user_side(batch)

    def item_side(self, items: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.backbone.item_side(items)

    def retrieval_keys(self, item: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[N, d]`` item vectors: the scores are fitted as linear in them for a first retrieval stage."""
        return item["item"]

    def relu_chain(self, user: dict[str, torch.Tensor], item: dict[str, torch.Tensor]) -> dict | None:
        """The pair score as one ReLU chain over the catalogue (``evaluation.relu_chain.ReluChain``'s fields:
        exact, all GEMMs) when it is one: a folded first trunk layer, ReLU/Linear after it and one scenario's MLP
        tower for every user row; ``None`` otherwise (``score_pairs`` is the general path)."""
        tower = getattr(self.head, "tower_modules", None)
        trunk = getattr(self.backbone, "trunk_chain", lambda: None)()
        scenario = user["scenario"]
        if "user" not in user or tower is None or trunk is None or item["item"].dim() != 2 \
                or not bool((scenario == scenario[0]).all()):
            return None
        modules = tower(int(scenario[0]))
        linears = relu_linears(trunk + modules) if modules is not None else None
        if not linears or linears[-1].out_features != 1:
            return None
        a, c = self.backbone.fold_first_layer(user)
        return {"items": item["item"], "a": a, "c": c, "layers": [(m.weight, m.bias) for m in linears]}

    def score_pairs(self, user: dict[str, torch.Tensor], item: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[b, C]`` logits of every user row with every candidate (equal to ``forward`` on the pairs)."""
        feats = self.backbone.pair_features(user, item)
        scenario = user["scenario"].repeat_interleave(feats.c)
        return self.head(feats["h"], scenario, feats).reshape(feats.b, feats.c)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
