"""Builders are the ``_target_`` of ``conf/model/*``: they wire a backbone and a head for a feature space.

Every builder is called as ``builder(space=..., backbone=..., head=...)`` where ``backbone`` and ``head`` arrive
as partials from ``conf/backbone`` and ``conf/head`` (sizes come from the data's :class:`FeatureSpace`, never
from YAML). Baselines that have no backbone or head (MF, popularity) accept and ignore them, so every model
config runs through the same entry point. No builder takes ``**kwargs``: a misspelt config key fails at startup.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import nn

from unirec_lab.features import FeatureSpace
from unirec_lab.models.baselines.mf import MatrixFactorization
from unirec_lab.models.baselines.popularity import Popularity
from unirec_lab.models.baselines.sasrec import SASRec
from unirec_lab.models.unified import UnifiedModel


def _describe(m: nn.Module) -> str:
    d = getattr(m, "describe", None)
    return d() if callable(d) else type(m).__name__


def build_unified(space: FeatureSpace, backbone: Callable[..., nn.Module],
                  head: Callable[..., nn.Module]) -> UnifiedModel:
    """Shared backbone + one head per scenario (a head runs on its own scenario's rows only)."""
    bb = backbone(space)
    hd = head(space, bb.out_dim, feature_dims=bb.feature_dims)
    desc = f"unified: shared {_describe(bb)} + {_describe(hd)}"
    return UnifiedModel(bb, hd, desc)


class SingleHead(nn.Module):
    """Runs a head built for one pseudo-scenario on every row: one shared head, whatever the scenario."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, h: torch.Tensor, scenario: torch.Tensor, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(h, torch.zeros_like(scenario), feats)

    def tower_modules(self, s: int) -> list[nn.Module] | None:
        """The shared head's one tower, whatever the scenario (catalogue scoring as a ReLU chain)."""
        inner = getattr(self.head, "tower_modules", None)
        return inner(0) if inner is not None else None

    def describe(self) -> str:
        return f"one shared {_describe(self.head)}"


def build_scenario_as_feature(space: FeatureSpace, backbone: Callable[..., nn.Module],
                              head: Callable[..., nn.Module]) -> UnifiedModel:
    """One model for all rows: the scenario index is an embedded feature of the trunk input, and the
    configured head is built for a single pseudo-scenario, so all rows share one head."""
    bb = backbone(space, scenario_feature=True)
    one = dataclasses.replace(space, scenarios=["all"])
    hd = SingleHead(head(one, bb.out_dim, feature_dims=bb.feature_dims))
    desc = f"scenario-as-feature: {_describe(bb)} + {_describe(hd)} for all {space.num_scenarios} scenario(s)"
    return UnifiedModel(bb, hd, desc)


def build_mf(space: FeatureSpace, backbone: Callable[..., nn.Module], head: Callable[..., nn.Module],
             embedding_dim: int = 32, bias: bool = True, init_std: float = 0.02,
             sparse: bool = True) -> MatrixFactorization:
    """Matrix factorisation (the configured backbone and head are not used)."""
    return MatrixFactorization(space, embedding_dim=embedding_dim, bias=bias, init_std=init_std, sparse=sparse)


def build_popularity(space: FeatureSpace, backbone: Callable[..., nn.Module], head: Callable[..., nn.Module],
                     kind: str = "rate", smoothing: float = 1.0) -> Popularity:
    """Item popularity from the train split (the configured backbone and head are not used)."""
    return Popularity(space, kind=kind, smoothing=smoothing)


def build_sasrec(space: FeatureSpace, backbone: Callable[..., nn.Module], head: Callable[..., nn.Module]) -> SASRec:
    """SASRec: the configured backbone's embeddings and sequence encoder, scored by dot product (no trunk, no
    head: the configured head is not used)."""
    return SASRec(backbone(space, trunk_dims=()))
