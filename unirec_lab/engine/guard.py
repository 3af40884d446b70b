"""Failing well: one clear line for bad input, a ``failure.json`` record, and sweeps that survive a bad job."""

from __future__ import annotations

import logging
import os
import shlex
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from unirec_lab.data.schema import BundleError
from unirec_lab.engine.checkpoints import IncompatibleCheckpointError
from unirec_lab.engine.config import ConfigError
from unirec_lab.engine.module import NonFiniteLossError
from unirec_lab.engine.signals import RunInterrupted
from unirec_lab.utils.atomic import DiskFullError, atomic_write_json, is_disk_full
from unirec_lab.utils.memory import MemoryBudgetError
from unirec_lab.utils.rundir import resumable_reason, run_dir_of

log = logging.getLogger("unirec_lab")
FAILURE_FILE = "failure.json"
# errors caused by the user's config or data: reported in one line, no traceback
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, BundleError, IncompatibleCheckpointError,
                                                 NonFiniteLossError, InstantiationException,
                                                 OmegaConfBaseException, FileNotFoundError, ValueError,
                                                 DiskFullError, MemoryBudgetError)


def one_line(e: BaseException) -> str:
    if isinstance(e, InstantiationException) and isinstance(e.__cause__, BundleError):
        e = e.__cause__  # a scenario source refused its config: its own line names the key, Hydra's wrapper adds noise
    msg = " ".join(str(e).split())
    if is_disk_full(e) and not isinstance(e, DiskFullError):  # a write not through atomic_write_with
        return f"{getattr(e, 'filename', None) or 'a file'}: {e.strerror}"
    return msg if isinstance(e, USER_ERRORS) else f"{type(e).__name__}: {msg}"


def _overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def resume_command(cfg: DictConfig) -> str:
    """How to continue this run: its own dir and the overrides that shaped its config."""
    keep = [o for o in _overrides() if not o.startswith(("resume=", "+resume="))]
    return shlex.join(["unirec-train", f"resume={run_dir_of(cfg)}", *keep])


def _full_error() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def _is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def write_failure(cfg: DictConfig, e: BaseException, extra: dict[str, Any] | None = None) -> Path | None:
    try:
        path = run_dir_of(cfg) / FAILURE_FILE
        status = "interrupted" if isinstance(e, RunInterrupted) else "failed"
        atomic_write_json(path, {"status": status, "error": one_line(e), "error_type": type(e).__name__,
                                 "overrides": _overrides(), "traceback": traceback.format_exc(), **(extra or {})})
        return path
    except Exception:  # noqa: BLE001 - recording a failure must not hide it
        return None


def _interrupted(cfg: DictConfig, e: RunInterrupted) -> None:
    """One line saying how to continue, ``failure.json`` with status "interrupted", exit 128 + signal."""
    run_dir = run_dir_of(cfg)
    if resumable_reason(run_dir) is None:
        key, how = "resume_command", resume_command(cfg)
        line = f"{e}: run {run_dir} stopped; continue with: {how}"
    else:
        key, how = "restart_command", shlex.join(["unirec-train", *_overrides()])
        line = f"{e}: run {run_dir} stopped before any epoch finished (nothing to resume); start again: {how}"
    write_failure(cfg, e, {"signal": e.signal_name, key: how})
    print(line, file=sys.stderr, flush=True)
    sys.exit(e.exit_code)


def run_guarded(fn: Callable[[DictConfig], float], cfg: DictConfig) -> Any:
    try:
        return fn(cfg)
    except RunInterrupted as e:
        _interrupted(cfg, e)
    except Exception as e:
        where = write_failure(cfg, e)
        if _full_error():
            raise
        if _is_multirun():
            log.error("job failed (recorded in %s): %s", where, one_line(e))
            return float("nan")
        if isinstance(e, USER_ERRORS) or is_disk_full(e):
            print(f"error: {one_line(e)}", file=sys.stderr, flush=True)
            sys.exit(2)
        raise
