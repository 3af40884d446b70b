"""Checkpoint safety: load with ``weights_only=True`` and refuse a checkpoint written by another config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn


class IncompatibleCheckpointError(ValueError):
    """The checkpoint was written by a run whose model or data differ from this one."""


# config keys that must match for a checkpoint to be resumed (others, e.g. max_epochs, may change)
SIGNATURE_PREFIXES = ("seed", "model.", "backbone.", "head.", "data.", "optimizer.", "scenarios", "metrics")


def run_signature(config_flat: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in config_flat.items() if k.startswith(SIGNATURE_PREFIXES)
            and not k.startswith("data.cache_dir")}


def _load(path: Path) -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is reported the same way
        raise IncompatibleCheckpointError(f"{path}: cannot be read as a checkpoint ({type(e).__name__}: "
                                          f"{str(e).splitlines()[0][:200]})") from None
    if not isinstance(ckpt, dict):
        raise IncompatibleCheckpointError(f"{path}: not a checkpoint (holds a {type(ckpt).__name__})")
    return ckpt


def check_signature(path: Path, signature: dict[str, str], ckpt: dict[str, Any] | None = None) -> None:
    """Refuse a checkpoint without this config's signature, naming a differing key."""
    ckpt = _load(path) if ckpt is None else ckpt
    saved = (ckpt.get("unirec") or {}).get("signature")
    if not isinstance(saved, dict):
        raise IncompatibleCheckpointError(f"{path}: carries no config signature (not written by unirec-train, or "
                                          "by an older version); start a new run dir instead of resume")
    refuse_other_config(path, saved, signature)


def refuse_other_config(path: Path, saved: dict[str, Any], signature: dict[str, str]) -> None:
    """Raise naming one differing key (and how many differ) when ``saved`` is not ``signature``."""
    diff = sorted(k for k in set(saved) | set(signature) if saved.get(k) != signature.get(k))
    if diff:
        k = diff[0]
        raise IncompatibleCheckpointError(
            f"{path}: written by a different config ({len(diff)} key(s) differ, e.g. {k}: saved "
            f"{saved.get(k)!r} vs now {signature.get(k)!r}); start a new run dir instead of resume")


def check_resumable(path: Path, module: nn.Module, signature: dict[str, str]) -> None:
    """Raise :class:`IncompatibleCheckpointError` naming what differs; never unpickles arbitrary objects."""
    ckpt = _load(path)
    check_signature(path, signature, ckpt)
    state = ckpt.get("state_dict", {})
    own = module.state_dict()
    for k, v in own.items():
        if k not in state:
            raise IncompatibleCheckpointError(f"{path}: has no parameter {k!r}; it belongs to another model")
        if tuple(state[k].shape) != tuple(v.shape):
            raise IncompatibleCheckpointError(f"{path}: parameter {k!r} has shape {tuple(state[k].shape)}, "
                                              f"this model needs {tuple(v.shape)}")
    extra = sorted(set(state) - set(own))
    if extra:
        raise IncompatibleCheckpointError(f"{path}: has parameter {extra[0]!r} this model does not have")
