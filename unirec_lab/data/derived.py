"""Per-bundle arrays derived once and cached beside the bundle: ids, labels, split levels, dense group ids, time
ranks, and the behaviour histories stored once per (user, cut-off time, split) with an index per row.

Why: every job used to rebuild the histories and convert the split column from the interactions frame (~10 s on
Beauty), and Beauty's 1-vs-99 candidate rows repeat one history per user ~100 times (~730 MiB). Here they are built
the first time a (bundle version, ``history_len``, ``history.feedback``) is used, by ``unirec-prepare`` or a job's
``prepare_data``, and published as ``<bundle version>/derived/<key>/``: ``.npy`` files, ``meta.json`` (which bundle
bytes they come from) and ``MANIFEST.json`` (size and sha256 of each, written last). Later jobs memory-map them
without pandas. A derived directory that fails its manifest or comes from other bundle bytes is rebuilt, with one
log line saying why; a concurrent builder that loses the race discards its own copy.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from unirec_lab.data.history import (
    ACTION_POSITIVE,
    build_feedback_histories,
    chunk_positions,
    pad_histories,
    split_levels,
)
from unirec_lab.data.schema import FeatureSpec, FieldSpec, read_bundle
from unirec_lab.features import SPLIT_LEVEL, SPLITS
from unirec_lab.utils.atomic import atomic_write_json, make_temp_dir, remove_stale
from unirec_lab.utils.manifest import MANIFEST_FILE, manifest_problem, write_manifest
from unirec_lab.utils.memory import ensure_fits, history_bytes

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
DERIVED_VERSION = 2  # bump when the derivation changes: directories of an older version are then rebuilt
STALE_SECONDS = 3600.0
ARRAYS = ("user", "item", "label", "group", "hist_index", "train_ts_rank", "hist_items", "hist_actions")
META = "meta.json"
TABLES = ("users", "items")


@dataclass(frozen=True)
class ListColumn:
    """A list column laid out as Arrow does: row ``r`` is ``values[offsets[r]:offsets[r + 1]]``."""

    offsets: np.ndarray  # int64 [n + 1]
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1


Columns = dict[str, "np.ndarray | ListColumn"]


@dataclass(frozen=True)
class BundleTables:
    """What :func:`~unirec_lab.data.feature_space.build_feature_space` reads of a bundle: its spec and the id and
    field columns of its users / items (from the cache: no parquet, no pandas)."""

    spec: FeatureSpec
    users: Columns
    items: Columns


def table_columns(df: pd.DataFrame, entity: str, fields: tuple[FieldSpec, ...]) -> Columns:
    """The id column and every field column of a users / items frame (list fields as :class:`ListColumn`)."""
    import pyarrow as pa

    out: Columns = {entity: df[entity].to_numpy()}
    for f in fields:
        col = df[f.name]
        if f.kind in ("categorical", "dense"):
            out[f.name] = col.to_numpy()
            continue
        arr = pa.array(col)
        lens = arr.value_lengths().fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        out[f.name] = ListColumn(np.concatenate([[0], np.cumsum(lens)]),
                                 arr.flatten().to_numpy(zero_copy_only=False))
    return out


def _table_files(tables: dict[str, Columns]) -> dict[str, np.ndarray]:
    files = {}
    for t, cols in tables.items():
        for name, col in cols.items():
            if isinstance(col, ListColumn):
                files[f"{t}.{name}.offsets"], files[f"{t}.{name}.values"] = col.offsets, col.values
            else:
                files[f"{t}.{name}"] = col
    return files


def derived_key(history_len: int, feedback: str, eval_chunk: int | None = None) -> str:
    return f"v{DERIVED_VERSION}-len{history_len}-{feedback}" + (f"-evalchunk{eval_chunk}" if eval_chunk else "")


@dataclass(frozen=True)
class Derived:
    """A bundle's derived arrays (scenario-local ids; read-only memory maps when loaded from the cache).

    Rows are ordered train, val, test (bundle order within each split), so a split is a contiguous, zero-copy
    slice (:meth:`rows`). ``hist_items[hist_index[r]]`` is row ``r``'s history (local item ids, oldest first,
    ``-1`` = padding) and ``hist_actions[hist_index[r]]`` the feedback on each entry (see ``data.history``)."""

    user: np.ndarray  # int32 [n]
    item: np.ndarray  # int32 [n]
    label: np.ndarray  # uint8 [n]: 0/1
    group: np.ndarray  # int32 [n]: dense 0..n_groups-1 (the ``group`` column, else the user)
    hist_index: np.ndarray  # int32 [n]
    train_ts_rank: np.ndarray  # int32 [train rows]: dense rank of ``ts`` (order only; chunked training)
    hist_items: np.ndarray  # int32 [h, history_len]
    hist_actions: np.ndarray  # int8 [h, history_len]
    n_groups: int
    split_rows: tuple[int, int, int]
    tables: dict[str, Columns] = field(default_factory=dict)  # "users" / "items" -> columns

    def rows(self, split: str) -> slice:
        i = SPLITS.index(split)
        start = sum(self.split_rows[:i])
        return slice(start, start + self.split_rows[i])


def derive(inter: pd.DataFrame, history_len: int, feedback: str, eval_chunk: int | None = None) -> Derived:
    """The arrays of one interactions frame. Rows with the same user, ``ts`` and split see the same history (the
    rule of :func:`~unirec_lab.data.history.build_feedback_histories`), so it is computed and kept once for them.
    ``eval_chunk``: val/test rows keep only the entries of their own chunk (``history.eval_chunk``), so each of
    them gets its own cut copy of its history."""
    n = len(inter)
    user = inter["user"].to_numpy(np.int64)
    level = split_levels(inter["split"]).astype(np.int8)
    ts_rank = np.unique(inter["ts"].to_numpy(), return_inverse=True)[1].reshape(-1).astype(np.int64)
    raw_group = inter["group"].to_numpy() if "group" in inter.columns else user
    uniq, group = np.unique(raw_group, return_inverse=True)
    if "history" in inter.columns:  # an explicit click history per row: every entry a positive
        ensure_fits(history_bytes(n, history_len), "data.history_len", history_len, f"the histories ({n} rows)")
        items = pad_histories(inter["history"], history_len)
        actions = np.where(items >= 0, ACTION_POSITIVE, 0).astype(np.int8)
        index = np.arange(n)
    else:
        n_t = int(ts_rank.max()) + 1 if n else 1
        key = (user * n_t + ts_rank) * 3 + level
        _, first, index = np.unique(key, return_index=True, return_inverse=True)
        ensure_fits(history_bytes(len(first), history_len), "data.history_len", history_len,
                    f"the behaviour histories ({len(first)} distinct (user, time, split) of {n} rows)")
        items, actions = build_feedback_histories(user, inter["item"].to_numpy(), inter["label"].to_numpy(),
                                                  ts_rank, level, history_len, feedback, query=first)
    if eval_chunk is not None:
        items, actions, index = cut_eval_histories(items, actions, index.reshape(-1), user, ts_rank, level,
                                                   eval_chunk)
    order = np.argsort(level, kind="stable")  # train, val, test; bundle order within each
    counts = np.bincount(level, minlength=3)
    return Derived(user=user[order].astype(np.int32), item=inter["item"].to_numpy(np.int32)[order],
                   label=(inter["label"].to_numpy()[order] > 0.5).astype(np.uint8),
                   group=group.reshape(-1)[order].astype(np.int32),
                   hist_index=index.reshape(-1)[order].astype(np.int32),
                   train_ts_rank=ts_rank[order[:counts[0]]].astype(np.int32), hist_items=items.astype(np.int32),
                   hist_actions=actions, n_groups=len(uniq), split_rows=tuple(int(c) for c in counts[:3]))


def cut_eval_histories(items: np.ndarray, actions: np.ndarray, index: np.ndarray, user: np.ndarray,
                       ts: np.ndarray, level: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AKT's evaluation (``history.eval_chunk``): a val/test row sees only the earlier rows of its own chunk of
    ``chunk`` consecutive rows of its user, so its entries before the chunk start are dropped (one cut copy per
    evaluated row, appended to the history table; training rows keep their shared histories)."""
    within = chunk_positions(user, ts, chunk)
    ev = np.flatnonzero(level != SPLIT_LEVEL["train"])
    width = items.shape[1]
    drop = np.arange(width)[None, :] < width - within[ev][:, None]
    cut_items = np.where(drop, -1, items[index[ev]])
    cut_actions = np.where(drop, 0, actions[index[ev]]).astype(actions.dtype)
    index = index.copy()
    index[ev] = len(items) + np.arange(len(ev))
    return np.concatenate([items, cut_items]), np.concatenate([actions, cut_actions]), index


def _bundle_digest(bundle: Path) -> str | None:
    """sha256 of the bundle's interactions.parquet as its (already verified) manifest records it."""
    try:
        doc = json.loads((bundle / MANIFEST_FILE).read_text(encoding="utf-8"))
        return str(doc["files"]["interactions.parquet"]["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def derived_problem(path: Path, bundle: Path, history_len: int, feedback: str,
                    eval_chunk: int | None = None) -> str | None:
    """``None`` when ``path`` holds the derived arrays of ``bundle``'s current bytes, else why not (one line)."""
    if not path.is_dir():
        return "missing"
    problem = manifest_problem(path, (*(f"{a}.npy" for a in ARRAYS), META))
    if problem is not None:
        return problem
    meta = json.loads((path / META).read_text(encoding="utf-8"))
    want = {"derived_version": DERIVED_VERSION, "history_len": history_len, "feedback": feedback,
            "eval_chunk": eval_chunk, "interactions_sha256": _bundle_digest(bundle)}
    for k, v in want.items():
        if meta.get(k) != v:
            return f"{META}: {k} = {meta.get(k)!r}, expected {v!r} (built from other bundle bytes or settings)"
    return None


def write_derived(out: Path, d: Derived, meta: dict[str, object]) -> None:
    tables = _table_files(d.tables)
    for name, arr in [*((a, getattr(d, a)) for a in ARRAYS), *tables.items()]:
        np.save(out / f"{name}.npy", arr)
    columns = {t: {c: "list" if isinstance(v, ListColumn) else "flat" for c, v in cols.items()}
               for t, cols in d.tables.items()}
    atomic_write_json(out / META, {**meta, "n_groups": d.n_groups, "split_rows": list(d.split_rows),
                                   "histories": len(d.hist_items), "columns": columns})
    write_manifest(out, (*(f"{a}.npy" for a in [*ARRAYS, *tables]), META))


def ensure_derived(bundle: Path | str, history_len: int, feedback: str, eval_chunk: int | None = None) -> Path:
    """The directory of ``bundle``'s derived arrays for these settings, built and published first when absent,
    stale or corrupt. ``bundle``: a verified bundle (version dir or its symlink)."""
    real = Path(bundle).resolve()
    final = real / "derived" / derived_key(history_len, feedback, eval_chunk)
    for p in remove_stale(final.parent, STALE_SECONDS):
        log.info("removed stale %s", p)
    reason = derived_problem(final, real, history_len, feedback, eval_chunk)
    if reason is None:
        return final
    if reason != "missing":
        log.warning("derived arrays %s failed their check (%s); rebuilding", final, reason)
    b = read_bundle(real)
    d = derive(b.interactions, history_len, feedback, eval_chunk)
    d = replace(d, tables={"users": table_columns(b.users, "user", b.spec.user_fields),
                           "items": table_columns(b.items, "item", b.spec.item_fields)})
    tmp = make_temp_dir(final.parent, prefix=f".{final.name}.")
    try:
        write_derived(tmp, d, {"derived_version": DERIVED_VERSION, "history_len": history_len,
                               "feedback": feedback, "eval_chunk": eval_chunk,
                               "interactions_sha256": _bundle_digest(real)})
        if final.exists():  # the failed one: moved aside (its readers keep their maps), removed by age
            try:
                os.rename(final, final.parent / f".{final.name}.bad-{uuid.uuid4().hex[:8]}")
            except FileNotFoundError:
                pass
        try:
            os.rename(tmp, final)
        except OSError:  # a concurrent builder published first: keep theirs if it is sound
            if derived_problem(final, real, history_len, feedback, eval_chunk) is not None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("derived arrays of %s -> %s (%d histories for %d rows)", real.name, final, len(d.hist_items),
             len(d.label))
    return final


def load_derived(path: Path) -> Derived:
    """Memory-map the arrays of a directory :func:`ensure_derived` returned (zero-copy, read-only)."""
    def load(name: str) -> np.ndarray:
        return np.load(path / f"{name}.npy", mmap_mode="r")

    meta = json.loads((path / META).read_text(encoding="utf-8"))
    tables = {t: {c: ListColumn(load(f"{t}.{c}.offsets"), load(f"{t}.{c}.values")) if kind == "list"
                  else load(f"{t}.{c}") for c, kind in cols.items()} for t, cols in meta["columns"].items()}
    return Derived(**{a: load(a) for a in ARRAYS}, n_groups=int(meta["n_groups"]),
                   split_rows=tuple(meta["split_rows"]), tables=tables)
