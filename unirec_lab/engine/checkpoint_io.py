"""The one way checkpoints reach and leave the disk: atomic, relocatable, and never trusted with paths.

Lightning's ``ModelCheckpoint`` keeps file paths in its state (``best_model_path``, ``best_k_models``, ...), saves
them into every checkpoint and, on resume, restores them and later *deletes* files it thinks it wrote. A crafted
checkpoint could so make a resume delete any file, and a copied run dir would test the original dir's weights.
:class:`RunCheckpointIO` therefore

* saves those paths as file names relative to the checkpoint's own directory (a run dir can be moved or copied),
* on load rebuilds them inside the directory the checkpoint is loaded from, refusing (one line) any that would
  resolve outside it or that is not a ``.ckpt`` file,
* deletes only files inside directories it has itself written checkpoints to,
* writes to a temp file in the same directory, fsyncs and renames (no partial file under a final name; ENOSPC /
  EDQUOT becomes one line naming the file).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from unirec_lab.engine.checkpoints import IncompatibleCheckpointError
from unirec_lab.utils.atomic import atomic_write_with

PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")
RELATIVE_DIR = "."  # ``dirpath`` as saved: "the directory this checkpoint file is in"


class UnsafeCheckpointError(IncompatibleCheckpointError):
    """A checkpoint's callback state names a file outside the run's checkpoint dir."""


def _is_path_state(state: Any) -> bool:
    return isinstance(state, dict) and "best_model_path" in state


def _relative(p: str, base: str) -> str:
    return os.path.relpath(os.path.abspath(p), os.path.abspath(base)) if p else p


def to_relative(checkpoint: dict[str, Any], ckpt_dir: Path) -> dict[str, Any]:
    """A shallow copy of ``checkpoint`` whose callback paths are relative to ``ckpt_dir`` (the file's directory)."""
    callbacks = checkpoint.get("callbacks")
    if not isinstance(callbacks, dict):
        return checkpoint
    out_cbs = {}
    for key, state in callbacks.items():
        if _is_path_state(state):
            base = str(state.get("dirpath") or ckpt_dir)
            state = {**state, **{k: _relative(state[k], base) for k in PATH_KEYS if state.get(k)},
                     "dirpath": RELATIVE_DIR}
            if isinstance(state.get("best_k_models"), dict):
                state["best_k_models"] = {_relative(p, base): v for p, v in state["best_k_models"].items()}
        out_cbs[key] = state
    return {**checkpoint, "callbacks": out_cbs}


def _inside(p: str, stored_dir: str | None, ckpt_dir: str, source: Path, key: str) -> str:
    """``p`` (relative to the checkpoint's dir, or absolute under its saved ``dirpath``) rebuilt in ``ckpt_dir``."""
    if not isinstance(p, str):
        raise UnsafeCheckpointError(f"{source}: callback state {key}={p!r} is not a file name; refusing to resume")
    if os.path.isabs(p):  # written before paths were stored relative: must lie under its own saved dirpath
        rel = os.path.relpath(os.path.normpath(p), os.path.normpath(stored_dir)) if stored_dir and \
            os.path.isabs(stored_dir) else os.pardir
    else:
        rel = os.path.normpath(p)
    resolved = os.path.realpath(os.path.join(ckpt_dir, rel))
    if rel.split(os.sep)[0] == os.pardir or os.path.dirname(resolved) != ckpt_dir or not p.endswith(".ckpt"):
        raise UnsafeCheckpointError(f"{source}: callback state {key}={p!r} points outside the run's checkpoint dir "
                                    f"{ckpt_dir} (or is not a .ckpt file); refusing to resume from it")
    return resolved


def to_run_dir(checkpoint: dict[str, Any], source: Path) -> dict[str, Any]:
    """Callback paths of a loaded checkpoint rebuilt inside ``source``'s directory; anything escaping is refused."""
    callbacks = checkpoint.get("callbacks")
    if not isinstance(callbacks, dict):
        return checkpoint
    ckpt_dir = os.path.realpath(source.parent)
    for state in callbacks.values():
        if not _is_path_state(state):
            continue
        stored = state.get("dirpath")
        stored = None if stored in (None, RELATIVE_DIR) else str(stored)
        for k in PATH_KEYS:
            if state.get(k):
                state[k] = _inside(state[k], stored, ckpt_dir, source, k)
        if isinstance(state.get("best_k_models"), dict):
            state["best_k_models"] = {_inside(p, stored, ckpt_dir, source, "best_k_models"): v
                                      for p, v in state["best_k_models"].items()}
        state["dirpath"] = ckpt_dir  # equal to the callback's own (realpath'd) dirpath: its state is restored
    return checkpoint


class RunCheckpointIO(TorchCheckpointIO):
    """Atomic, relocatable checkpoint files whose stored paths are never trusted (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._written_dirs: set[str] = set()

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        data = to_relative(checkpoint, path.parent)
        atomic_write_with(path, self._writer(data))
        self._written_dirs.add(os.path.realpath(path.parent))

    def _writer(self, checkpoint: dict[str, Any]) -> Callable[[Any], None]:
        return lambda f: torch.save(checkpoint, f)

    def load_checkpoint(self, path: Any, map_location: Any = lambda storage, loc: storage,
                        weights_only: bool | None = None) -> dict[str, Any]:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: checkpoint file not found")
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
        return to_run_dir(ckpt, path)

    def remove_checkpoint(self, path: Any) -> None:
        real = os.path.realpath(path)
        if os.path.dirname(real) not in self._written_dirs or not real.endswith(".ckpt"):
            raise UnsafeCheckpointError(f"refusing to delete {path}: not a checkpoint this run wrote")
        Path(real).unlink(missing_ok=True)
