"""Atomic writes: a reader never sees a half-written file, whatever moment the writer is killed at."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
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


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write ``text`` to a temp file in the same directory, fsync it, then rename over ``path``."""
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path | str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    atomic_write_with(path, lambda f: f.write(data))


def publish_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a fully written directory into place; a concurrent winner is kept and ours discarded."""
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    if final_dir.exists():
        shutil.rmtree(final_dir)
    try:
        os.replace(tmp_dir, final_dir)
    except OSError:
        if final_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)
        else:
            raise
