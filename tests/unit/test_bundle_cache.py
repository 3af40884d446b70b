"""The bundle cache checks itself: a bundle that does not match its MANIFEST.json is rebuilt, with one line why."""

from __future__ import annotations

import json
import logging
import os
import stat
import time

import pandas as pd
import pytest

from unirec_lab.data.datamodule import MultiScenarioDataModule
from unirec_lab.data.prepare import STALE_SECONDS, bundle_dir, ensure_bundle, is_complete, prepare_bundle
from unirec_lab.data.schema import BUNDLE_FILES, BundleError, read_bundle
from unirec_lab.data.synthetic import SyntheticScenario
from unirec_lab.utils.manifest import MANIFEST_FILE, write_manifest

WORLD = dict(dim=8, num_topics=10, num_segments=6, num_tokens=50, tokens_per_topic=10, seed=3)


def _source(name: str = "x") -> SyntheticScenario:
    return SyntheticScenario(name, WORLD, num_users=40, num_items=30, rows_per_user=12)


def _rebuilt(tmp_path, caplog, expect: str) -> None:
    """Preparing again rebuilds, logs one line naming the failed check, and the result loads and verifies."""
    with caplog.at_level(logging.INFO, logger="unirec_lab.data.prepare"):
        res = ensure_bundle(_source(), tmp_path)
    assert res.built and expect in res.reason
    lines = [r.getMessage() for r in caplog.records if "failed its manifest" in r.getMessage()]
    assert lines == [f"bundle {res.path} failed its manifest ({res.reason}); rebuilding"]
    assert is_complete(res.path)
    b = read_bundle(res.path)
    assert b.stats["positives"] == int(b.interactions["label"].sum())


def test_manifest_lists_every_file_written_last(tmp_path):
    path = prepare_bundle(_source(), tmp_path)
    doc = json.loads((path / MANIFEST_FILE).read_text())
    assert sorted(doc["files"]) == sorted(BUNDLE_FILES)
    last = max((path / f).stat().st_mtime_ns for f in BUNDLE_FILES)
    assert (path / MANIFEST_FILE).stat().st_mtime_ns >= last
    assert not ensure_bundle(_source(), tmp_path).built  # verified cache hit


def test_truncated_parquet_is_rebuilt(tmp_path, caplog):
    path = prepare_bundle(_source(), tmp_path)
    f = path / "interactions.parquet"
    size = f.stat().st_size
    f.write_bytes(f.read_bytes()[: size // 2])
    assert not is_complete(path)
    with pytest.raises(BundleError, match=rf"failed its manifest \(interactions.parquet: size {size // 2} != {size}\)"):
        read_bundle(path)
    _rebuilt(tmp_path, caplog, f"interactions.parquet: size {size // 2} != {size}")


def test_flipped_bytes_are_rebuilt(tmp_path, caplog):
    path = prepare_bundle(_source(), tmp_path)
    f = path / "interactions.parquet"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    _rebuilt(tmp_path, caplog, "interactions.parquet: sha256 ")


def test_flipped_labels_with_stale_stats_are_rebuilt(tmp_path, caplog):
    path = prepare_bundle(_source(), tmp_path)
    f = path / "interactions.parquet"
    df = pd.read_parquet(f)
    df.assign(label=1.0 - df["label"]).to_parquet(f, index=False)  # a valid parquet, stats.json now stale
    _rebuilt(tmp_path, caplog, "interactions.parquet: ")


def test_stats_not_matching_interactions_is_refused_even_with_a_matching_manifest(tmp_path):
    path = prepare_bundle(_source(), tmp_path)
    f = path / "interactions.parquet"
    df = pd.read_parquet(f)
    df.assign(label=1.0 - df["label"]).to_parquet(f, index=False)
    write_manifest(path.resolve(), BUNDLE_FILES)  # as if the manifest had been rewritten by hand
    with pytest.raises(BundleError, match=r"stats.json: positives = \d+ but interactions.parquet has \d+"):
        read_bundle(path)


def test_unreadable_parquet_names_the_file(tmp_path):
    path = prepare_bundle(_source(), tmp_path)
    f = path / "users.parquet"
    f.write_bytes(b"PAR1 not a parquet file PAR1")
    write_manifest(path.resolve(), BUNDLE_FILES)
    with pytest.raises(BundleError, match=rf"{f.resolve()}: unreadable parquet"):
        read_bundle(path)


def test_empty_list_stats_rebuilt_up_front_by_training(tmp_path, caplog):
    path = prepare_bundle(_source("news"), tmp_path)
    size = (path / "stats.json").stat().st_size
    (path / "stats.json").write_text("[]")
    dm = MultiScenarioDataModule({"news": {"source": _source("news")}}, cache_dir=tmp_path, batch_size=64)
    with caplog.at_level(logging.INFO, logger="unirec_lab.data.prepare"):
        dm.prepare_data()
    assert [r.getMessage() for r in caplog.records if "failed its manifest" in r.getMessage()] == [
        f"bundle {path} failed its manifest (stats.json: size 2 != {size}); rebuilding"]
    dm.setup()
    assert isinstance(dm.stats()["news"]["label_rate"], float)


def test_bundle_without_manifest_is_rebuilt(tmp_path, caplog):
    path = prepare_bundle(_source(), tmp_path)
    (path / MANIFEST_FILE).unlink()  # what a prepare killed before its last write (or an old cache) leaves
    _rebuilt(tmp_path, caplog, "no MANIFEST.json")


def test_legacy_real_directory_is_replaced_by_a_version(tmp_path, caplog):
    path = prepare_bundle(_source(), tmp_path)
    real = path.resolve()
    path.unlink()
    os.rename(real, path)  # the layout before versioned publishing: a plain directory without a manifest
    (path / MANIFEST_FILE).unlink()
    _rebuilt(tmp_path, caplog, "no MANIFEST.json")
    assert path.is_symlink()
    assert [p.name for p in path.parent.iterdir() if ".legacy-" in p.name]  # moved aside, not deleted


def test_stale_temp_dirs_removed_by_age_current_version_kept(tmp_path):
    path = prepare_bundle(_source(), tmp_path)
    old = time.time() - STALE_SECONDS - 60
    killed = path.parent / f".{path.name}.killed1"  # what a SIGKILLed prepare leaves behind
    killed.mkdir()
    (killed / "interactions.parquet").write_bytes(b"partial")
    young = path.parent / f".{path.name}.running"  # a concurrent prepare still writing: must survive
    young.mkdir()
    os.utime(killed, (old, old))
    os.utime(path.resolve(), (old, old))  # the live version is old too, but it is what the symlink names
    assert not ensure_bundle(_source(), tmp_path).built
    assert not killed.exists() and young.exists() and is_complete(path)


def test_forced_republish_keeps_the_old_version_for_its_readers(tmp_path):
    path = prepare_bundle(_source(), tmp_path)
    first = path.resolve()
    assert ensure_bundle(_source(), tmp_path, force=True).built
    assert path.resolve() != first and is_complete(first)  # a reader that resolved it still has every file
    old = time.time() - STALE_SECONDS - 60
    os.utime(first, (old, old))
    prepare_bundle(_source(), tmp_path)
    assert not first.exists() and is_complete(path)


def test_modes_follow_the_umask(tmp_path):
    prev = os.umask(0o022)
    try:
        path = prepare_bundle(_source(), tmp_path / "cache")
    finally:
        os.umask(prev)
    real = path.resolve()
    assert stat.S_IMODE(real.stat().st_mode) == 0o755
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755
    for f in (*BUNDLE_FILES, MANIFEST_FILE):
        assert stat.S_IMODE((real / f).stat().st_mode) == 0o644, f
    assert bundle_dir(_source(), tmp_path / "cache") == path


def test_stats_cli_lists_current_bundles_not_their_versions(tmp_path, capsys):
    from unirec_lab.cli.stats import find_bundles, main

    path = prepare_bundle(_source(), tmp_path)
    ensure_bundle(_source(), tmp_path, force=True)  # a superseded version stays beside the current one
    assert find_bundles(tmp_path) == [path]
    assert main([str(tmp_path)]) == 0
    assert capsys.readouterr().out.count("| x |") == 1


def test_a_losing_writer_discards_its_own_version(tmp_path):
    src = _source()
    build = src.build

    def build_while_another_writer_publishes():
        prepare_bundle(_source(), tmp_path)  # the competitor finishes first
        return build()

    src.build = build_while_another_writer_publishes
    res = ensure_bundle(src, tmp_path)
    assert not res.built and res.reason == "missing"
    entries = sorted(p.name for p in res.path.parent.iterdir())
    assert entries == sorted([res.path.name, res.path.resolve().name])  # the winner's version only
