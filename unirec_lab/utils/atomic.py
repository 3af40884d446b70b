"""Atomic writes and directory publishing: a reader never sees a half-written file or a vanishing directory.

Files are written to a temp file in the same directory, fsynced, then renamed over the target (and the directory
fsynced); a full disk becomes :class:`DiskFullError`, one line naming the file, with nothing under the final name. Directories
(scenario bundles) are never replaced in place: each build is its own *version* directory and the public name
is a symlink that is swapped atomically to the new version. A reader that resolved the old version keeps
reading it; superseded versions and the temp dirs of killed writers are removed by age (:func:`remove_stale`).

Everything is created with the user's umask (0644 / 0755 under umask 022), like ``open()`` / ``mkdir()``
would, not with ``tempfile``'s private 0600 / 0700, so a shared results dir or cache stays readable.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """A write ran out of space (ENOSPC) or quota (EDQUOT); nothing was left under the final name."""

    def __init__(self, path: Path | str, cause: OSError) -> None:
        what = "disk quota exceeded" if cause.errno == errno.EDQUOT else "no space left on device"
        super().__init__(cause.errno, f"{path}: {what} while writing it; nothing was written under that name "
                                      f"(free space, or put hydra.run.dir / UNIREC_CACHE_DIR on a bigger disk)")
        self.path = str(path)

    def __str__(self) -> str:
        return str(self.strerror)


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS


def atomic_write_with(path: Path | str, write: Callable[[IO[bytes]], None]) -> None:
    """``write(f)`` into a temp file in ``path``'s directory, fsync, rename over ``path``, fsync the directory.
    Any failure removes the temp file (``path`` keeps its old content); ENOSPC / EDQUOT -> :class:`DiskFullError`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp creates 0600
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
    except OSError as e:
        if is_disk_full(e) and not isinstance(e, DiskFullError):
            raise DiskFullError(path, e) from e
        raise


def _fsync_dir(d: Path) -> None:
    """Make the rename itself durable (best effort: not every filesystem lets a directory be fsynced)."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)



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


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write ``text`` (UTF-8) to a temp file in the same directory, fsync it, then rename over ``path``."""
    atomic_write_with(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_json(path: Path | str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    atomic_write_with(path, lambda f: f.write(data))


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
