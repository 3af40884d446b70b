"""Download the real raw datasets (the files of ``../shared/data``) from their pinned URLs.

    python -m unirec_lab.data.download --dest DIR [dataset ...]      # default: every dataset
    python -m unirec_lab.data.download --list

What to fetch comes from the manifests shipped with the package (``data/registry.py``). Each file is fetched
with pooch, which writes it to a temp file in the same folder, checks its sha256 and only then renames it into
place: an interrupted or corrupt download leaves no file behind. Files already present with the right size and
sha256 are skipped. Files published only inside a zip (two of Ciao's) are extracted from the archive, fetched
once per run into a scratch folder next to them, checked the same way, then moved into place. Each dataset
folder also gets its ``MANIFEST.tsv``, which the loaders check.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pooch

from unirec_lab.data.registry import RemoteFile, registry
from unirec_lab.data.scenarios.raw import MANIFEST, RawDataError, default_raw_dir, sha256_file
from unirec_lab.utils.atomic import atomic_write_text, current_umask

# pooch's downloader protocol: ``downloader(url, output_file, pooch_instance)`` writes the bytes of ``url``.
Downloader = Callable[..., object]


class DownloadError(RawDataError):
    """A download failed or its bytes do not match the registry."""


def verify_sha256(path: Path | str, expected: str, size: int | None = None) -> None:
    """Raise :class:`DownloadError` naming the file when its size or sha256 differs from the expected one."""
    path = Path(path)
    if not path.is_file():
        raise DownloadError(f"{path}: file missing")
    if size is not None and path.stat().st_size != size:
        raise DownloadError(f"{path}: {path.stat().st_size} bytes, expected {size}")
    got = sha256_file(path)
    if got != expected.lower():
        raise DownloadError(f"{path}: sha256 {got} does not match the expected {expected.lower()}")


def http_downloader(timeout: float) -> Downloader:
    return pooch.HTTPDownloader(timeout=timeout, progressbar=False, headers={"User-Agent": "unirec_lab-download"})


@contextlib.contextmanager
def _quiet_pooch() -> Iterator[None]:
    """pooch logs every fetch at INFO on stderr; the downloader prints its own one line per file."""
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _retrieve(url: str, known_hash: str | None, dest: Path, downloader: Downloader, what: str) -> Path:
    """pooch.retrieve as one error line: fetch ``url`` to ``dest`` (temp file + hash check + rename)."""
    try:
        with _quiet_pooch():
            path = pooch.retrieve(url, known_hash=known_hash, fname=dest.name, path=dest.parent,
                                  downloader=downloader, progressbar=False)
    except ValueError as e:  # pooch's hash mismatch (the temp file is already deleted)
        raise DownloadError(f"{url} -> {what}: {str(e).split('. ')[0]}") from None
    except OSError as e:  # network errors (requests' exceptions are OSErrors), disk full, ...
        raise DownloadError(f"could not fetch {url}: {' '.join(str(e).split()) or type(e).__name__}") from None
    os.chmod(path, 0o666 & ~current_umask())  # pooch's temp file is 0600; raw data is shared like any file
    return Path(path)


def _extract_member(archive: Path, member: str, out_dir: Path) -> Path:
    """The archive member whose base name is ``member`` (case-insensitive), extracted into ``out_dir``."""
    import zipfile

    try:
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.rsplit("/", 1)[-1].lower() == member.lower()]
            if not names:
                raise DownloadError(f"{archive.name}: no member named {member!r} in the archive")
            return Path(zf.extract(names[0], out_dir))
    except zipfile.BadZipFile:
        raise DownloadError(f"{archive.name}: not a zip archive") from None


def fetch_file(f: RemoteFile, dest: Path, scratch: Path, downloader: Downloader) -> None:
    """Fetch one registry file to ``dest``: verified, atomic. An archive member comes from the archive fetched
    into ``scratch`` (same file system as ``dest``; an archive already there is not fetched again)."""
    if not f.member:
        _retrieve(f.fetch_url, f"sha256:{f.sha256}", dest, downloader, dest.name)
        return
    archive = _retrieve(f.fetch_url, None, scratch / f.fetch_url.rsplit("/", 1)[-1], downloader, "archive")
    out = _extract_member(archive, f.member, scratch / f"{archive.name}.{f.name}")
    try:
        verify_sha256(out, f.sha256, f.size)
    except DownloadError as e:
        raise DownloadError(f"{f.fetch_url} member {f.member!r} -> {dest.name}: {str(e).split(': ', 1)[1]}") from None
    os.chmod(out, 0o666 & ~current_umask())
    os.replace(out, dest)


def download(datasets: list[str], dest: Path | str, downloader: Downloader | None = None,
             timeout: float = 60.0, log: Callable[[str], object] = print) -> dict[str, list[str]]:
    """Download ``datasets`` into ``dest/<domain>/<dataset>/``; returns ``{dataset: [file status, ...]}``."""
    known = registry()
    unknown = [d for d in datasets if d not in known]
    if unknown:
        raise DownloadError(f"unknown dataset(s) {unknown}; known: {', '.join(sorted(known))}")
    downloader = downloader or http_downloader(timeout)
    report: dict[str, list[str]] = {}
    for d in datasets:
        ds = known[d]
        folder = Path(dest) / ds.subdir
        folder.mkdir(parents=True, exist_ok=True)
        report[d] = []
        with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as scratch:
            for f in ds.files:
                target = folder / f.name
                try:
                    verify_sha256(target, f.sha256, f.size)
                    status = "ok (already present)"
                except DownloadError:
                    fetch_file(f, target, Path(scratch), downloader)
                    status = "downloaded"
                report[d].append(f"{f.name}: {status}")
                log(f"{ds.subdir}/{f.name}: {status}")
        atomic_write_text(folder / MANIFEST, ds.manifest.read_text(encoding="utf-8"))
    return report


def main(argv: list[str] | None = None) -> int:
    try:
        known = registry()
    except RawDataError as e:  # a broken install: the shipped manifests are missing or edited
        print(f"error: {e}", file=sys.stderr)
        return 1
    ap = argparse.ArgumentParser(prog="python -m unirec_lab.data.download", description=__doc__.split("\n\n")[0])
    ap.add_argument("datasets", nargs="*", help=f"datasets to fetch (default: all): {', '.join(known)}")
    ap.add_argument("--dest", type=Path, default=None, help="raw data root (default: $UNIREC_RAW_DIR or "
                    "../shared/data next to the repository)")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--list", action="store_true", help="list the datasets and files, fetch nothing")
    args = ap.parse_args(argv)
    if args.list:
        for d, ds in known.items():
            print(f"{d}  ({ds.subdir}, {len(ds.files)} files, {ds.size / 1e6:.1f} MB)")
        return 0
    try:
        download(args.datasets or list(known), args.dest or default_raw_dir(), timeout=args.timeout)
    except RawDataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
