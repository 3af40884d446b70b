"""``result.json`` as a typed, versioned :class:`RunRecord`: one writer (:meth:`RunRecord.write`), one reader
(:meth:`RunRecord.read`), so every tool sees the same shape and a bad file is one line, never a traceback.

Version 1 (records without ``schema_version``, or with the older ``result_version``, are version 1; a newer
version than this code knows is refused). ``status`` is ``"completed"`` unless the run recorded otherwise; a
completed record has ``model`` (non-empty str), ``seed`` (int), ``scenarios`` (non-empty list of str) and
``test`` = ``{scenario: {metric: number}}`` (NaN / infinity allowed, rendered as such). ``test_slices`` =
``{scenario: {slice: {metric: number}}}``. The other fields are optional and type-checked when present. Keys this
version does not know are kept in ``extra`` when reading (old files stay readable) and refused when writing.
"""

from __future__ import annotations

import json
import platform
import subprocess
from dataclasses import dataclass, field, fields
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


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _kind(v: Any) -> str:
    return "null" if v is None else {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(v), f"{type(v).__name__} {v!r}")


# optional fields: (check, what was expected); null is always allowed (= not recorded)
OPTIONAL_TYPES: dict[str, tuple[Any, str]] = {
    **{k: (lambda v: isinstance(v, str), "a string") for k in ("mode", "description", "run_name", "experiment",
                                                               "git_sha", "error")},
    **{k: (lambda v: isinstance(v, dict), "an object") for k in ("config", "config_flat", "packages", "selection",
                                                                 "val", "test_full_ranking", "data")},
    **{k: (_is_int, "an integer") for k in ("num_parameters", "train_rows", "train_targets")},
    **{k: (_is_number, "a number") for k in ("wall_seconds", "train_seconds", "train_samples_per_second",
                                             "eval_seconds", "train_targets_per_second", "seconds_per_epoch")},
}


def _check_metrics(metrics: Any, where: str) -> None:
    if not isinstance(metrics, dict):
        raise RecordError(f"{where} is {_kind(metrics)}, expected {{metric: number}}")
    for m, v in metrics.items():
        if not _is_number(v):
            raise RecordError(f"{where}.{m} is {_kind(v) if not isinstance(v, str) else repr(v)}, expected a number")


def _check_version(rec: dict[str, Any]) -> int:
    version = rec.get("schema_version", rec.get("result_version", 1))
    if not _is_int(version) or version < 1:
        raise RecordError(f"schema_version is {version!r}, expected a positive integer")
    if version > SCHEMA_VERSION:
        raise RecordError(f"schema_version {version} is newer than this unirec_lab reads ({SCHEMA_VERSION})")
    return version


def _check_completed(rec: dict[str, Any]) -> None:
    for key in ("model", "seed", "scenarios", "test"):
        if key not in rec:
            raise RecordError(f"completed record lacks {key!r}")
    if not isinstance(rec["model"], str) or not rec["model"]:
        raise RecordError(f"model is {_kind(rec['model'])}, expected a non-empty string")
    if not _is_int(rec["seed"]):
        raise RecordError(f"seed is {_kind(rec['seed'])}, expected an integer")
    scen = rec["scenarios"]
    if not isinstance(scen, list) or not scen or not all(isinstance(s, str) for s in scen):
        raise RecordError(f"scenarios is {_kind(scen)}, expected a non-empty list of scenario names")
    test = rec["test"]
    if not isinstance(test, dict) or not test:
        raise RecordError(f"test is {_kind(test)}, expected {{scenario: {{metric: number}}}}")
    for sc, metrics in test.items():
        _check_metrics(metrics, f"test.{sc}")


def _check_slices(slices: Any) -> None:
    if not isinstance(slices, dict):
        raise RecordError(f"test_slices is {_kind(slices)}, expected {{scenario: {{slice: {{metric: number}}}}}}")
    for sc, per in slices.items():
        if not isinstance(per, dict):
            raise RecordError(f"test_slices.{sc} is {_kind(per)}, expected {{slice: {{metric: number}}}}")
        for sl, metrics in per.items():
            _check_metrics(metrics, f"test_slices.{sc}.{sl}")


def check_record(rec: Any) -> int:
    """Raise :class:`RecordError` (without the file name) unless ``rec`` has the record's shape; its version."""
    if not isinstance(rec, dict):
        raise RecordError(f"expected a JSON object, got {_kind(rec)}")
    version = _check_version(rec)
    status = rec.get("status", "completed")
    if not isinstance(status, str):
        raise RecordError(f"status is {_kind(status)}, expected a string")
    if "overrides" in rec and not (isinstance(rec["overrides"], list)
                                   and all(isinstance(o, str) for o in rec["overrides"])):
        raise RecordError("overrides is not a list of strings")
    if status == "completed":
        _check_completed(rec)
    for key, (ok, expected) in OPTIONAL_TYPES.items():
        if rec.get(key) is not None and not ok(rec[key]):
            raise RecordError(f"{key} is {_kind(rec[key])}, expected {expected}")
    if rec.get("test_slices"):
        _check_slices(rec["test_slices"])
    return version


@dataclass
class RunRecord:
    """One run's ``result.json``. ``None`` = not recorded (left out of the file)."""

    schema_version: int = SCHEMA_VERSION
    status: str = "completed"
    model: str | None = None
    mode: str | None = None  # joint | separate | single
    description: str | None = None
    run_name: str | None = None
    experiment: str | None = None
    scenarios: list[str] | None = None
    seed: int | None = None
    overrides: list[str] = field(default_factory=list)
    config: dict[str, Any] | None = None  # the resolved Hydra config
    config_flat: dict[str, Any] | None = None  # curated flat config (W&B); stands in for config in old records
    git_sha: str | None = None
    packages: dict[str, str] | None = None
    selection: dict[str, Any] | None = None  # monitor, best epoch / score, checkpoint; or one per scenario
    val: dict[str, dict[str, float]] | None = None  # validation metrics of the selected epoch (optional)
    test: dict[str, dict[str, float]] | None = None
    test_slices: dict[str, dict[str, dict[str, float]]] | None = None
    test_full_ranking: dict[str, Any] | None = None
    val_history: Any = None
    num_parameters: int | None = None
    wall_seconds: float | None = None
    train_rows: int | None = None
    train_seconds: float | None = None
    train_samples_per_second: float | None = None
    eval_seconds: float | None = None
    train_targets: int | None = None
    train_targets_per_second: float | None = None
    seconds_per_epoch: float | None = None
    data: dict[str, Any] | None = None  # per-scenario data statistics
    error: str | None = None  # why a run that was not completed stopped
    extra: dict[str, Any] = field(default_factory=dict)  # keys of a file this version does not know

    @classmethod
    def from_dict(cls, rec: Any, strict: bool = False) -> RunRecord:
        """The record in ``rec`` (parsed JSON); :class:`RecordError` (one line, no file name) for a bad shape.
        ``strict``: unknown keys are an error too (the writer's check), else they go to ``extra``."""
        version = check_record(rec)
        known = {f.name for f in fields(cls)} - {"extra", "schema_version"}
        unknown = [k for k in rec if k not in known and k not in ("schema_version", "result_version")]
        if strict and unknown:
            raise RecordError(f"unknown key(s) {', '.join(map(repr, unknown))}: add them to RunRecord "
                              f"(unirec_lab/results/record.py) first")
        return cls(schema_version=version, **{k: v for k, v in rec.items() if k in known},
                   extra={k: rec[k] for k in unknown})

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: every recorded field (``None`` = not recorded, left out), then ``extra``."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**{k: v for k, v in out.items() if v is not None}, **self.extra}

    @classmethod
    def read(cls, path: Path | str) -> RunRecord:
        """The record in ``path``; :class:`RecordError` ``<path>: <problem>`` when unreadable or malformed."""
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
            raise RecordError(f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})", path,
                              "unreadable") from None
        try:
            return cls.from_dict(rec)
        except RecordError as e:
            raise RecordError(e.problem, path) from None

    def write(self, run_dir: Path | str) -> Path:
        """Check the record as :meth:`read` will (unknown keys refused), then write ``<run_dir>/result.json``
        atomically."""
        path = Path(run_dir) / RESULT_FILE
        atomic_write_json(path, _checked(self.to_dict(), path))
        return path


def _checked(rec: dict[str, Any], path: Path) -> dict[str, Any]:
    """``rec`` if :meth:`RunRecord.read` would accept it and it has no unknown keys; :class:`RecordError` else."""
    try:
        RunRecord.from_dict(rec, strict=True)
    except RecordError as e:
        raise RecordError(f"refusing to write a record RunRecord.read would reject: {e.problem}", path) from None
    return rec


def write_result(run_dir: Path | str, record: dict[str, Any]) -> Path:
    """Write a run's record given as a dict (what ``train.py`` builds) as a checked :class:`RunRecord`."""
    rec = {"schema_version": SCHEMA_VERSION, **record}
    return RunRecord.from_dict(_checked(rec, Path(run_dir) / RESULT_FILE), strict=True).write(run_dir)


