"""Builders are the ``_target_`` of ``conf/model/*``: they wire a backbone and a head for a feature space.

``backbone`` and ``head`` arrive as partials from ``conf/backbone`` and ``conf/head``; sizes come from the
data's :class:`FeatureSpace`, never from YAML.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from unirec_lab.data.features import FeatureSpace
from unirec_lab.models.unified import UnifiedModel


def _name(obj: object) -> str:
    f = getattr(obj, "func", obj)
    return getattr(f, "__name__", type(f).__name__)


def build_unified(space: FeatureSpace, backbone: Callable[..., nn.Module],
                  head: Callable[..., nn.Module]) -> UnifiedModel:
    """Shared backbone + one head per scenario (a head runs on its own scenario's rows only)."""
    bb = backbone(space)
    hd = head(space, bb.out_dim)
    enc = type(bb.history_encoder).__name__
    desc = (f"unified: shared {type(bb).__name__}(d={bb.embedding_dim}, history={enc}) + "
            f"{type(hd).__name__} over {space.num_scenarios} scenario(s)")
    return UnifiedModel(bb, hd, desc)
