"""Run identity: where a run lives, before Hydra creates anything, and what in a run dir may be resumed.

``hydra.run.dir`` is ``${unirec_run_dir:${resume},<outputs>,${experiment_name},${now:...}}``: a fresh run gets
``<outputs>/<experiment_name>/<time>_<uid>`` (the uid makes two runs started in the same second distinct), and
``resume=<dir>`` makes ``<dir>`` itself the run dir, so a resume writes nowhere else. Bad input is refused here,
before Hydra creates the dir, with one line on stderr and exit code 2 (an exception raised inside an interpolation
would reach the user as a long OmegaConf traceback).
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from pathlib import Path
from typing import Any, NoReturn

from omegaconf import OmegaConf

# one per process: stable however often Hydra resolves hydra.run.dir
RUN_UID = f"{os.getpid():x}{secrets.token_hex(3)}"
_NAME_OK = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.=,+-]*$")
RESULT_FILE = "result.json"
SUPERSEDED_FILE = "result.superseded.json"
FAILURE_FILE = "failure.json"


class RunDirError(ValueError):
    """``resume`` / ``experiment_name`` do not name a usable run dir; the message says which and why."""


def check_experiment_name(name: Any) -> str:
    """``experiment_name`` becomes a directory name: no path separators, no ``..``, nothing hidden or empty."""
    s = str(name)
    if not _NAME_OK.match(s) or ".." in s:
        raise RunDirError(f"experiment_name={s!r}: expected a plain name (letters, digits, _ . = , + -; no '/', "
                          f"no '..', not starting with '.' or '-')")
    return s


def is_resume_dir(resume: Any) -> bool:
    """``resume`` names a run dir (not ``true``/``false``)."""
    return isinstance(resume, str) and resume.strip().lower() not in ("", "true", "false")


def resumable_reason(run_dir: Path) -> str | None:
    """``None`` when ``run_dir`` holds something a resume can continue from, else what is missing."""
    if not run_dir.is_dir():
        return f"{run_dir} is not a directory"
    found = [run_dir / "checkpoints" / "latest.ckpt", *run_dir.glob("per_scenario/*/checkpoints/latest.ckpt"),
             *run_dir.glob("per_scenario/*/part.json")]
    if any(p.is_file() for p in found):
        return None
    return (f"{run_dir} holds no resumable run (no checkpoints/latest.ckpt or per_scenario/*/part.json); start "
            f"it again without resume")


def _refuse(msg: str) -> NoReturn:
    print(f"error: {msg}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def resolve_run_dir(resume: Any, outputs: str, experiment_name: Any, stamp: str) -> str:
    """The ``unirec_run_dir`` resolver: only reached when ``hydra.run.dir`` was not given on the command line."""
    try:
        if is_resume_dir(resume):
            reason = resumable_reason(Path(resume))
            if reason:
                raise RunDirError(f"resume={resume}: {reason}")
            return str(Path(resume))
        if resume is True or str(resume).lower() == "true":
            raise RunDirError("resume=true: say which run to continue, resume=<run dir> (or resume=true with "
                              "hydra.run.dir=<run dir>)")
        return f"{outputs}/{check_experiment_name(experiment_name)}/{stamp}_{RUN_UID}"
    except RunDirError as e:
        _refuse(str(e))


def run_dir_of(cfg: Any) -> Path:
    """The run's own directory: ``resume=<dir>`` when given, else Hydra's output dir."""
    resume = cfg.get("resume")
    return Path(resume) if is_resume_dir(resume) else Path(cfg.paths.output_dir)


def supersede_result(run_dir: Path) -> Path | None:
    """A continuation starts: the old ``result.json`` no longer describes the run (a report must not use it)."""
    old = run_dir / RESULT_FILE
    if not old.is_file():
        return None
    new = run_dir / SUPERSEDED_FILE
    os.replace(old, new)
    return new


def clear_stale_failure(run_dir: Path) -> None:
    """After a successful (resumed) run, an earlier attempt's ``failure.json`` is no longer true."""
    (run_dir / FAILURE_FILE).unlink(missing_ok=True)


def resolve_name(experiment_name: Any) -> str:
    """The ``unirec_name`` resolver (``hydra.sweep.dir``): a checked ``experiment_name``, or one line and exit 2."""
    try:
        return check_experiment_name(experiment_name)
    except RunDirError as e:
        _refuse(str(e))


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("unirec_run_dir"):
        OmegaConf.register_new_resolver("unirec_run_dir", resolve_run_dir, use_cache=True)
    if not OmegaConf.has_resolver("unirec_name"):
        OmegaConf.register_new_resolver("unirec_name", resolve_name, use_cache=True)
