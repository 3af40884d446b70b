"""Rebuild a model from its recorded config without Hydra: plain ``importlib`` of the ``_target_`` s.

An artifact is data, so only targets inside this package are imported (a crafted ``spec.json`` cannot make a
server import and call arbitrary code). ``_partial_: true`` gives a ``functools.partial``, as Hydra does; the
model is then wired exactly as :func:`unirec_lab.engine.build.build_model` wires it: ``builder(space=...,
backbone=..., head=...)``.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

from torch import nn

from unirec_lab.features import FeatureSpace

ALLOWED_PREFIX = "unirec_lab."
META_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_")


class SpecError(ValueError):
    """A model spec names an unknown or disallowed target, or does not fit its builder."""


def resolve_target(target: Any, where: str) -> Any:
    if not isinstance(target, str) or not target.startswith(ALLOWED_PREFIX):
        raise SpecError(f"{where}: _target_ {target!r} is not inside {ALLOWED_PREFIX[:-1]} (refused)")
    module, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise SpecError(f"{where}: _target_ {target!r} cannot be imported") from None


def instantiate(node: Any, where: str = "spec") -> Any:
    """Hydra's ``instantiate`` for the subset configs use: nested ``_target_`` dicts, ``_partial_``, lists."""
    if isinstance(node, dict):
        if "_target_" not in node:
            return {k: instantiate(v, f"{where}.{k}") for k, v in node.items()}
        fn = resolve_target(node["_target_"], where)
        kwargs = {k: instantiate(v, f"{where}.{k}") for k, v in node.items() if k not in META_KEYS}
        if node.get("_partial_"):
            return functools.partial(fn, **kwargs)
        try:
            return fn(**kwargs)
        except TypeError as e:
            raise SpecError(f"{where}: {node['_target_']} does not accept these keys ({e})") from None
    if isinstance(node, list):
        return [instantiate(v, f"{where}[{i}]") for i, v in enumerate(node)]
    return node


def build_from_spec(spec: dict[str, Any], space: FeatureSpace, where: str = "spec") -> nn.Module:
    """The model of ``spec`` (``{"builder", "backbone", "head"}``: the run's resolved config nodes)."""
    missing = [k for k in ("builder", "backbone", "head") if k not in spec]
    if missing:
        raise SpecError(f"{where}: model spec lacks {missing} (expected builder, backbone, head)")
    builder = instantiate(spec["builder"], f"{where}.builder")
    try:
        return builder(space=space, backbone=instantiate(spec["backbone"], f"{where}.backbone"),
                       head=instantiate(spec["head"], f"{where}.head"))
    except TypeError as e:
        raise SpecError(f"{where}: the builder does not accept this spec ({e})") from None
