"""The downloader: sha256 checked, atomic, files already present skipped, one-line errors. No test touches the
network: a fake pooch downloader serves bytes from a dict."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import zipfile
from pathlib import Path

import pytest
import requests

from unirec_lab.data import download as dl
from unirec_lab.data import registry as reg
from unirec_lab.data.scenarios.base import RawDataset
from unirec_lab.data.scenarios.raw import read_manifest


class FakeDownloader:
    """pooch's downloader protocol (``(url, output_file, pooch)``) over a dict of blobs; records every fetch."""

    def __init__(self, blobs: dict[str, bytes]):
        self.blobs, self.calls = blobs, []

    def __call__(self, url: str, output_file: str, pooch: object, check_only: bool = False) -> None:
        self.calls.append(url)
        if url not in self.blobs:
            raise requests.exceptions.HTTPError(f"404 Client Error: Not Found for url: {url}")
        Path(output_file).write_bytes(self.blobs[url])


def _remote(name: str, data: bytes, **kw) -> reg.RemoteFile:
    return reg.RemoteFile(name, len(data), hashlib.sha256(data).hexdigest(), f"https://h.invalid/{name}", **kw)


def test_verify_sha256_on_a_local_file(tmp_path):
    p = tmp_path / "data.bin"
    p.write_bytes(b"abc")
    good = hashlib.sha256(b"abc").hexdigest()
    dl.verify_sha256(p, good, size=3)
    dl.verify_sha256(p, good.upper())
    with pytest.raises(dl.DownloadError, match="does not match"):
        dl.verify_sha256(p, "0" * 64)
    with pytest.raises(dl.DownloadError, match="3 bytes, expected 4"):
        dl.verify_sha256(p, good, size=4)
    with pytest.raises(dl.DownloadError, match="file missing"):
        dl.verify_sha256(tmp_path / "nope", good)


def test_fetch_verifies_and_writes_atomically(tmp_path):
    data = b"payload\n"
    f = _remote("x.txt", data)
    dl.fetch_file(f, tmp_path / "x.txt", tmp_path, FakeDownloader({f.source: data}))
    assert (tmp_path / "x.txt").read_bytes() == data
    bad = reg.RemoteFile("y.txt", len(data), "0" * 64, "https://h.invalid/y.txt")
    with pytest.raises(dl.DownloadError, match=r"https://h\.invalid/y\.txt -> y\.txt: SHA256 hash of downloaded "
                                               r"file \(y\.txt\) does not match the known hash: expected sha256:0000"):
        dl.fetch_file(bad, tmp_path / "y.txt", tmp_path, FakeDownloader({bad.source: data}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]  # no file, no temp file left behind
    with pytest.raises(dl.DownloadError, match=r"^could not fetch https://h\.invalid/y\.txt: 404 Client Error"):
        dl.fetch_file(bad, tmp_path / "y.txt", tmp_path, FakeDownloader({}))


def test_a_bad_download_keeps_the_file_it_would_replace(tmp_path):
    data = b"payload\n"
    f = _remote("x.txt", data)
    (tmp_path / "x.txt").write_bytes(b"old")
    with pytest.raises(dl.DownloadError, match="does not match"):
        dl.fetch_file(f, tmp_path / "x.txt", tmp_path, FakeDownloader({f.source: b"corrupt\n"}))
    assert (tmp_path / "x.txt").read_bytes() == b"old"


def test_fetched_raw_file_mode_follows_umask(tmp_path):
    data = b"payload\n"
    f = _remote("x.txt", data)
    prev = os.umask(0o022)
    try:
        dl.fetch_file(f, tmp_path / "x.txt", tmp_path, FakeDownloader({f.source: data}))
    finally:
        os.umask(prev)
    assert stat.S_IMODE((tmp_path / "x.txt").stat().st_mode) == 0o644


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_fetch_zip_members_fetches_the_archive_once(tmp_path):
    member = b"truster trustee\n"
    url = "https://h.invalid/ciao.zip"
    fake = FakeDownloader({url: _zip({"ciao/trustnetwork.mat": member, "ciao/readme.txt": b"hi"})})
    scratch = tmp_path / "scratch"
    f = reg.RemoteFile("trustnetwork.mat", len(member), hashlib.sha256(member).hexdigest(), "note", url=url,
                       member="trustnetwork.mat")
    dl.fetch_file(f, tmp_path / "trustnetwork.mat", scratch, fake)
    assert (tmp_path / "trustnetwork.mat").read_bytes() == member
    g = reg.RemoteFile("README.txt", 2, hashlib.sha256(b"hi").hexdigest(), "note", url=url, member="README.TXT")
    dl.fetch_file(g, tmp_path / "README.txt", scratch, fake)
    assert (tmp_path / "README.txt").read_bytes() == b"hi"
    assert fake.calls == [url]  # the archive is fetched once
    wrong = reg.RemoteFile("x.mat", 2, "0" * 64, "note", url=url, member="readme.txt")
    with pytest.raises(dl.DownloadError, match=r"ciao\.zip member 'readme\.txt' -> x\.mat: sha256 [0-9a-f]+ does "
                                               r"not match the expected 0000"):
        dl.fetch_file(wrong, tmp_path / "x.mat", scratch, fake)
    assert not (tmp_path / "x.mat").exists()
    missing = reg.RemoteFile("y.mat", 2, "0" * 64, "note", url=url, member="nope.mat")
    with pytest.raises(dl.DownloadError, match=r"ciao\.zip: no member named 'nope\.mat' in the archive"):
        dl.fetch_file(missing, tmp_path / "y.mat", scratch, fake)
    junk = "https://h.invalid/junk.zip"
    fake.blobs[junk] = b"not a zip"
    with pytest.raises(dl.DownloadError, match=r"junk\.zip: not a zip archive"):
        dl.fetch_file(reg.RemoteFile("z", 1, "0" * 64, "n", url=junk, member="z"), tmp_path / "z", scratch, fake)


def _one_file_registry(monkeypatch, data: bytes) -> reg.RemoteFile:
    f = _remote("statics.csv", data)
    ds = reg.registry()["statics2011"]
    monkeypatch.setitem(reg.registry(), "statics2011", reg.RemoteDataset(ds.key, ds.subdir, ds.manifest, (f,)))
    return f


def test_download_skips_verified_files_and_writes_the_shipped_manifest(tmp_path, monkeypatch):
    data = b"1\n1\n1\n"
    f = _one_file_registry(monkeypatch, data)
    fake = FakeDownloader({f.source: data})
    logged: list[str] = []
    dl.download(["statics2011"], tmp_path, downloader=fake, log=logged.append)
    report = dl.download(["statics2011"], tmp_path, downloader=fake, log=logged.append)
    assert len(fake.calls) == 1
    assert logged == ["education/statics2011/statics.csv: downloaded",
                      "education/statics2011/statics.csv: ok (already present)"]
    assert report == {"statics2011": ["statics.csv: ok (already present)"]}
    folder = tmp_path / "education" / "statics2011"
    assert (folder / "MANIFEST.tsv").read_bytes() == reg.registry()["statics2011"].manifest.read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == ["MANIFEST.tsv", "statics.csv"]  # scratch dir removed
    assert RawDataset(tmp_path, "education/statics2011", verify=False).sha256("statics.csv") == f.sha256
    with pytest.raises(dl.DownloadError, match=r"unknown dataset\(s\) \['nope'\]; known: amazon_hin, "):
        dl.download(["nope"], tmp_path, downloader=fake)


def test_real_manifest_round_trip(tmp_path):
    """A downloaded folder's MANIFEST.tsv is the shipped one, which the loaders then check files against."""
    ds = reg.registry()["statics2011"]
    assert read_manifest(ds.manifest) == {f.name: (f.size, f.sha256) for f in ds.files}


def test_main_lists_and_reports_errors_in_one_line(capsys, tmp_path):
    assert dl.main(["--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(reg.registry())
    assert "ciao  (social/ciao, 4 files, 1.7 MB)" in out
    assert dl.main(["--dest", str(tmp_path), "nope"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown dataset(s) ['nope']")


def test_real_registry_round_trip_from_a_local_mirror(tmp_path):
    """The shipped registry, served from the shared raw files (Ciao's archive members zipped at the archive's
    URL): every byte checked, the folder then passes the loaders' own manifest check."""
    from unirec_lab.data.scenarios.raw import default_raw_dir

    root = default_raw_dir()
    if not (root / "social" / "ciao").is_dir():
        pytest.skip(f"raw data not available at {root} (set UNIREC_RAW_DIR)")
    ds = reg.registry()["ciao"]
    blobs: dict[str, bytes] = {}
    members: dict[str, dict[str, bytes]] = {}
    for f in ds.files:
        data = (root / ds.subdir / f.name).read_bytes()
        if f.member:
            members.setdefault(f.fetch_url, {})[f"ciao/{f.member}"] = data
        else:
            blobs[f.fetch_url] = data
    blobs.update({url: _zip(m) for url, m in members.items()})
    fake = FakeDownloader(blobs)
    report = dl.download(["ciao"], tmp_path, downloader=fake, log=lambda *_: None)
    assert report["ciao"] == [f"{f.name}: downloaded" for f in ds.files]
    assert len(fake.calls) == 3  # two plain files + the archive once
    local = RawDataset(tmp_path, ds.subdir)
    assert local.hashes(f.name for f in ds.files) == {f"{ds.subdir}/{f.name}": f.sha256 for f in ds.files}
