"""Reading the user's own table files for :class:`~unirec_lab.data.scenarios.table.TableScenario`.

A *file spec* is the YAML mapping ``{path, format, sep, header, names, encoding, sha256}``. ``path`` is one file
or a list of files with the same columns (read in order and concatenated, e.g. a data set published in parts).
Paths are absolute or relative to a base directory (the user's working directory / ``paths.root_dir``); the format
comes from the (first) file's extension unless given. No MANIFEST.tsv is needed: an optional ``sha256`` pins the file. Every failure is one
:class:`TableScenarioError` line naming the file (and the config key) — never a download hint, since the data
is the user's own. Also here: the checks of a config node (plain mapping, unknown keys) and the timestamp column
as an order key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unirec_lab.data.scenarios.raw import RawDataError, sha256_file
from unirec_lab.utils.lazy import lazy_import

pd = lazy_import("pandas")  # imported on first use: a cached job never needs it

FORMATS = ("csv", "tsv", "parquet")
FILE_KEYS = ("path", "format", "sep", "header", "names", "encoding", "sha256")
_EXT = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet"}
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip")


class TableScenarioError(RawDataError):
    """A table scenario's config or files are wrong; the message names the file / key and what was expected."""


def check_keys(node: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    """Unknown keys are typos: fail with the allowed ones instead of silently ignoring them."""
    unknown = sorted(set(node) - set(allowed))
    if unknown:
        raise TableScenarioError(f"{where}: unknown key(s) {unknown}; allowed: {list(allowed)}")


def plain(x: Any) -> Any:
    """Hydra hands nested nodes as DictConfig / ListConfig: make them plain dicts / lists (JSON for the
    fingerprint)."""
    if isinstance(x, Mapping):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, Sequence) and not isinstance(x, str | bytes):
        return [plain(v) for v in x]
    return x


def as_mapping(x: Any, where: str) -> dict[str, Any]:
    x = plain(x) if x is not None else {}
    if not isinstance(x, dict):
        raise TableScenarioError(f"{where} must be a mapping, got {x!r}")
    return x


def order_key(values: pd.Series, path: str, column: str) -> np.ndarray:
    """A timestamp column as an int64 order key: integers as they are, datetimes / date strings as unix
    seconds, fractional numbers by rank (their order is all that matters)."""
    if pd.api.types.is_bool_dtype(values):
        raise TableScenarioError(f"{path}: timestamp column {column!r} holds booleans, expected times")
    if pd.api.types.is_integer_dtype(values):
        return values.to_numpy(np.int64)
    if pd.api.types.is_float_dtype(values):
        v = values.to_numpy(np.float64)
        if np.all(v == np.round(v)) and np.all(np.abs(v) < 2**62):
            return v.astype(np.int64)
        return np.unique(v, return_inverse=True)[1].astype(np.int64).reshape(-1)
    parsed = pd.to_datetime(values, errors="coerce", utc=True)
    bad = parsed.isna().to_numpy()
    if bad.any():
        raise TableScenarioError(f"{path}: timestamp column {column!r} has value {values[bad].iloc[0]!r} that is "
                                 "neither a number nor a date/time")
    return ((parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)  # any unit


def resolve_path(path: str, base_dir: Path) -> Path:
    p = Path(str(path)).expanduser()
    return p if p.is_absolute() else (base_dir / p)


def file_format(spec: Mapping[str, Any], path: Path, where: str) -> str:
    """``format`` when given, else from the extension (``.csv.gz`` counts as ``.csv``)."""
    fmt = spec.get("format")
    if fmt is not None:
        if fmt not in FORMATS:
            raise TableScenarioError(f"{where}.format={fmt!r}, expected one of {list(FORMATS)}")
        return str(fmt)
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSED:
        suffixes = suffixes[:-1]
    fmt = _EXT.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise TableScenarioError(f"{where}.path={str(path)!r}: cannot tell the format from the extension; "
                                 f"set {where}.format to one of {list(FORMATS)}")
    return fmt


def _is_sha(x: Any) -> bool:
    return len(str(x)) == 64 and all(c in "0123456789abcdef" for c in str(x).lower())


def check_file_spec(spec: Mapping[str, Any], base_dir: Path, where: str) -> dict[str, Any]:
    """Validate a file spec without reading the file(s); returns it with absolute ``paths`` and defaults filled
    (``path`` becomes the name used in messages)."""
    check_keys(spec, FILE_KEYS, where)
    raw = spec.get("path")
    if not raw:
        raise TableScenarioError(f"{where}.path is missing (the file, or list of files, to read)")
    many = isinstance(raw, list)
    paths = [str(resolve_path(p, base_dir).resolve()) for p in (raw if many else [raw])]
    fmt = file_format(spec, Path(paths[0]), where)
    header = spec.get("header", True)
    names = spec.get("names")
    if header not in (True, False):
        raise TableScenarioError(f"{where}.header={header!r}, expected true or false")
    if not header and not names:
        raise TableScenarioError(f"{where}: header is false, so give the column names in {where}.names")
    if names is not None and (not isinstance(names, list) or len(set(names)) != len(names)):
        raise TableScenarioError(f"{where}.names={names!r}, expected a list of distinct column names")
    sha = spec.get("sha256")
    shas = (sha if isinstance(sha, list) else [sha]) if sha is not None else [None] * len(paths)
    if len(shas) != len(paths) or not all(x is None or _is_sha(x) for x in shas):
        raise TableScenarioError(f"{where}.sha256={sha!r}, expected 64 hex digits per file ({len(paths)} file(s); "
                                 "a list for a list of paths)")
    sep = spec.get("sep")
    if sep is None and fmt != "parquet":
        sep = "," if fmt == "csv" else "\t"
    shown = paths[0] if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more files)"
    return {"path": shown, "paths": paths, "format": fmt, "sep": sep, "header": bool(header), "names": names,
            "encoding": str(spec.get("encoding") or "utf-8"),
            "sha256": [None if x is None else str(x).lower() for x in shas]}


def file_sha256(spec: Mapping[str, Any], where: str) -> dict[str, str]:
    """sha256 of each file, checked against the pinned ``sha256`` when the config gives one."""
    out = {}
    for path_s, pinned in zip(spec["paths"], spec["sha256"], strict=True):
        path = Path(path_s)
        if not path.is_file():
            raise TableScenarioError(f"{path}: file not found ({where}.path; relative paths resolve against the "
                                     "directory you run from, or paths.root_dir)")
        try:
            digest = sha256_file(path)
        except OSError as e:
            raise TableScenarioError(f"{path}: cannot be read ({e.strerror or e})") from None
        if pinned is not None and digest != pinned:
            raise TableScenarioError(f"{path}: sha256 is {digest} but {where}.sha256 pins {pinned} "
                                     "(the file changed; update the pin if that is intended)")
        out[str(path)] = digest
    return out


def _read_one(path: Path, spec: Mapping[str, Any], where: str) -> pd.DataFrame:
    try:
        if spec["format"] == "parquet":
            df = pd.read_parquet(path)
            if spec["names"]:
                if len(spec["names"]) != df.shape[1]:
                    raise TableScenarioError(f"{path}: {where}.names has {len(spec['names'])} names but the file "
                                             f"has {df.shape[1]} columns {list(df.columns)}")
                df.columns = list(spec["names"])
            return df
        return pd.read_csv(path, sep=spec["sep"], header=0 if spec["header"] else None, names=spec["names"],
                           encoding=spec["encoding"], engine="c" if len(spec["sep"]) == 1 else "python")
    except TableScenarioError:
        raise
    except UnicodeDecodeError:
        raise TableScenarioError(f"{path}: not valid {spec['encoding']} text (set {where}.encoding, e.g. "
                                 "latin-1)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OSError, LookupError) as e:
        msg = " ".join(str(e).split())[:200]
        raise TableScenarioError(f"{path}: cannot be read as {spec['format']} ({where}; {msg})") from None


def read_table(spec: Mapping[str, Any], where: str) -> pd.DataFrame:
    """The file(s) as one DataFrame (columns as the file / ``names`` give them; parts concatenated in order)."""
    file_sha256(spec, where)
    parts = [_read_one(Path(p), spec, where) for p in spec["paths"]]
    for p, df in zip(spec["paths"][1:], parts[1:], strict=True):
        if list(df.columns) != list(parts[0].columns):
            raise TableScenarioError(f"{p}: columns {[str(c) for c in df.columns]} differ from those of "
                                     f"{spec['paths'][0]} {[str(c) for c in parts[0].columns]} ({where}.path)")
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def require_columns(df: pd.DataFrame, wanted: Mapping[str, str | None], path: str | Path, where: str) -> None:
    """Every mapped column must exist; the error lists the columns the file has."""
    for key, col in wanted.items():
        if col is not None and col not in df.columns:
            raise TableScenarioError(f"{path}: column {col!r} ({where}.{key}) not found; columns found: "
                                     f"{[str(c) for c in df.columns]}")
