"""Find run dirs and load them: completed runs into one frame, everything else as a :class:`Failure` with why.

A run dir holds ``result.json`` (read through :class:`~unirec_lab.results.record.RunRecord`, so a bad file is
listed, never tabulated), ``failure.json`` (the guard's record of a crash), or only ``.hydra/`` /
``checkpoints/`` (still running, or killed).
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from unirec_lab.results.record import RESULT_FILE, RecordError, RunRecord

FAILURE_FILE = "failure.json"
SKIP_DIRS = {".hydra", "checkpoints", "wandb", "csv", "lightning_logs", "__pycache__"}
RUN_COLUMNS = ["run_dir", "model", "mode", "seed", "experiment", "scenarios", "git_sha", "mtime", "config", "test"]


@dataclass
class Failure:
    """A run dir that contributes no numbers, and why."""

    path: str
    status: str  # failed | incomplete | unreadable | invalid | superseded | <status from result.json>
    reason: str
    overrides: list[str] = field(default_factory=list)


def _is_run_dir(files: Iterable[str], dirs: Iterable[str]) -> bool:
    return bool({RESULT_FILE, FAILURE_FILE} & set(files)) or bool({".hydra", "checkpoints"} & set(dirs))


def _walk(top: Path, found: set[Path]) -> None:
    """Add the run dirs under ``top``; a run dir's own sub-dirs (a per-scenario run's parts) are not entered."""
    for root, dirs, files in os.walk(top):
        if _is_run_dir(files, dirs):
            found.add(Path(root))
            dirs[:] = []
        else:
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))


def find_run_dirs(paths: Sequence[str | Path]) -> tuple[list[Path], list[str]]:
    """Run dirs under ``paths`` (dirs or globs); also the inputs that matched nothing.

    A run dir holds ``result.json`` or ``failure.json``, or ``.hydra/`` / ``checkpoints/`` (incomplete run). The
    walk does not descend into a run dir (a per-scenario run's own sub-runs are part of it).
    """
    found: set[Path] = set()
    unmatched: list[str] = []
    for p in map(str, paths):
        matches = sorted(glob.glob(p, recursive=True)) if any(c in p for c in "*?[") else (
            [p] if os.path.exists(p) else [])
        if not matches:
            unmatched.append(p)
        for m in map(Path, matches):
            if not m.is_file():
                _walk(m, found)
            elif m.name in (RESULT_FILE, FAILURE_FILE):
                found.add(m.parent)
    return sorted(found), unmatched


def _read_overrides(run_dir: Path) -> list[str]:
    f = run_dir / ".hydra" / "overrides.yaml"
    if not f.is_file():
        return []
    try:
        from omegaconf import OmegaConf

        return [str(x) for x in OmegaConf.to_container(OmegaConf.load(f))]
    except Exception:  # noqa: BLE001 - a broken overrides file must not hide the run
        return []


def _one_line(text: Any, limit: int = 300) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else "no error message"
    return line if len(line) <= limit else line[: limit - 3] + "..."


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{"a.b.c": value}``; lists become JSON strings."""
    out: dict[str, Any] = {}
    if isinstance(node, dict):
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(node, list | tuple):
        out[prefix] = json.dumps(list(node), sort_keys=True, default=str)
    else:
        out[prefix] = node
    return out


def _load_result(run_dir: Path) -> RunRecord | Failure:
    res = run_dir / RESULT_FILE
    try:
        rec = RunRecord.read(res)
    except RecordError as e:
        return Failure(str(run_dir), e.kind, f"{RESULT_FILE}: {e.problem}", _read_overrides(run_dir))
    if rec.status != "completed":
        return Failure(str(run_dir), rec.status, _one_line(rec.error or f"{RESULT_FILE} status is {rec.status!r}"),
                       list(rec.overrides))
    return rec


def _load_failure(run_dir: Path) -> Failure:
    try:
        rec = json.loads((run_dir / FAILURE_FILE).read_text())
    except (OSError, ValueError) as e:
        return Failure(str(run_dir), "failed", f"{FAILURE_FILE} unreadable: {_one_line(e)}", _read_overrides(run_dir))
    return Failure(str(run_dir), str(rec.get("status", "failed")), _one_line(rec.get("error", "")),
                   list(rec.get("overrides") or _read_overrides(run_dir)))


def _load_one(run_dir: Path) -> RunRecord | Failure:
    if (run_dir / RESULT_FILE).is_file():
        return _load_result(run_dir)
    if (run_dir / FAILURE_FILE).is_file():
        return _load_failure(run_dir)
    has = " and ".join(f"{d}/" for d in (".hydra", "checkpoints") if (run_dir / d).is_dir())
    return Failure(str(run_dir), "incomplete",
                   f"no {RESULT_FILE} (has {has}): still running, or killed before it finished",
                   _read_overrides(run_dir))


def _row(run_dir: Path, rec: RunRecord, slices: bool) -> dict[str, Any]:
    config = flatten(rec.config) if isinstance(rec.config, dict) else dict(rec.config_flat or {})
    return {"run_dir": str(run_dir), "model": rec.model,
            "mode": str(rec.mode or config.get("model.mode") or ""), "seed": rec.seed,
            "experiment": str(rec.experiment or config.get("experiment_name") or ""),
            "scenarios": tuple(rec.scenarios), "git_sha": rec.git_sha or "",
            "mtime": (run_dir / RESULT_FILE).stat().st_mtime, "config": config,
            "test": slice_cells(rec) if slices else rec.test}


def load_runs(paths: Sequence[str | Path], slices: bool = False) -> tuple[pd.DataFrame, list[Failure]]:
    """Completed runs (one row each) and the failed / incomplete / unreadable run dirs under ``paths``.

    Columns: run_dir, model, mode, seed, experiment, scenarios (tuple), git_sha, mtime, config (flat dict of
    the resolved config, or of ``config_flat`` for records without one), test (``{scenario: {metric: value}}``).
    ``slices=True``: ``test`` holds the cold-start slices instead, keyed ``<scenario>/<slice>``
    (``result.json`` ``test_slices``), so every table and test below works on slices unchanged.
    """
    dirs, _ = find_run_dirs(paths)
    rows, failures = [], []
    for d in dirs:
        rec = _load_one(d)
        if isinstance(rec, Failure):
            failures.append(rec)
        else:
            rows.append(_row(d, rec, slices))
    return pd.DataFrame(rows, columns=RUN_COLUMNS), failures


def slice_cells(rec: RunRecord) -> dict[str, dict[str, Any]]:
    """``{"<scenario>/<slice>": metrics}`` from a record's ``test_slices`` (empty for records without)."""
    out: dict[str, dict[str, Any]] = {}
    for sc, per in (rec.test_slices or {}).items():
        for sl, vals in per.items():
            out[f"{sc}/{sl}"] = vals
    return out
