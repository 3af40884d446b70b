"""What every scenario head shares: the head-input contract and the scenario-parameter inventory.

A head is built as ``head(space, in_dim, feature_dims=...)`` and called as ``head(h, scenario, feats)`` where
``h`` is the backbone trunk output ``[B, in_dim]`` and ``feats`` the backbone's other outputs (``user``,
``item``: the embedding-level vectors, ``dot``). ``extra_inputs`` names ``feats`` keys to concatenate to ``h``
(STAR and PEPNet read the embeddings, as in their papers); ``feature_dims`` (from the backbone) gives their
widths, so an unknown key fails when the model is built, not mid-training.

``scenario_parameters(s)`` lists ``(name, parameter, index)`` for every parameter that belongs to scenario
``s`` alone: ``index=None`` means the whole tensor, an int means the slice ``parameter[index]`` of a stacked
per-scenario tensor. Tests use it to check that scenario ``s``'s parameters receive gradient only from ``s``'s
rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

ScenarioParams = list[tuple[str, torch.Tensor, "int | None"]]


class HeadInputs(nn.Module):
    """``cat([h, feats[k] for k in extra_inputs])``; ``dot``-like 1-D features are unsqueezed."""

    def __init__(self, in_dim: int, extra_inputs: Sequence[str] = (),
                 feature_dims: Mapping[str, int] | None = None) -> None:
        super().__init__()
        self.extra_inputs = list(extra_inputs)
        dims = dict(feature_dims or {})
        unknown = [k for k in self.extra_inputs if k not in dims]
        if unknown:
            raise ValueError(f"head extra_inputs {unknown} not produced by the backbone (available: {sorted(dims)})")
        if "h" in self.extra_inputs:
            raise ValueError("head extra_inputs must not name 'h': the trunk output is always the first input")
        self.h_dim = in_dim
        self.extra_dim = sum(dims[k] for k in self.extra_inputs)
        self.out_dim = in_dim + self.extra_dim

    def extras(self, feats: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        if not self.extra_inputs:
            return None
        parts = [feats[k] if feats[k].dim() == 2 else feats[k].unsqueeze(-1) for k in self.extra_inputs]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def forward(self, h: torch.Tensor, feats: Mapping[str, torch.Tensor]) -> torch.Tensor:
        ex = self.extras(feats)
        return h if ex is None else torch.cat([h, ex], dim=-1)


def module_params(prefix: str, module: nn.Module) -> ScenarioParams:
    """All parameters of a module that belongs to one scenario."""
    return [(f"{prefix}.{n}", p, None) for n, p in module.named_parameters()]


def stacked_params(prefix: str, params: Mapping[str, torch.Tensor], s: int) -> ScenarioParams:
    """Slice ``s`` of stacked ``[S, ...]`` per-scenario parameters."""
    return [(f"{prefix}.{n}[{s}]", p, s) for n, p in params.items()]
