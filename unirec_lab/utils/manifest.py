"""A directory that checks itself: ``MANIFEST.json`` lists each file's size and sha256 and is written last.

A directory whose manifest is present and matches is complete and unmodified: a killed writer leaves no
manifest, a truncated file fails the size check, flipped bytes or a hand-edited file fail the sha256 check.
Hashing is cheap next to reading the files (checking the 10 MB Beauty bundle: ~18 ms; ``read_bundle`` of it:
0.6-2 s), so every check hashes every file, and no cache can trust a stale answer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from unirec_lab.utils.atomic import atomic_write_json

MANIFEST_FILE = "MANIFEST.json"
MANIFEST_VERSION = 1


def file_sha256(path: Path | str, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_manifest(directory: Path, files: Iterable[str]) -> Path:
    """Record ``files`` (names inside ``directory``) with size and sha256; call it after every file is written."""
    entries = {name: {"bytes": (directory / name).stat().st_size, "sha256": file_sha256(directory / name)}
               for name in sorted(files)}
    path = directory / MANIFEST_FILE
    atomic_write_json(path, {"manifest_version": MANIFEST_VERSION, "files": entries})
    return path


def _read_entries(directory: Path) -> dict[str, dict[str, object]] | str:
    path = directory / MANIFEST_FILE
    if not path.is_file():
        return f"no {MANIFEST_FILE}: written by a killed or older prepare"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"{MANIFEST_FILE} unreadable: {e}"
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("bytes"), int) and isinstance(v.get("sha256"), str)
            for v in files.values()):
        return f"{MANIFEST_FILE} is not {{'files': {{name: {{'bytes': int, 'sha256': str}}}}}}"
    return files


def manifest_problem(directory: Path, required: Iterable[str] = ()) -> str | None:
    """``None`` when ``directory`` matches its manifest (and the manifest lists every ``required`` file), else
    the first problem in one line, e.g. ``interactions.parquet: size 123 != 456``."""
    entries = _read_entries(directory)
    if isinstance(entries, str):
        return entries
    unlisted = [name for name in required if name not in entries]
    if unlisted:
        return f"{MANIFEST_FILE} does not list {', '.join(unlisted)}"
    for name, want in entries.items():
        try:
            size = (directory / name).stat().st_size
        except FileNotFoundError:
            return f"{name}: missing"
        if size != want["bytes"]:
            return f"{name}: size {size} != {want['bytes']}"
    for name, want in entries.items():
        try:
            digest = file_sha256(directory / name)
        except OSError as e:
            return f"{name}: unreadable ({e.strerror})"
        if digest != want["sha256"]:
            return f"{name}: sha256 {digest[:12]}... != {str(want['sha256'])[:12]}..."
    return None
