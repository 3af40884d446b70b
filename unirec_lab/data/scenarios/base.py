"""What every real-data source shares: :class:`RawDataset` (one raw folder checked against its ``MANIFEST.tsv``)
and :class:`RawScenarioSource` (the base class of the shipped loaders: ``name`` + ``fingerprint()`` +
``build()``, see data/prepare.py), plus the provenance every source stamps on its bundle.

Conventions (the bundle contract, ``unirec_lab/data/schema.py``): ids are dense ``0..n-1`` within a scenario;
categorical / multi / text values use ``0`` for missing and ``1..vocab_size-1`` for values; split levels are
train 0 / val 1 / test 2.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unirec_lab.data.history import STATS_HISTORY_LEN, mean_history_len
from unirec_lab.data.prepare import BuiltBundle
from unirec_lab.data.registry import download_hint, registry
from unirec_lab.data.scenarios.raw import MANIFEST, RawDataError, read_manifest, sha256_file
from unirec_lab.features import SPLITS


@dataclass
class RawDataset:
    """One dataset folder under the raw root, e.g. ``RawDataset(root, "ecommerce/amazon_s3rec")``: checks that a
    file exists and that its sha256 matches the manifest, with one clear line (and how to get it) when not."""

    root: Path
    subdir: str
    verify: bool = True

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    @property
    def key(self) -> str:
        return self.subdir.rsplit("/", 1)[-1]

    @property
    def path(self) -> Path:
        return self.root / self.subdir

    def check_dir(self) -> None:
        if not self.root.is_dir():
            raise RawDataError(f"raw data directory {self.root} does not exist; "
                               f"{download_hint(self.key, self.root)}")
        if not self.path.is_dir():
            raise RawDataError(f"raw data folder {self.path} does not exist; {download_hint(self.key, self.root)}")

    def expected(self) -> dict[str, tuple[int, str]]:
        """The manifest of this folder: its ``MANIFEST.tsv``, else the copy shipped in the download registry."""
        m = self.path / MANIFEST
        if m.is_file():
            return read_manifest(m)
        known = registry().get(self.key)
        if known is None:
            raise RawDataError(f"{m} is missing and {self.key!r} has no download entry, so its files cannot be "
                               "verified; write a MANIFEST.tsv (file, bytes, sha256, source) or, for your own "
                               "tables, use a TableScenario config (conf/scenario/_template.yaml), which needs none")
        return read_manifest(known.manifest)

    def file(self, name: str) -> Path:
        """Path of a raw file after checking it exists (sha256 is checked by :meth:`sha256`)."""
        self.check_dir()
        p = self.path / name
        if not p.is_file():
            raise RawDataError(f"raw file {p} is missing; {download_hint(self.key, self.root)}")
        return p

    def sha256(self, name: str) -> str:
        """sha256 of one raw file, checked against the manifest (size first: cheap and catches truncation)."""
        p = self.file(name)
        exp = self.expected().get(name) if self.verify else None
        if exp is not None and p.stat().st_size != exp[0]:
            raise RawDataError(f"raw file {p} has {p.stat().st_size} bytes but {self.path / MANIFEST} says "
                               f"{exp[0]} (truncated or modified; re-download it)")
        digest = sha256_file(p)
        if exp is not None and digest != exp[1]:
            raise RawDataError(f"raw file {p} has sha256 {digest[:16]}... but {self.path / MANIFEST} says "
                               f"{exp[1][:16]}... (modified or corrupt; re-download it)")
        if self.verify and exp is None:
            raise RawDataError(f"raw file {p} is not listed in {self.path / MANIFEST}, so it cannot be verified")
        return digest

    def hashes(self, names: Iterable[str]) -> dict[str, str]:
        return {f"{self.subdir}/{n}": self.sha256(n) for n in names}


def stamp_provenance(source: Any, built: BuiltBundle, raw_files: dict[str, str], t0: float,
                     **extra: Any) -> BuiltBundle:
    """Put what every source records (loader, parameters, raw sha256, history statistic, build time) under the
    loader's own provenance; the loader's keys win."""
    inter = built.interactions
    prov = {"loader": f"{type(source).__module__}.{type(source).__name__}", "loader_version": source.loader_version,
            **extra, "raw_files": raw_files, "params": source.params,
            "mean_history_len": mean_history_len(inter, cap=STATS_HISTORY_LEN),
            "stats_history_len": STATS_HISTORY_LEN, "build_seconds": round(time.perf_counter() - t0, 3)}
    prov.update(built.provenance)
    built.provenance = prov
    return built


class RawScenarioSource:
    """Base class of the real-data sources: ``name`` + ``fingerprint()`` + ``build()`` (see data/prepare.py).

    Subclasses set ``dataset`` (folder under the raw root, e.g. ``"ecommerce/amazon_s3rec"``), ``loader_version``,
    implement :meth:`raw_files` (file names used) and :meth:`_build`, and pass every prepare parameter to
    ``super().__init__`` so it enters the fingerprint.
    """

    dataset: str = ""
    loader_version: int = 1

    def __init__(self, name: str, raw_dir: str | Path, params: dict[str, Any]) -> None:
        if not name:
            raise ValueError(f"{type(self).__name__}: name (the scenario key) must be non-empty")
        self.name = name
        self.raw = RawDataset(Path(raw_dir), self.dataset)
        self.params = dict(params)

    def raw_files(self) -> list[str]:
        raise NotImplementedError

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": f"{type(self).__module__}.{type(self).__name__}", "loader_version": self.loader_version,
                "name": self.name, "dataset": self.dataset, "params": self.params,
                "raw_sha256": self.raw.hashes(self.raw_files())}

    def build(self) -> BuiltBundle:
        t0 = time.perf_counter()
        hashes = self.raw.hashes(self.raw_files())  # every file present and matching MANIFEST.tsv
        built = self._build()
        inter = built.interactions
        if len(inter) == 0:
            raise RawDataError(f"scenario {self.name!r} ({self.raw.path}): no interactions left after filtering")
        for s in SPLITS:
            if not (inter["split"] == s).any():
                raise RawDataError(f"scenario {self.name!r} ({self.raw.path}): split {s!r} is empty after "
                                   f"filtering (parameters {self.params})")
        return stamp_provenance(self, built, hashes, t0, raw_dir=str(self.raw.path))

    def _build(self) -> BuiltBundle:
        raise NotImplementedError

    def rng(self, *salt: int) -> np.random.Generator:
        """Seeded stream for this dataset (seed param + crc of the dataset name + salt)."""
        return np.random.default_rng([int(self.params.get("seed", 0)), zlib.crc32(self.dataset.encode()), *salt])
