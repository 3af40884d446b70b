"""Checkpoint safety: load with ``weights_only=True`` and refuse a checkpoint written by another config."""

from __future__ import annotations

import zipfile
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


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A Lightning checkpoint (``weights_only``: never unpickles arbitrary objects) holding a ``state_dict``;
    :class:`IncompatibleCheckpointError` in one line naming the file when it is missing, truncated or not one."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is reported the same way
        if isinstance(e, FileNotFoundError):
            why = "file not found"
        elif not zipfile.is_zipfile(path):  # torch.save writes a zip; its directory is at the end
            why = f"not a zip archive: truncated or not a checkpoint, {path.stat().st_size} bytes"
        else:
            why = f"{type(e).__name__}: " + (str(e).strip().splitlines() or [""])[0].split(". ")[0][:200]
        raise IncompatibleCheckpointError(f"{path}: cannot be read as a checkpoint ({why})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise IncompatibleCheckpointError(f"{path}: not a Lightning checkpoint (no state_dict)")
    return ckpt


def check_signature(path: Path, signature: dict[str, str], ckpt: dict[str, Any] | None = None) -> None:
    """Refuse a checkpoint without this config's signature, naming a differing key."""
    ckpt = read_checkpoint(path) if ckpt is None else ckpt
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
    ckpt = read_checkpoint(path)
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
