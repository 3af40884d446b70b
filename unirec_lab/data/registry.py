"""The datasets the downloader knows, read from the manifests shipped inside the package.

``manifests/<domain>/<dataset>.tsv`` are copies of ``../shared/data/<domain>/<dataset>/MANIFEST.tsv`` (pinned
commits, so the bytes never change; tests/unit/test_registry.py checks each copy against the shared data when it
is present). Adding a downloadable dataset = adding its manifest there. A file whose ``source`` is a note rather
than a URL is published inside an archive: ``manifests/archives.tsv`` names the archive and the member.

Both the downloader (``data/download.py``) and the loaders' "how to get it" hint (``scenarios/base.py``) read this
module, so neither imports the other.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from unirec_lab.data.scenarios.raw import RawDataError, manifest_entries, read_lines

MANIFEST_DIR = Path(__file__).resolve().parent / "manifests"
ARCHIVES = "archives.tsv"
ARCHIVE_COLUMNS = ("dataset", "file", "archive", "member")
_URL_PREFIXES = ("https://", "http://")


@dataclass(frozen=True)
class RemoteFile:
    """A file to fetch: its manifest row, plus the archive and member when it ships only inside a zip."""

    name: str
    size: int
    sha256: str
    source: str  # the MANIFEST.tsv "source" column (a URL, or a note for archive members)
    url: str = ""  # what to fetch; defaults to ``source``
    member: str = ""  # for an archive: the member's base name

    @property
    def fetch_url(self) -> str:
        return self.url or self.source


@dataclass(frozen=True)
class RemoteDataset:
    """A downloadable dataset: key (its folder name), folder under the raw root, shipped manifest, files."""

    key: str
    subdir: str
    manifest: Path
    files: tuple[RemoteFile, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def archive_members(path: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """``archives.tsv`` (``#`` comment lines, a header, then one row per file) as
    ``{(dataset, file): (archive url, member)}``."""
    rows = [(i, ln) for i, ln in enumerate(read_lines(path), 1) if ln.strip() and not ln.startswith("#")]
    if not rows or tuple(rows[0][1].split("\t")) != ARCHIVE_COLUMNS:
        raise RawDataError(f"{path}: expected the header {'<TAB>'.join(ARCHIVE_COLUMNS)}")
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for lineno, line in rows[1:]:
        parts = line.split("\t")
        if len(parts) != len(ARCHIVE_COLUMNS) or not all(parts) or not parts[2].startswith(_URL_PREFIXES):
            raise RawDataError(f"{path}:{lineno}: expected '{'<TAB>'.join(ARCHIVE_COLUMNS)}' with an http(s) "
                               f"archive URL, got {line[:80]!r}")
        out[(parts[0], parts[1])] = (parts[2], parts[3])
    return out


def load_registry(manifest_dir: Path = MANIFEST_DIR) -> dict[str, RemoteDataset]:
    """Every ``<domain>/<dataset>.tsv`` under ``manifest_dir`` with its fetch info; a file that has neither a
    URL source nor an archive row, or an archive row naming no manifest file, is one error line."""
    archives = archive_members(manifest_dir / ARCHIVES)
    unused = set(archives)
    out: dict[str, RemoteDataset] = {}
    for m in sorted(manifest_dir.glob("*/*.tsv")):
        key = m.stem
        if key in out:
            raise RawDataError(f"{m}: dataset {key!r} is also {out[key].manifest}; dataset names must be unique")
        files = []
        for e in manifest_entries(m):
            url, member = archives.get((key, e.name), ("", ""))
            unused.discard((key, e.name))
            if not url and not e.source.startswith(_URL_PREFIXES):
                raise RawDataError(f"{m}: {e.name} has source {e.source!r}, which is not a URL, and no row in "
                                   f"{manifest_dir / ARCHIVES}")
            files.append(RemoteFile(e.name, e.size, e.sha256, e.source, url, member))
        out[key] = RemoteDataset(key, f"{m.parent.name}/{key}", m, tuple(files))
    if unused:
        raise RawDataError(f"{manifest_dir / ARCHIVES}: rows {sorted(unused)} name no file of a shipped manifest")
    return out


@functools.cache
def registry() -> dict[str, RemoteDataset]:
    """The shipped registry, read once per process."""
    return load_registry()


def download_hint(dataset: str, root: Path) -> str:
    """How to get a dataset: the download command only for datasets the registry knows."""
    if dataset not in registry():
        return f"{dataset!r} has no download entry: put its files there yourself (or set UNIREC_RAW_DIR)"
    return f"get it with: python -m unirec_lab.data.download --dest {root} {dataset} (or set UNIREC_RAW_DIR)"
