"""``result.json``: everything needed to trust, reproduce and tabulate one run. Written atomically."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from unirec_lab.utils.atomic import atomic_write_json

RESULT_FILE = "result.json"
RESULT_VERSION = 1
PACKAGES = ("unirec_lab", "torch", "pytorch-lightning", "hydra-core", "omegaconf", "torchmetrics", "pandas",
            "numpy", "pyarrow", "wandb")


def git_sha(cwd: Path | None = None) -> str:
    """The repository's HEAD (with ``-dirty`` when it has uncommitted changes), or ``"unknown"``."""
    here = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def write_result(run_dir: Path | str, record: dict[str, Any]) -> Path:
    path = Path(run_dir) / RESULT_FILE
    atomic_write_json(path, {"result_version": RESULT_VERSION, **record})
    return path
