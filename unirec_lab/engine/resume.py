"""The one trusted resume path: what a resume continues from is decided by our run state, checked up front.

Before anything is trained, every resumable artifact of the run dir (``checkpoints/latest.ckpt``, and in
per-scenario mode each ``per_scenario/<s>/part.json`` and ``.../latest.ckpt``) must carry the current config's
signature (:func:`unirec_lab.engine.checkpoints.run_signature`), or the resume is refused with one line naming a
differing key. Only then is an older ``result.json`` marked superseded: a continuation that is interrupted or fails
leaves no ``result.json`` claiming "completed". Paths inside checkpoints are never trusted
(:mod:`unirec_lab.engine.checkpoint_io`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from unirec_lab.engine.checkpoints import IncompatibleCheckpointError, check_signature, refuse_other_config
from unirec_lab.utils.rundir import RunDirError, resumable_reason, supersede_result

PART_FILE = "part.json"
LATEST = "latest.ckpt"


def latest_checkpoint(run_dir: Path) -> Path | None:
    path = run_dir / "checkpoints" / LATEST
    return path if path.is_file() else None


def part_dirs(run_dir: Path, keys: list[str]) -> dict[str, Path]:
    """Per-scenario mode: each scenario's own sub run dir."""
    return {k: run_dir / "per_scenario" / k for k in keys}


def load_part(sub: Path, signature: dict[str, str]) -> dict[str, Any] | None:
    """A finished scenario's ``part.json`` when it was written by this config; refused (one line) otherwise."""
    path = sub / PART_FILE
    if not path.is_file():
        return None
    try:
        part = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise IncompatibleCheckpointError(f"{path}: unreadable ({' '.join(str(e).split())}); delete it to retrain "
                                          "that scenario") from None
    saved = part.get("signature") if isinstance(part, dict) else None
    if not isinstance(saved, dict):
        raise IncompatibleCheckpointError(f"{path}: has no config signature (written by an older version); delete "
                                          "it to retrain that scenario, or start a new run dir")
    refuse_other_config(path, saved, signature)
    return part


def prepare_resume(run_dir: Path, keys: list[str], separate: bool, signature: dict[str, str],
                   resume_value: Any) -> None:
    """Refuse a resume that has nothing to continue or whose artifacts another config wrote; then supersede the
    old ``result.json`` (the continuation will write a new one only if it completes)."""
    reason = resumable_reason(run_dir)
    if reason:
        raise RunDirError(f"resume={resume_value}: {reason}")
    dirs = list(part_dirs(run_dir, keys).values()) if separate else [run_dir]
    for d in dirs:
        if separate:
            load_part(d, signature)
        ckpt = latest_checkpoint(d)
        if ckpt is not None:
            check_signature(ckpt, signature)
    supersede_result(run_dir)
