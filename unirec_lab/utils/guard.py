"""Failing well: one clear line for bad input, a ``failure.json`` record, and sweeps that survive a bad job."""

from __future__ import annotations

import logging
import os
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
from unirec_lab.lit.checkpoints import IncompatibleCheckpointError
from unirec_lab.lit.module import NonFiniteLossError
from unirec_lab.utils.atomic import atomic_write_json
from unirec_lab.utils.config import ConfigError

log = logging.getLogger("unirec_lab")
FAILURE_FILE = "failure.json"
# errors caused by the user's config or data: reported in one line, no traceback
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, BundleError, IncompatibleCheckpointError,
                                                 NonFiniteLossError, InstantiationException,
                                                 OmegaConfBaseException, FileNotFoundError, ValueError)


def one_line(e: BaseException) -> str:
    if isinstance(e, InstantiationException) and isinstance(e.__cause__, BundleError):
        e = e.__cause__  # a scenario source refused its config: its own line names the key, Hydra's wrapper adds noise
    msg = " ".join(str(e).split())
    return msg if isinstance(e, USER_ERRORS) else f"{type(e).__name__}: {msg}"


def _full_error() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def _is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def write_failure(cfg: DictConfig, e: BaseException) -> Path | None:
    try:
        run_dir = Path(cfg.paths.output_dir)
        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
        path = run_dir / FAILURE_FILE
        atomic_write_json(path, {"status": "failed", "error": one_line(e), "error_type": type(e).__name__,
                                 "overrides": overrides, "traceback": traceback.format_exc()})
        return path
    except Exception:  # noqa: BLE001 - recording a failure must not hide it
        return None


def run_guarded(fn: Callable[[DictConfig], float], cfg: DictConfig) -> Any:
    try:
        return fn(cfg)
    except Exception as e:
        where = write_failure(cfg, e)
        if _full_error():
            raise
        if _is_multirun():
            log.error("job failed (recorded in %s): %s", where, one_line(e))
            return float("nan")
        if isinstance(e, USER_ERRORS):
            print(f"error: {one_line(e)}", file=sys.stderr, flush=True)
            sys.exit(2)
        raise
