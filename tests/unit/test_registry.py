"""The download registry is read from the manifests shipped with the package: they must be exact copies of the
shared data's MANIFEST.tsv files, travel in the wheel, and give every file a place to fetch it from."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from unirec_lab.data import registry as reg
from unirec_lab.data.scenarios.raw import RawDataError, default_raw_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("amazon_hin", "amazon_s3rec", "assist2009_pid", "assist2015", "assist2017_pid", "bing_dkn_sample",
           "ciao", "mind_small_subset", "statics2011", "yelp_hin")


def test_registry_lists_every_shipped_dataset_with_urls():
    known = reg.registry()
    assert sorted(known) == sorted(SHIPPED)
    for key, ds in known.items():
        assert ds.subdir.endswith(f"/{key}") and ds.files, key
        assert all(f.fetch_url.startswith("https://") and len(f.sha256) == 64 and f.size > 0 for f in ds.files), key
    ciao = {f.name: f for f in known["ciao"].files}
    assert ciao["trustnetwork.mat"].member == "trustnetwork.mat"
    assert ciao["README_tang_ciao.txt"].member == "readme.txt"
    assert ciao["trustnetwork.mat"].fetch_url.endswith("/ciao/ciao.zip")
    assert ciao["catalog_ciao.txt"].member == "" and ciao["catalog_ciao.txt"].fetch_url == ciao["catalog_ciao.txt"].source


def test_shipped_manifests_equal_the_shared_ones():
    root = default_raw_dir()
    if not root.is_dir():
        pytest.skip(f"raw data not available at {root} (set UNIREC_RAW_DIR)")
    for ds in reg.registry().values():
        shared = root / ds.subdir / "MANIFEST.tsv"
        assert shared.is_file(), f"{shared} missing for shipped manifest {ds.manifest}"
        assert ds.manifest.read_bytes() == shared.read_bytes(), f"{ds.manifest} differs from {shared}"


def test_package_data_globs_cover_the_manifests():
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    data = ROOT / "unirec_lab" / "data"
    covered = {p for g in globs["unirec_lab.data"] for p in data.glob(g)}
    shipped = set(reg.MANIFEST_DIR.rglob("*.tsv"))
    assert shipped and shipped <= covered, sorted(map(str, shipped - covered))


def _manifest(folder: Path, rows: list[str]) -> None:
    folder.mkdir(parents=True)
    (folder / "ds.tsv").write_text("file\tbytes\tsha256\tsource\n" + "".join(r + "\n" for r in rows))


def test_a_file_without_url_or_archive_row_is_one_error(tmp_path):
    (tmp_path / reg.ARCHIVES).write_text("# note\n" + "\t".join(reg.ARCHIVE_COLUMNS) + "\n")
    _manifest(tmp_path / "dom", [f"a.bin\t3\t{'a' * 64}\tinside some.zip"])
    with pytest.raises(RawDataError, match=r"ds\.tsv: a\.bin has source 'inside some\.zip', which is not a URL"):
        reg.load_registry(tmp_path)


def test_archive_rows_must_match_a_manifest_file_and_be_well_formed(tmp_path):
    header = "\t".join(reg.ARCHIVE_COLUMNS) + "\n"
    _manifest(tmp_path / "dom", [f"a.bin\t3\t{'a' * 64}\tinside some.zip"])
    (tmp_path / reg.ARCHIVES).write_text(header + "ds\ta.bin\thttps://h.invalid/some.zip\ta.bin\n")
    assert reg.load_registry(tmp_path)["ds"].files[0].member == "a.bin"
    (tmp_path / reg.ARCHIVES).write_text(header + "ds\ta.bin\thttps://h.invalid/some.zip\ta.bin\n"
                                         "ds\tb.bin\thttps://h.invalid/some.zip\tb.bin\n")
    with pytest.raises(RawDataError, match=r"archives\.tsv: rows \[\('ds', 'b\.bin'\)\] name no file"):
        reg.load_registry(tmp_path)
    (tmp_path / reg.ARCHIVES).write_text(header + "ds\ta.bin\tsome.zip\ta.bin\n")
    with pytest.raises(RawDataError, match=r"archives\.tsv:2: expected 'dataset<TAB>file<TAB>archive<TAB>member'"):
        reg.load_registry(tmp_path)
    (tmp_path / reg.ARCHIVES).write_text("file\turl\n")
    with pytest.raises(RawDataError, match=r"archives\.tsv: expected the header dataset<TAB>file"):
        reg.load_registry(tmp_path)


def test_download_hint_only_for_known_datasets(tmp_path):
    assert "python -m unirec_lab.data.download --dest" in reg.download_hint("ciao", tmp_path)
    assert "has no download entry" in reg.download_hint("mine", tmp_path)
