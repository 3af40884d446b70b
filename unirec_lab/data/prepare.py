"""Turning a scenario *source* (a raw-data loader or the synthetic generator) into a cached bundle on disk.

A source is any object with
- ``name``: the scenario name used in metric keys (``news``, ``education``, ...);
- ``fingerprint() -> dict``: everything that determines the bundle (parameters, raw files' sha256);
- ``build() -> BuiltBundle``: the tables, in memory.

Bundles are cached under ``<cache_dir>/<name>/<sha of the fingerprint>``; a build writes into a temporary
sibling directory and is renamed into place only when complete, so a killed build leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from unirec_lab.data.schema import BUNDLE_FILES, Bundle, FeatureSpec, read_bundle, write_bundle
from unirec_lab.utils.atomic import publish_dir

log = logging.getLogger(__name__)
COMPLETE_MARKER = ".complete"


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
    return (path / COMPLETE_MARKER).is_file() and all((path / f).is_file() for f in BUNDLE_FILES)


def prepare_bundle(source: ScenarioSource, cache_dir: Path | str, force: bool = False) -> Path:
    """Return the directory of the source's bundle, building it first when it is absent or stale."""
    final = bundle_dir(source, cache_dir)
    if not force and is_complete(final):
        return final
    t0 = time.perf_counter()
    built = source.build()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        provenance = dict(built.provenance)
        provenance["fingerprint"] = source.fingerprint()
        provenance["prepare_seconds"] = round(time.perf_counter() - t0, 3)
        write_bundle(tmp, built.spec, built.interactions, built.users, built.items, provenance)
        (tmp / COMPLETE_MARKER).write_text(fingerprint_key(source.fingerprint()) + "\n")
        publish_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("prepared %s in %.1fs -> %s", source.name, time.perf_counter() - t0, final)
    return final


def load_scenario(source: ScenarioSource, cache_dir: Path | str) -> Bundle:
    """Prepare (if needed) and load one scenario's bundle."""
    return read_bundle(prepare_bundle(source, cache_dir))
