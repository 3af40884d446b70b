"""``result.json``: everything needed to trust, reproduce and tabulate one run. One writer, one reader.

:func:`write_result` writes it atomically with ``schema_version``; :func:`read_record` is the only way the
package reads it back: it checks the shape every consumer relies on and raises :class:`RecordError` with one
line naming the file and the first problem, so a bad file is listed, never tabulated or a traceback.

Shape (version 1; records without ``schema_version``, or with the older ``result_version``, are version 1):
``status`` (str; ``"completed"`` unless the run recorded otherwise), and for completed runs ``model`` (non-empty
str), ``seed`` (int), ``scenarios`` (non-empty list of str) and ``test`` = ``{scenario: {metric: number}}``
(int or float; NaN / infinity are allowed and rendered as such). Optional keys, when present: ``config``
(object), ``overrides`` (list of str), ``test_slices`` = ``{scenario: {slice: {metric: number}}}``.
"""

from __future__ import annotations

import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from unirec_lab.utils.atomic import atomic_write_json

RESULT_FILE = "result.json"
SCHEMA_VERSION = 1
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


class RecordError(ValueError):
    """A ``result.json`` that cannot be read or does not have the record's shape; the message is one line:
    ``<path>: <problem>`` (``problem`` alone is kept for listings that name the file already). ``kind`` is
    ``"unreadable"`` (no JSON to check) or ``"invalid"`` (JSON of the wrong shape)."""

    def __init__(self, problem: str, path: Path | str | None = None, kind: str = "invalid") -> None:
        self.problem, self.path, self.kind = problem, path, kind
        super().__init__(f"{path}: {problem}" if path is not None else problem)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _kind(v: Any) -> str:
    return "null" if v is None else {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(v), f"{type(v).__name__} {v!r}")


def _check_metrics(metrics: Any, where: str) -> None:
    if not isinstance(metrics, dict):
        raise RecordError(f"{where} is {_kind(metrics)}, expected {{metric: number}}")
    for m, v in metrics.items():
        if not _is_number(v):
            raise RecordError(f"{where}.{m} is {_kind(v) if not isinstance(v, str) else repr(v)}, expected a number")


def check_record(rec: Any) -> int:
    """Raise :class:`RecordError` (without the file name) unless ``rec`` has the record's shape; its version."""
    if not isinstance(rec, dict):
        raise RecordError(f"expected a JSON object, got {_kind(rec)}")
    version = rec.get("schema_version", rec.get("result_version", 1))
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RecordError(f"schema_version is {version!r}, expected a positive integer")
    if version > SCHEMA_VERSION:
        raise RecordError(f"schema_version {version} is newer than this unirec_lab reads ({SCHEMA_VERSION})")
    status = rec.get("status", "completed")
    if not isinstance(status, str):
        raise RecordError(f"status is {_kind(status)}, expected a string")
    if "overrides" in rec and not (isinstance(rec["overrides"], list)
                                   and all(isinstance(o, str) for o in rec["overrides"])):
        raise RecordError("overrides is not a list of strings")
    if status != "completed":
        return version
    for key in ("model", "seed", "scenarios", "test"):
        if key not in rec:
            raise RecordError(f"completed record lacks {key!r}")
    if not isinstance(rec["model"], str) or not rec["model"]:
        raise RecordError(f"model is {_kind(rec['model'])}, expected a non-empty string")
    if not isinstance(rec["seed"], int) or isinstance(rec["seed"], bool):
        raise RecordError(f"seed is {_kind(rec['seed'])}, expected an integer")
    scen = rec["scenarios"]
    if not isinstance(scen, list) or not scen or not all(isinstance(s, str) for s in scen):
        raise RecordError(f"scenarios is {_kind(scen)}, expected a non-empty list of scenario names")
    test = rec["test"]
    if not isinstance(test, dict) or not test:
        raise RecordError(f"test is {_kind(test)}, expected {{scenario: {{metric: number}}}}")
    for sc, metrics in test.items():
        _check_metrics(metrics, f"test.{sc}")
    if "config" in rec and not isinstance(rec["config"], dict):
        raise RecordError(f"config is {_kind(rec['config'])}, expected an object")
    slices = rec.get("test_slices") or {}
    if not isinstance(slices, dict):
        raise RecordError(f"test_slices is {_kind(slices)}, expected {{scenario: {{slice: {{metric: number}}}}}}")
    for sc, per in slices.items():
        if not isinstance(per, dict):
            raise RecordError(f"test_slices.{sc} is {_kind(per)}, expected {{slice: {{metric: number}}}}")
        for sl, metrics in per.items():
            _check_metrics(metrics, f"test_slices.{sc}.{sl}")
    return version


def read_record(path: Path | str) -> dict[str, Any]:
    """The record in ``path`` (a ``result.json``), with ``schema_version`` filled in; :class:`RecordError` else."""
    path = Path(path)
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError("not found", path, "unreadable") from None
    except OSError as e:
        raise RecordError(f"unreadable ({e.strerror})", path, "unreadable") from None
    except UnicodeDecodeError as e:
        raise RecordError(f"not UTF-8 text (byte {e.start})", path, "unreadable") from None
    except json.JSONDecodeError as e:
        raise RecordError(f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})", path, "unreadable") from None
    try:
        version = check_record(rec)
    except RecordError as e:
        raise RecordError(e.problem, path) from None
    return {**rec, "schema_version": version}


def write_result(run_dir: Path | str, record: dict[str, Any]) -> Path:
    """Check ``record`` against the shape :func:`read_record` accepts, then write it atomically."""
    path = Path(run_dir) / RESULT_FILE
    rec = {"schema_version": SCHEMA_VERSION, **record}
    try:
        check_record(rec)
    except RecordError as e:
        raise RecordError(f"refusing to write a record read_record would reject: {e.problem}", path) from None
    atomic_write_json(path, rec)
    return path
