"""The serving artifact: a versioned, hashed, self-contained directory a server loads without Hydra or the
training code path (:mod:`unirec_lab.serve.export` writes the first version from a run; an updater writes later
ones with :func:`write_version`).

Layout (``ARTIFACT`` = the root a server is pointed at)::

    ARTIFACT/CURRENT                  the live version's name ("v0002"), replaced atomically (temp + rename)
    ARTIFACT/v0001/manifest.json      format, version, {file: {bytes, sha256}} of every file below, written last
                  /spec.json          history_len, spaces (sizes, offsets, slots), models (space, build spec,
                                      weights file), scenarios (model, sizes), info (source run, parent
                                      version, ``feedback_seq``: the last feedback event ``seq`` this version
                                      already contains, 0 for an export; a server replays the events after it)
                  /config.json        the run's resolved config (provenance; nothing is rebuilt from it)
                  /spaces/<s>.pt      feature-space tensors (feature matrices, item scenario, train counts)
                  /weights/<m>.pt     one model ``state_dict`` per tested checkpoint (``torch.load(weights_only)``)
                  /scenarios/<s>/     user_ids.npy, item_ids.npy (raw id of each dense id), history.npy
                                      ([users, history_len] latest positives, dense item ids, -1 padding),
                                      seen_indptr.npy + seen_items.npy (every positive per user, CSR),
                                      popularity.npy (positives per item: the fallback ranking)

A model is rebuilt from its spec (the run's ``model.builder``, ``backbone`` and ``head`` nodes) by
:mod:`unirec_lab.serve.build_spec` (plain ``importlib`` of ``unirec_lab.*`` targets). Loading hashes every
file against the manifest first: a tampered or truncated file is refused in one line naming it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unirec_lab.features import FeatureSpace, Slot
from unirec_lab.serve.build_spec import SpecError, build_from_spec
from unirec_lab.utils.atomic import atomic_write_json, atomic_write_text, atomic_write_with, make_temp_dir
from unirec_lab.utils.manifest import file_sha256

FORMAT_VERSION = 1
CURRENT_FILE = "CURRENT"
MANIFEST_FILE = "manifest.json"
SPEC_FILE = "spec.json"
CONFIG_FILE = "config.json"
SCENARIO_ARRAYS = ("user_ids", "item_ids", "history", "seen_indptr", "seen_items", "popularity")
SPACE_TENSORS = ("user_features", "item_features", "item_scenario", "item_train_count", "item_train_pos",
                 "user_train_pos", "item_text", "user_dense", "item_dense")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_VERSION = re.compile(r"^v(\d{4,})$")


class ArtifactError(ValueError):
    """An artifact that cannot be used; the one-line message names the file and what is wrong."""


@dataclass
class ScenarioData:
    """One scenario's serving state in its own dense ids (``0..n-1``; global ids = space offset + 1 + id)."""

    model: str
    user_ids: np.ndarray  # [num_users] raw id (str) of each dense user id
    item_ids: np.ndarray  # [num_items] raw id (str) of each dense item id
    history: np.ndarray  # [num_users, history_len] int64 latest positives, oldest first, -1 = padding
    seen_indptr: np.ndarray  # [num_users + 1] int64
    seen_items: np.ndarray  # int64 dense item ids of every positive, grouped by user
    popularity: np.ndarray  # [num_items] float64 positives per item (all splits)

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)


@dataclass
class ModelEntry:
    """One servable model: the space it was built on, its build spec and its weights."""

    space: str
    spec: dict[str, Any]
    state: dict[str, torch.Tensor]


@dataclass
class Artifact:
    """Everything a server needs; ``module(name)`` builds (once) and returns a model in eval mode."""

    history_len: int
    spaces: dict[str, FeatureSpace]
    models: dict[str, ModelEntry]
    scenarios: dict[str, ScenarioData]
    config: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    root: Path | None = None
    version: str | None = None
    _modules: dict[str, nn.Module] = field(default_factory=dict, repr=False)

    def module(self, name: str) -> nn.Module:
        if name not in self._modules:
            entry = self.models[name]
            model = build_from_spec(entry.spec, self.spaces[entry.space], where=f"{SPEC_FILE} models.{name}")
            try:
                model.load_state_dict(entry.state)
            except RuntimeError as e:
                raise ArtifactError(f"weights/{name}.pt: does not fit its spec "
                                    f"({str(e).strip().splitlines()[-1].strip()[:200]})") from None
            self._modules[name] = model.eval()
        return self._modules[name]

    def model_for(self, scenario: str) -> tuple[nn.Module, FeatureSpace]:
        """(model, feature space) that serves ``scenario``."""
        entry = self.scenarios[scenario].model
        return self.module(entry), self.spaces[self.models[entry].space]

    def catalogue(self, scenario: str) -> torch.Tensor:
        """Global item ids of every item of ``scenario`` (the whole catalogue, dense order)."""
        _, space = self.model_for(scenario)
        lo = space.item_offset[scenario] + 1
        return torch.arange(lo, lo + self.scenarios[scenario].num_items)


# -- writing ---------------------------------------------------------------------------------------------------
def space_meta(space: FeatureSpace) -> dict[str, Any]:
    return {"scenarios": list(space.scenarios), "num_users": int(space.num_users), "num_items": int(space.num_items),
            "user_offset": {k: int(v) for k, v in space.user_offset.items()},
            "item_offset": {k: int(v) for k, v in space.item_offset.items()},
            "tables": {k: int(v) for k, v in space.tables.items()},
            "user_slots": [s.__dict__ for s in space.user_slots], "item_slots": [s.__dict__ for s in space.item_slots],
            "text_slots": [s.__dict__ for s in space.text_slots], "user_dense_names": list(space.user_dense_names),
            "item_dense_names": list(space.item_dense_names), "id_owner": dict(space.id_owner)}


def space_from(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> FeatureSpace:
    return FeatureSpace(
        scenarios=list(meta["scenarios"]), num_users=int(meta["num_users"]), num_items=int(meta["num_items"]),
        user_offset=dict(meta["user_offset"]), item_offset=dict(meta["item_offset"]), tables=dict(meta["tables"]),
        user_slots=[Slot(**s) for s in meta["user_slots"]], item_slots=[Slot(**s) for s in meta["item_slots"]],
        user_features=tensors["user_features"], item_features=tensors["item_features"],
        item_scenario=tensors["item_scenario"], item_train_count=tensors.get("item_train_count"),
        item_train_pos=tensors.get("item_train_pos"), user_train_pos=tensors.get("user_train_pos"),
        text_slots=[Slot(**s) for s in meta.get("text_slots", [])], item_text=tensors.get("item_text"),
        user_dense_names=list(meta.get("user_dense_names", [])), item_dense_names=list(meta.get("item_dense_names", [])),
        user_dense=tensors.get("user_dense"), item_dense=tensors.get("item_dense"),
        id_owner=dict(meta.get("id_owner", {})))


def _save_torch(path: Path, obj: Any) -> None:
    atomic_write_with(path, lambda f: torch.save(obj, f))


def _save_npy(path: Path, arr: np.ndarray) -> None:
    atomic_write_with(path, lambda f: np.save(f, arr, allow_pickle=False))


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ArtifactError(f"{what} name {name!r}: expected letters, digits, '_', '.', '-' (a file name)")
    return name


def _write_contents(d: Path, art: Artifact, version: str) -> None:
    spec: dict[str, Any] = {"format": FORMAT_VERSION, "history_len": int(art.history_len), "spaces": {},
                            "models": {}, "scenarios": {}, "info": art.info}
    for name, space in art.spaces.items():
        _check_name(name, "space")
        spec["spaces"][name] = space_meta(space)
        _save_torch(d / "spaces" / f"{name}.pt", {k: getattr(space, k).contiguous() for k in SPACE_TENSORS
                                                  if getattr(space, k) is not None})
    for name, entry in art.models.items():
        _check_name(name, "model")
        if entry.space not in art.spaces:
            raise ArtifactError(f"model {name!r}: space {entry.space!r} is not in the artifact")
        spec["models"][name] = {"space": entry.space, "spec": entry.spec, "weights": f"weights/{name}.pt"}
        _save_torch(d / "weights" / f"{name}.pt", {k: v.detach().contiguous() for k, v in entry.state.items()})
    for name, sc in art.scenarios.items():
        _check_name(name, "scenario")
        if sc.model not in art.models:
            raise ArtifactError(f"scenario {name!r}: model {sc.model!r} is not in the artifact")
        spec["scenarios"][name] = {"model": sc.model, "num_users": sc.num_users, "num_items": sc.num_items}
        for a in SCENARIO_ARRAYS:
            arr = getattr(sc, a)
            _save_npy(d / "scenarios" / name / f"{a}.npy", arr.astype(str) if a.endswith("_ids") else arr)
    atomic_write_json(d / SPEC_FILE, spec)
    atomic_write_json(d / CONFIG_FILE, art.config)
    files = sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())
    entries = {f: {"bytes": (d / f).stat().st_size, "sha256": file_sha256(d / f)} for f in files}
    atomic_write_json(d / MANIFEST_FILE, {"format": FORMAT_VERSION, "version": version, "files": entries})


def versions(root: Path) -> list[str]:
    """Published version names under ``root``, oldest first."""
    if not root.is_dir():
        return []
    return sorted((p.name for p in root.iterdir() if p.is_dir() and _VERSION.match(p.name)),
                  key=lambda n: int(n[1:]))


def write_version(root: Path | str, art: Artifact, make_current: bool = True) -> Path:
    """Write ``art`` as the next version ``vNNNN`` under ``root`` (temp dir, manifest last, rename into place;
    a concurrent publisher that took the number first makes this one take the next), then point ``CURRENT``
    at it (atomic replace). Returns the version directory."""
    root = Path(root)
    tmp = make_temp_dir(root, prefix=".incoming.")
    try:
        for _ in range(100):
            existing = versions(root)
            version = f"v{(int(existing[-1][1:]) + 1) if existing else 1:04d}"
            _write_contents(tmp, art, version)
            try:
                os.rename(tmp, root / version)
            except OSError:  # the name was taken meanwhile: rewrite the manifest for the next number
                (tmp / MANIFEST_FILE).unlink(missing_ok=True)
                continue
            if make_current:
                set_current(root, version)
            return root / version
        raise ArtifactError(f"{root}: could not claim a new version name after 100 tries")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def set_current(root: Path, version: str) -> None:
    if not (root / version / MANIFEST_FILE).is_file():
        raise ArtifactError(f"{root / version}: not a published version (no {MANIFEST_FILE})")
    atomic_write_text(root / CURRENT_FILE, version + "\n")


# -- reading ---------------------------------------------------------------------------------------------------
def current_version(root: Path | str) -> str:
    """The version ``CURRENT`` points at (cheap: a server polls it to hot-swap)."""
    path = Path(root) / CURRENT_FILE
    try:
        name = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ArtifactError(f"{root}: not an artifact (no {CURRENT_FILE} file; expected an artifact root made by "
                            "unirec-export)") from None
    if not _VERSION.match(name):
        raise ArtifactError(f"{path}: holds {name[:40]!r}, expected a version name like 'v0001'")
    return name


def resolve_version(path: Path) -> tuple[Path | None, Path]:
    """(root or None, version dir) for an artifact root (follows ``CURRENT``) or a version directory."""
    if (path / CURRENT_FILE).exists():
        return path, path / current_version(path)
    if (path / MANIFEST_FILE).exists():
        return (path.parent if _VERSION.match(path.name) else None), path
    raise ArtifactError(f"{path}: not an artifact (no {CURRENT_FILE} or {MANIFEST_FILE}; make one with unirec-export)")


def verify(vdir: Path) -> dict[str, Any]:
    """Hash every file against ``manifest.json``; the manifest, or :class:`ArtifactError` naming the file."""
    mpath = vdir / MANIFEST_FILE
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{mpath}: unreadable ({e})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or SPEC_FILE not in files:
        raise ArtifactError(f"{mpath}: expected {{'files': {{name: {{'bytes', 'sha256'}}}}}} listing {SPEC_FILE}")
    if manifest.get("format") != FORMAT_VERSION:
        raise ArtifactError(f"{mpath}: format {manifest.get('format')!r}, this version reads {FORMAT_VERSION}")
    base = vdir.resolve()
    for name, want in files.items():
        p = (vdir / name).resolve()
        if base not in p.parents or not isinstance(want, dict):
            raise ArtifactError(f"{mpath}: entry {name!r} is outside the version directory or malformed")
        if not p.is_file():
            raise ArtifactError(f"{vdir / name}: missing (listed in {MANIFEST_FILE}); refusing the artifact")
        digest = file_sha256(p)
        if digest != want.get("sha256"):
            raise ArtifactError(f"{vdir / name}: sha256 {digest[:12]}... does not match the manifest's "
                                f"{str(want.get('sha256'))[:12]}... (tampered or corrupt); refusing the artifact")
    unlisted = sorted(str(p.relative_to(vdir)) for p in vdir.rglob("*") if p.is_file()
                      and str(p.relative_to(vdir)) not in files and p.name != MANIFEST_FILE)
    if unlisted:
        raise ArtifactError(f"{vdir / unlisted[0]}: not listed in {MANIFEST_FILE} (added after export); "
                            "refusing the artifact")
    return manifest


def _load_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - hashes matched, so this is a malformed export
        raise ArtifactError(f"{path}: cannot be read as tensors ({type(e).__name__})") from None
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ArtifactError(f"{path}: expected a dict of tensors")
    return obj


def _load_scenario(vdir: Path, name: str, entry: dict[str, Any]) -> ScenarioData:
    arrays = {}
    for a in SCENARIO_ARRAYS:
        path = vdir / "scenarios" / name / f"{a}.npy"
        try:
            arrays[a] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ArtifactError(f"{path}: unreadable array ({e})") from None
    sc = ScenarioData(model=str(entry["model"]), **arrays)
    nu, ni = sc.num_users, sc.num_items
    if (sc.history.ndim != 2 or len(sc.history) != nu or len(sc.seen_indptr) != nu + 1
            or len(sc.popularity) != ni or (nu, ni) != (entry["num_users"], entry["num_items"])):
        raise ArtifactError(f"{vdir / 'scenarios' / name}: array sizes disagree with {SPEC_FILE} "
                            f"({nu} users, {ni} items)")
    return sc


def load_artifact(path: Path | str) -> Artifact:
    """The artifact at ``path`` (a root: the version ``CURRENT`` names; or one version directory), every file
    verified against the manifest before anything is deserialised; models are built on first use."""
    root, vdir = resolve_version(Path(path))
    t0 = time.perf_counter()
    verify(vdir)
    spec = json.loads((vdir / SPEC_FILE).read_text(encoding="utf-8"))
    config = json.loads((vdir / CONFIG_FILE).read_text(encoding="utf-8"))
    try:
        spaces = {_check_name(n, "space"): space_from(m, _load_torch(vdir / "spaces" / f"{n}.pt"))
                  for n, m in spec["spaces"].items()}
        models = {_check_name(n, "model"): ModelEntry(str(m["space"]), m["spec"], _load_torch(vdir / m["weights"]))
                  for n, m in spec["models"].items()}
        scenarios = {_check_name(n, "scenario"): _load_scenario(vdir, n, e) for n, e in spec["scenarios"].items()}
        history_len = int(spec["history_len"])
    except (KeyError, TypeError) as e:
        raise ArtifactError(f"{vdir / SPEC_FILE}: missing or malformed key {e}") from None
    art = Artifact(history_len, spaces, models, scenarios, config, dict(spec.get("info") or {}), root, vdir.name)
    try:
        for name in models:
            art.module(name)
    except SpecError as e:
        raise ArtifactError(str(e)) from None
    art.info["load_seconds"] = round(time.perf_counter() - t0, 3)
    return art
