"""The scenario bundle: the one data contract every scenario (real or synthetic) is prepared into.

A bundle is a directory holding
- ``interactions.parquet``: ``user``, ``item`` (dense ids ``0..n-1`` within the scenario), ``label`` (0/1
  float), ``ts`` (int64 order key), ``split`` (``train``/``val``/``test``), optional ``group`` (int64 id used by
  grouped ranking metrics), optional ``rating`` (float), optional ``history`` (list<int> of item ids: an
  explicit behaviour history, e.g. MIND's click history; otherwise it is derived from earlier positives);
- ``users.parquet`` / ``items.parquet``: one row per id (column ``user`` / ``item``) plus feature columns.
  Categorical fields are int (``0`` = missing, values ``1..vocab_size-1``); multi-valued and text fields are
  ``list<int>`` with the same convention; dense fields are finite floats, already scaled (train statistics);
- ``feature_spec.json``: sizes and every field's kind, vocabulary size and namespace (models read sizes from here);
- ``stats.json``: counts, density, label rate and provenance;
- ``MANIFEST.json``: every file above with its size and sha256, written last (``unirec_lab/utils/manifest.py``):
  a bundle without it is incomplete, one that does not match it is corrupt or was edited.

Models never special-case a dataset: everything they need is in this contract.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unirec_lab.data.history import mean_history_len
from unirec_lab.features import SPLITS
from unirec_lab.utils.atomic import atomic_write_text
from unirec_lab.utils.lazy import lazy_import
from unirec_lab.utils.manifest import manifest_problem, write_manifest

pd = lazy_import("pandas")  # a cached job reads no frame (data/derived.py): neither import on its start-up
pa = lazy_import("pyarrow")

FIELD_KINDS = ("categorical", "multi", "text", "text_embedding", "dense")
BUNDLE_FILES = ("interactions.parquet", "users.parquet", "items.parquet", "feature_spec.json", "stats.json")
SPEC_VERSION = 1


class BundleError(ValueError):
    """Raised with a one-line message naming the file, field and value when a bundle breaks the contract."""


@dataclass(frozen=True)
class FieldSpec:
    """One user or item feature column.

    ``namespace`` is ``"private"`` (the table belongs to this scenario) or ``"shared:<name>"`` (one table shared
    by every scenario that names it, e.g. text tokens or a generic category vocabulary).
    """

    name: str
    kind: str
    vocab_size: int
    namespace: str = "private"
    max_len: int = 1

    def table_key(self, scenario: str, entity: str) -> str:
        """Key of the embedding table this field is looked up in."""
        if self.namespace == "private":
            return f"{scenario}/{entity}/{self.name}"
        if self.namespace.startswith("shared:") and len(self.namespace) > len("shared:"):
            return "shared/" + self.namespace.split(":", 1)[1]
        raise BundleError(f"field {self.name!r}: namespace {self.namespace!r} is not 'private' or 'shared:<name>'")


@dataclass(frozen=True)
class FeatureSpec:
    """Everything a model needs to size itself for one scenario."""

    scenario: str
    num_users: int
    num_items: int
    user_fields: tuple[FieldSpec, ...] = ()
    item_fields: tuple[FieldSpec, ...] = ()
    has_group: bool = False
    has_history: bool = False
    max_history_len: int = 0
    label: str = ""
    version: int = SPEC_VERSION
    # scenarios naming the same id space are slices of one dataset: one user / item id range (and, through
    # ``shared:`` field namespaces, one field vocabulary) for all of them; "" = the scenario's own ids
    id_space: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "feature_spec.json") -> FeatureSpec:
        try:
            d = dict(d)
            d["user_fields"] = tuple(FieldSpec(**f) for f in d.get("user_fields", ()))
            d["item_fields"] = tuple(FieldSpec(**f) for f in d.get("item_fields", ()))
            return cls(**d)
        except (TypeError, ValueError) as e:
            raise BundleError(f"{source}: does not match the feature spec schema ({e})") from None


def _check_ids(df: pd.DataFrame, col: str, n: int, where: str) -> None:
    if col not in df.columns:
        raise BundleError(f"{where}: missing column {col!r}")
    if not np.issubdtype(df[col].dtype, np.integer):
        raise BundleError(f"{where}: column {col!r} has dtype {df[col].dtype}, expected an integer type")
    if len(df) and (df[col].min() < 0 or df[col].max() >= n):
        raise BundleError(
            f"{where}: column {col!r} has values in [{df[col].min()}, {df[col].max()}], expected [0, {n})"
        )


def _check_field(df: pd.DataFrame, f: FieldSpec, where: str) -> None:
    if f.kind not in FIELD_KINDS:
        raise BundleError(f"{where}: field {f.name!r} has kind {f.kind!r}, expected one of {FIELD_KINDS}")
    if f.name not in df.columns:
        raise BundleError(f"{where}: feature_spec names field {f.name!r} but the column is missing")
    col = df[f.name]
    if f.kind == "text_embedding":
        _check_text_embedding(col, f, where)
        return
    if f.kind == "dense":
        vals = col.to_numpy()
        if not np.issubdtype(vals.dtype, np.floating) or not np.isfinite(vals).all():
            raise BundleError(f"{where}: dense field {f.name!r} must hold finite floats (dtype {vals.dtype})")
        return
    if f.kind == "categorical":
        vals = col.to_numpy()
        if not np.issubdtype(vals.dtype, np.integer):
            raise BundleError(f"{where}: categorical field {f.name!r} has dtype {vals.dtype}, expected int")
    else:
        arr = pa.array(col)
        if not pa.types.is_list(arr.type) and not pa.types.is_large_list(arr.type):
            raise BundleError(f"{where}: {f.kind} field {f.name!r} has type {arr.type}, expected list<int>")
        lens = arr.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
        vals = arr.flatten().to_numpy(zero_copy_only=False)
        if len(lens) and lens.max() > f.max_len:
            raise BundleError(f"{where}: field {f.name!r} has a list of length {lens.max()} > max_len {f.max_len}")
    if len(vals) and (vals.min() < 0 or vals.max() >= f.vocab_size):
        raise BundleError(
            f"{where}: field {f.name!r} has values in [{vals.min()}, {vals.max()}], expected [0, {f.vocab_size})"
        )


def _check_text_embedding(col: pd.Series, f: FieldSpec, where: str) -> None:
    """A frozen-encoder vector per row: ``list<float>`` of exactly ``max_len`` values, or empty (no text)."""
    arr = pa.array(col)
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)) or not pa.types.is_floating(
            arr.type.value_type):
        raise BundleError(f"{where}: text_embedding field {f.name!r} has type {arr.type}, expected list<float>")
    lens = arr.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    bad = (lens != 0) & (lens != f.max_len)
    if bad.any():
        raise BundleError(f"{where}: text_embedding field {f.name!r} has a vector of length {lens[bad][0]}, "
                          f"expected {f.max_len} (or empty)")


def validate_bundle(spec: FeatureSpec, inter: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame,
                    where: str = "bundle") -> None:
    """Check every rule of the contract; raise :class:`BundleError` naming the first violation."""
    w = f"{where}/interactions.parquet"
    for col in ("label", "ts", "split"):
        if col not in inter.columns:
            raise BundleError(f"{w}: missing column {col!r}")
    _check_ids(inter, "user", spec.num_users, w)
    _check_ids(inter, "item", spec.num_items, w)
    bad = ~inter["split"].isin(SPLITS)
    if bad.any():
        raise BundleError(f"{w}: split value {inter['split'][bad].iloc[0]!r}, expected one of {SPLITS}")
    labels = inter["label"].to_numpy()
    if not np.isin(labels, (0.0, 1.0)).all():
        raise BundleError(f"{w}: label values must be 0/1, found {labels[~np.isin(labels, (0.0, 1.0))][0]!r}")
    for s in SPLITS:
        if not (inter["split"] == s).any():
            raise BundleError(f"{w}: split {s!r} is empty (scenario {spec.scenario!r} after filtering)")
    if spec.has_group and "group" not in inter.columns:
        raise BundleError(f"{w}: feature_spec says has_group but column 'group' is missing")
    if spec.has_history and "history" not in inter.columns:
        raise BundleError(f"{w}: feature_spec says has_history but column 'history' is missing")
    validate_tables(spec, users, items, where)


def validate_tables(spec: FeatureSpec, users: pd.DataFrame, items: pd.DataFrame, where: str = "bundle") -> None:
    """The users / items half of :func:`validate_bundle` (a cached job reads its rows from the derived arrays)."""
    for df, col, n, fields, name in ((users, "user", spec.num_users, spec.user_fields, "users.parquet"),
                                     (items, "item", spec.num_items, spec.item_fields, "items.parquet")):
        _check_ids(df, col, n, f"{where}/{name}")
        if len(df) != n or df[col].nunique() != n:
            raise BundleError(f"{where}/{name}: expected exactly one row per {col} id 0..{n - 1}, got {len(df)} rows")
        for f in fields:
            _check_field(df, f, f"{where}/{name}")


def compute_stats(spec: FeatureSpec, inter: pd.DataFrame) -> dict[str, Any]:
    """Counts a reader checks before trusting a bundle (and that tests compare with published figures)."""
    n = len(inter)
    pos = inter["label"].to_numpy() > 0.5
    per_split = {s: int((inter["split"] == s).sum()) for s in SPLITS}
    stats: dict[str, Any] = {
        "scenario": spec.scenario,
        "users": int(inter["user"].nunique()),
        "items": int(inter["item"].nunique()),
        "num_users": spec.num_users,
        "num_items": spec.num_items,
        "rows": n,
        "positives": int(pos.sum()),
        "label_rate": float(pos.mean()) if n else 0.0,
        "density": float(n / max(1, spec.num_users * spec.num_items)),
        "rows_per_split": per_split,
    }
    if "group" in inter.columns:
        stats["groups"] = int(inter["group"].nunique())
    if "history" in inter.columns:
        stats["mean_history_len"] = mean_history_len(inter, cap=None)
    return stats


def write_bundle(out_dir: Path, spec: FeatureSpec, inter: pd.DataFrame, users: pd.DataFrame,
                 items: pd.DataFrame, provenance: dict[str, Any]) -> dict[str, Any]:
    """Validate and write a bundle into ``out_dir`` (which the caller renames into place atomically)."""
    out_dir = Path(out_dir)
    validate_bundle(spec, inter, users, items, where=str(out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    inter.reset_index(drop=True).to_parquet(out_dir / "interactions.parquet", index=False)
    users.sort_values("user").reset_index(drop=True).to_parquet(out_dir / "users.parquet", index=False)
    items.sort_values("item").reset_index(drop=True).to_parquet(out_dir / "items.parquet", index=False)
    atomic_write_text(out_dir / "feature_spec.json", spec.to_json())
    stats = compute_stats(spec, inter)
    stats["provenance"] = provenance
    atomic_write_text(out_dir / "stats.json", json.dumps(stats, indent=2, sort_keys=True, default=str))
    write_manifest(out_dir, BUNDLE_FILES)
    return stats


@dataclass
class Bundle:
    """A loaded bundle. Opened with ``read_bundle(..., interactions=False, tables=False)`` (a job whose rows and
    feature columns come from the cached derived arrays), its frames are read and checked only when asked for."""

    spec: FeatureSpec
    _interactions: pd.DataFrame | None
    _users: pd.DataFrame | None
    _items: pd.DataFrame | None
    stats: dict[str, Any]
    path: Path
    version_dir: Path | None = None

    def _real(self) -> Path:
        real = self.version_dir or self.path.resolve()
        problem = bundle_problem(real)
        if problem is not None:
            raise BundleError(f"bundle {self.path} failed its manifest ({problem}); re-run prepare")
        return real

    def _tables(self) -> None:
        if self._users is None or self._items is None:
            real = self._real()
            users, items = _read_parquet(real / "users.parquet"), _read_parquet(real / "items.parquet")
            validate_tables(self.spec, users, items, where=str(real))
            self._users, self._items = users, items

    @property
    def users(self) -> pd.DataFrame:
        self._tables()
        return self._users

    @property
    def items(self) -> pd.DataFrame:
        self._tables()
        return self._items

    @property
    def interactions(self) -> pd.DataFrame:
        if self._interactions is None:
            real = self._real()
            inter = _read_parquet(real / "interactions.parquet")
            validate_bundle(self.spec, inter, self.users, self.items, where=str(real))
            _check_stats(self.stats, inter, real / "stats.json")
            self._interactions = inter
        return self._interactions


def bundle_problem(path: Path) -> str | None:
    """``None`` when the bundle at ``path`` (a version dir or the symlink to one) matches its manifest, else why."""
    path = Path(path)
    if not path.exists():
        return f"its version {os.readlink(path)} is missing" if path.is_symlink() else "missing"
    return manifest_problem(path.resolve(), BUNDLE_FILES)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{path}: unreadable JSON ({e})") from None


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as e:
        raise BundleError(f"{path}: unreadable parquet ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
                          ) from None


def _check_stats(stats: Any, inter: pd.DataFrame, where: Path) -> None:
    """stats.json must describe the interactions it sits next to (its label rate ends up in result.json)."""
    check_stats_counts(stats, len(inter), int((inter["label"].to_numpy() > 0.5).sum()), where)


def check_stats_counts(stats: Any, rows: int, positives: int, where: Path) -> None:
    """:func:`_check_stats` on counts (a cached job counts the derived label array instead of the frame)."""
    if not isinstance(stats, dict):
        raise BundleError(f"{where}: expected a JSON object of counts, got {type(stats).__name__}")
    actual = {"rows": rows, "positives": positives}
    for key, value in actual.items():
        if stats.get(key) != value:
            raise BundleError(f"{where}: {key} = {stats.get(key)!r} but interactions.parquet has {value} "
                              "(stale or edited; re-run prepare with force=true)")


def read_bundle(path: Path, interactions: bool = True, tables: bool = True) -> Bundle:
    """Load and validate a bundle directory (or the symlink to its current version, resolved once so that
    every file comes from one version even if the bundle is republished meanwhile). ``interactions=False`` /
    ``tables=False`` defer reading the interactions / users and items frames to their first use (:class:`Bundle`)."""
    path = Path(path)
    real = path.resolve()
    problem = bundle_problem(real)
    if problem is not None:
        raise BundleError(f"bundle {path} failed its manifest ({problem}); re-run prepare")
    spec = FeatureSpec.from_dict(_read_json(real / "feature_spec.json"), source=str(real / "feature_spec.json"))
    stats = _read_json(real / "stats.json")
    if not tables:
        return Bundle(spec, None, None, None, stats, path, real)
    users = _read_parquet(real / "users.parquet")
    items = _read_parquet(real / "items.parquet")
    if not interactions:
        validate_tables(spec, users, items, where=str(real))
        return Bundle(spec, None, users, items, stats, path, real)
    inter = _read_parquet(real / "interactions.parquet")
    validate_bundle(spec, inter, users, items, where=str(real))
    _check_stats(stats, inter, real / "stats.json")
    return Bundle(spec, inter, users, items, stats, path, real)
