"""Raw-data plumbing shared by the real-scenario loaders.

- where the raw data lives (:func:`default_raw_dir`: env ``UNIREC_RAW_DIR``, else ``../shared/data`` from the
  working directory or ``$UNIREC_ROOT``, the rule of ``conf/paths/default.yaml``);
- the ``MANIFEST.tsv`` format (``file bytes sha256 source``) that pins every raw file;
- sha256 of a file, cached in memory per ``(path, size, mtime)`` so a cached re-run does not re-hash;
- line-numbered parsers for the text formats the datasets use.

Every failure raises :class:`RawDataError` (a :class:`~unirec_lab.data.schema.BundleError`) whose message names
the file and what is wrong. A dataset folder and its checks are :class:`~unirec_lab.data.scenarios.base.RawDataset`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unirec_lab.data.schema import BundleError
from unirec_lab.utils.lazy import lazy_import
from unirec_lab.utils.manifest import file_sha256

pd = lazy_import("pandas")  # imported on first use: a cached job never needs it

MANIFEST = "MANIFEST.tsv"
_SHA_CACHE: dict[tuple[str, int, int], str] = {}


class RawDataError(BundleError):
    """A raw data file is missing, corrupt or does not match its manifest."""


def default_raw_dir() -> Path:
    """``$UNIREC_RAW_DIR`` if set, else ``<root>/../shared/data`` with root = ``$UNIREC_ROOT`` or the working
    directory (the rule of conf/paths/default.yaml; never relative to the installed package)."""
    env = os.environ.get("UNIREC_RAW_DIR")
    root = Path(os.environ.get("UNIREC_ROOT") or Path.cwd())
    return Path(env) if env else root.parent / "shared" / "data"


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file, cached per (resolved path, size, mtime_ns)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    hit = _SHA_CACHE.get(key)
    if hit is not None:
        return hit
    digest = file_sha256(path, chunk)
    _SHA_CACHE[key] = digest
    return digest


def clear_sha_cache() -> None:
    """Forget every cached digest (scripts/prepare_benchmark.py times a cold prepare with it)."""
    _SHA_CACHE.clear()


@dataclass(frozen=True)
class ManifestEntry:
    """One row of a ``MANIFEST.tsv``: a file, its size and sha256, and where it comes from (a URL or a note)."""

    name: str
    size: int
    sha256: str
    source: str = ""


def manifest_entries(path: Path) -> list[ManifestEntry]:
    """Parse ``MANIFEST.tsv`` (header ``file bytes sha256 source``); a bad row is one line naming it."""
    out: list[ManifestEntry] = []
    for lineno, line in enumerate(read_lines(path), 1):
        if not line.strip() or (lineno == 1 and line.startswith("file\t")):
            continue
        parts = line.split("\t")
        if len(parts) < 3 or not parts[1].isdigit() or len(parts[2]) != 64:
            raise RawDataError(f"{path}:{lineno}: expected 'file<TAB>bytes<TAB>sha256<TAB>source', "
                               f"got {line[:80]!r}")
        out.append(ManifestEntry(parts[0], int(parts[1]), parts[2].lower(), parts[3] if len(parts) > 3 else ""))
    return out


def read_manifest(path: Path) -> dict[str, tuple[int, str]]:
    """``MANIFEST.tsv`` as ``{file: (bytes, sha256)}`` (what a loader checks its raw files against)."""
    return {e.name: (e.size, e.sha256) for e in manifest_entries(path)}


# --------------------------------------------------------------------------------------------- parsing helpers


def utf8_error(path: Path) -> RawDataError:
    """The first UTF-8 error of a file as ``file:line: ...`` (re-reads the file: a decoder that failed on a
    chunk, like pandas', only knows the offset within that chunk)."""
    data = Path(path).read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        return RawDataError(f"{path}:{line}: not valid UTF-8 text (byte 0x{data[e.start]:02x} at column {col}, "
                            f"file offset {e.start}: {e.reason})")
    return RawDataError(f"{path}: not valid UTF-8 text")


def read_json(path: Path) -> object:
    """A UTF-8 JSON file; a decode or syntax error is one line with ``file:line``."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise utf8_error(path) from None
    except json.JSONDecodeError as e:
        raise RawDataError(f"{path}:{e.lineno}: not valid JSON ({e.msg} at column {e.colno})") from None


def data_line(path: Path, row: int, sep: str) -> int:
    """1-based file line of data row ``row`` (0-based) of a headerless table pandas read with
    ``skip_blank_lines``: lines holding only spaces, tabs and CRs (other than ``sep``) are not rows but are
    lines. Error path only: it re-reads the file."""
    blank = "".join(c for c in " \t\r" if c != sep).encode()
    lines = Path(path).read_bytes().split(b"\n")
    rows = np.flatnonzero(np.fromiter((bool(ln.strip(blank)) for ln in lines), dtype=bool, count=len(lines)))
    return int(rows[row]) + 1 if row < len(rows) else len(lines)


def read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 text file without their line ends (a trailing empty line is dropped)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise utf8_error(path) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.rstrip("\r") for ln in lines]


def parse_int_list(line: str, path: Path, lineno: int, sep: str | None = ",") -> list[int]:
    """``"1,2,3"`` -> ``[1, 2, 3]``; a bad token raises :class:`RawDataError` naming file and line."""
    parts = line.strip().split(sep)
    if sep is not None and parts and parts[-1] == "":  # tolerate one trailing separator
        parts.pop()
    try:
        return [int(p) for p in parts]
    except ValueError:
        bad = next(p for p in parts if not _is_int(p))
        raise RawDataError(f"{path}:{lineno}: expected integers, found {bad!r} in {line[:60]!r}") from None


def parse_int_array(line: str, path: Path, lineno: int, sep: str = ",") -> np.ndarray:
    """Fast ``"1,2,3"`` -> int64 array (numpy's C parser); falls back to :func:`parse_int_list` to name a bad
    token with its line number."""
    stripped = line.strip()
    if stripped.endswith(sep):
        stripped = stripped[: -len(sep)]
    if stripped:
        try:
            arr = np.fromstring(stripped, dtype=np.int64, sep=sep)
            if len(arr) == stripped.count(sep) + 1:
                return arr
        except ValueError:
            pass
    if not stripped:
        raise RawDataError(f"{path}:{lineno}: expected a {sep!r}-separated list of integers, got an empty line")
    return np.asarray(parse_int_list(stripped, path, lineno, sep), dtype=np.int64)


def _is_int(s: str) -> bool:
    try:
        int(s)
        return True
    except ValueError:
        return False


def read_int_table(path: Path, ncols: int, sep: str, names: list[str]) -> pd.DataFrame:
    """A headerless table of ``ncols`` integer columns, parsed vectorised; a bad line is reported by number."""
    try:
        df = pd.read_csv(path, sep=sep, header=None, names=names, dtype=np.int64, engine="c",
                         skip_blank_lines=True)
        if df.shape[1] == ncols and not df.isna().any().any():
            return df
    except (ValueError, pd.errors.ParserError):
        pass
    for lineno, line in enumerate(read_lines(path), 1):  # slow path only to name the bad line
        if not line.strip():
            continue
        parts = line.split(sep)
        if len(parts) != ncols or not all(_is_int(p) for p in parts):
            raise RawDataError(f"{path}:{lineno}: expected {ncols} {sep!r}-separated integers, got {line[:80]!r}")
    raise RawDataError(f"{path}: could not be parsed as {ncols} {sep!r}-separated integer columns")
