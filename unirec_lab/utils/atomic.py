"""Atomic writes and directory publishing: a reader never sees a half-written file or a vanishing directory.

Files are written to a temp file in the same directory, fsynced, then renamed over the target. Directories
(scenario bundles) are never replaced in place: each build is its own *version* directory and the public name
is a symlink that is swapped atomically to the new version. A reader that resolved the old version keeps
reading it; superseded versions and the temp dirs of killed writers are removed by age (:func:`remove_stale`).

Everything is created with the user's umask (0644 / 0755 under umask 022), like ``open()`` / ``mkdir()``
would, not with ``tempfile``'s private 0600 / 0700, so a shared results dir or cache stays readable.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any


def current_umask() -> int:
    """The process umask (read from /proc where possible; else set-and-restore, which is not thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_atomic(path: Path | str, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp creates 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write ``text`` (UTF-8) to a temp file in the same directory, fsync it, then rename over ``path``."""
    _write_atomic(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    _write_atomic(path, data)


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """A fresh directory under ``parent`` (created if needed), with umask permissions (mkdtemp makes 0700)."""
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(tmp, 0o777 & ~current_umask())
    return tmp


def _touch(path: Path) -> None:
    try:
        os.utime(path, follow_symlinks=False)
    except OSError:
        pass  # already removed by a concurrent cleanup: nothing to protect


def publish_dir(version_dir: Path, link: Path) -> None:
    """Make ``link`` (a symlink in the same directory) point at ``version_dir``, atomically.

    The version a reader resolved before the swap stays on disk (its mtime is refreshed, so
    :func:`remove_stale` gives its readers the full grace period). A real directory at ``link`` (a cache
    written before versioned publishing) is moved aside first; only that one-time migration has a gap.
    """
    if version_dir.parent.resolve() != link.parent.resolve():
        raise ValueError(f"publish_dir: {version_dir} must be in the same directory as {link}")
    old = link.resolve() if link.is_symlink() else None
    if link.is_dir() and not link.is_symlink():
        aside = link.parent / f".{link.name}.legacy-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(link, aside)
            _touch(aside)
        except FileNotFoundError:
            pass  # a concurrent writer moved it first
    if old is not None and old != version_dir.resolve():
        _touch(old)  # while it is still live: from the swap on, its age counts from now
    tmp_link = link.parent / f".{link.name}.link-{uuid.uuid4().hex[:8]}"
    os.symlink(version_dir.name, tmp_link)
    try:
        os.replace(tmp_link, link)
    except BaseException:
        tmp_link.unlink(missing_ok=True)
        raise


def remove_stale(parent: Path, max_age_s: float, now: float | None = None) -> list[Path]:
    """Remove the hidden entries of ``parent`` (temp dirs of killed writers, superseded versions, leftover temp
    links) older than ``max_age_s`` that no symlink in ``parent`` points at. Returns what was removed."""
    if not parent.is_dir():
        return []
    now = time.time() if now is None else now
    entries = list(parent.iterdir())
    live = {p.resolve() for p in entries if p.is_symlink() and not p.name.startswith(".")}
    removed = []
    for p in entries:
        if not p.name.startswith(".") or (not p.is_symlink() and p.resolve() in live):
            continue
        try:
            if now - p.lstat().st_mtime <= max_age_s:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)  # a concurrent cleaner may be removing it too
            else:
                p.unlink()
        except FileNotFoundError:
            continue
        removed.append(p)
    return removed
