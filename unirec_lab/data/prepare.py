"""Turning a scenario *source* (a raw-data loader or the synthetic generator) into a cached bundle on disk.

A source is any object with
- ``name``: the scenario name used in metric keys (``news``, ``education``, ...);
- ``fingerprint() -> dict``: everything that determines the bundle (parameters, raw files' sha256);
- ``build() -> BuiltBundle``: the tables, in memory.

Bundles are cached under ``<cache_dir>/<name>/<sha of the fingerprint>``, a symlink to the current *version*
``.<sha>.<random>/``. A build writes a fresh version directory (its ``MANIFEST.json`` last), then swaps the
symlink atomically: a reader that resolved the old version keeps reading it, so publishing never removes a
bundle in use, and a killed build leaves only a hidden temp dir. A cached bundle is used only if it matches its
manifest (sizes and sha256 of every file, stats.json included); otherwise it is rebuilt, with one log line
saying why. Hidden entries older than :data:`STALE_SECONDS` (killed builds, superseded versions) are removed
whenever the scenario is prepared.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from unirec_lab.data.schema import FeatureSpec, bundle_problem, write_bundle
from unirec_lab.utils.atomic import make_temp_dir, publish_dir, remove_stale
from unirec_lab.utils.lazy import lazy_import

pd = lazy_import("pandas")  # imported on first use: a cached job never needs it

log = logging.getLogger(__name__)
STALE_SECONDS = 3600.0  # hidden temp / superseded version dirs older than this are removed


@dataclass
class BuiltBundle:
    spec: FeatureSpec
    interactions: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    provenance: dict[str, Any]


class ScenarioSource(Protocol):
    name: str

    def fingerprint(self) -> dict[str, Any]: ...

    def build(self) -> BuiltBundle: ...


def fingerprint_key(fp: dict[str, Any]) -> str:
    blob = json.dumps(fp, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def bundle_dir(source: ScenarioSource, cache_dir: Path | str) -> Path:
    return Path(cache_dir) / source.name / fingerprint_key(source.fingerprint())


def is_complete(path: Path) -> bool:
    """Whether ``path`` holds a bundle that matches its manifest (see :func:`bundle_problem` for why not)."""
    return bundle_problem(path) is None


@dataclass
class Prepared:
    """Where a bundle is, and whether this call built it (``reason``: why the cached one was not used)."""

    path: Path
    built: bool
    reason: str | None = None


def ensure_bundle(source: ScenarioSource, cache_dir: Path | str, force: bool = False) -> Prepared:
    """Use the cached bundle if it matches its manifest, else build and publish a new version."""
    final = bundle_dir(source, cache_dir)
    for p in remove_stale(final.parent, STALE_SECONDS):
        log.info("removed stale %s", p)
    reason = "force=true" if force else bundle_problem(final)
    if reason is None:
        return Prepared(final, built=False)
    if force:
        log.info("bundle %s: force=true; rebuilding", final)
    elif reason != "missing":
        log.warning("bundle %s failed its manifest (%s); rebuilding", final, reason)
    t0 = time.perf_counter()
    built = source.build()
    tmp = make_temp_dir(final.parent, prefix=f".{final.name}.")
    published = False
    try:
        provenance = dict(built.provenance)
        provenance["fingerprint"] = source.fingerprint()
        provenance["prepare_seconds"] = round(time.perf_counter() - t0, 3)
        write_bundle(tmp, built.spec, built.interactions, built.users, built.items, provenance)
        if not force and bundle_problem(final) is None:  # a concurrent writer published first: keep theirs
            return Prepared(final, built=False, reason=reason)  # (ours is discarded below)
        publish_dir(tmp, final)
        published = True
    finally:
        if not published:
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("prepared %s in %.1fs -> %s", source.name, time.perf_counter() - t0, final)
    return Prepared(final, built=True, reason=reason)


def prepare_bundle(source: ScenarioSource, cache_dir: Path | str, force: bool = False) -> Path:
    """Return the directory of the source's bundle, building it first when it is absent, stale or corrupt."""
    return ensure_bundle(source, cache_dir, force).path
