"""A scenario from the user's own files, configured entirely in a scenario YAML (``conf/scenario/_template.yaml``).

``TableScenario`` reads an interactions table (CSV / TSV / Parquet) plus optional user and item side tables and
prepares a bundle with the same contract as the shipped loaders (``data/schema.py``):
- ``columns`` maps the file's columns to user, item and optional timestamp, rating, label, group;
- ``label.rule``: ``implicit`` (every row a positive), ``threshold`` (``rating >= threshold``) or ``column``
  (a 0/1 label column);
- ``split.protocol``: ``leave_one_out`` (per user: last row test, second-last val), ``user_chrono`` (per user:
  last ``test_frac`` test, ``val_frac`` before val), ``temporal`` (latest fractions of all rows), ``random``
  (seeded; for data without a time column). Time is the timestamp column, else the file order;
- ``negatives``: ``train`` sampled items per train positive, ``eval`` sampled items per val/test positive (the
  1-vs-N protocol, grouped per user and split), uniform over items the user never interacted with, seeded
  (``seed``) and therefore fixed across runs;
- ``users`` / ``items``: side tables whose columns become categorical / multi / text / dense fields
  (table_fields.py);
- ``slice`` + ``id_space`` + ``split.scope``: scenarios as slices of one dataset sharing one id space and one
  pooled split (table_slices.py).

No MANIFEST.tsv is needed: the fingerprint holds every parameter and the sha256 of every file read, and an
optional ``sha256`` per file pins it. Dense ids follow the sorted raw ids (as the shipped loaders do).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from unirec_lab.data.prepare import BuiltBundle
from unirec_lab.data.scenarios.base import stamp_provenance
from unirec_lab.data.scenarios.ids import dense_ids
from unirec_lab.data.scenarios.interactions import interactions_frame, make_spec
from unirec_lab.data.scenarios.negatives import with_negatives
from unirec_lab.data.scenarios.splits import PROTOCOLS, split_levels_for
from unirec_lab.data.scenarios.table_fields import check_side_spec, side_table
from unirec_lab.data.scenarios.table_io import (
    TableScenarioError,
    as_mapping,
    check_file_spec,
    check_keys,
    file_sha256,
    order_key,
    read_table,
    require_columns,
)
from unirec_lab.data.scenarios.table_slices import check_slice, scale_dense, slice_mask
from unirec_lab.features import SPLITS
from unirec_lab.utils.lazy import lazy_import

pd = lazy_import("pandas")  # imported on first use: a cached job never needs it

COLUMN_KEYS = ("user", "item", "timestamp", "rating", "label", "group")
LABEL_RULES = ("implicit", "threshold", "column")
SPLIT_KEYS = ("protocol", "val_frac", "test_frac", "min_user_rows", "scope")
SPLIT_SCOPES = ("scenario", "pooled")
NEGATIVE_KEYS = ("train", "eval")


class TableScenario:
    """A scenario source (``name`` + ``fingerprint()`` + ``build()``) over the user's own table files."""

    loader_version = 1

    def __init__(self, name: str, interactions: Mapping[str, Any], columns: Mapping[str, Any],
                 label: Mapping[str, Any] | None = None, split: Mapping[str, Any] | None = None,
                 negatives: Mapping[str, Any] | None = None, users: Mapping[str, Any] | None = None,
                 items: Mapping[str, Any] | None = None, dedupe: bool = False, seed: int = 0,
                 base_dir: str | None = None, slice: Mapping[str, Any] | None = None,  # noqa: A002
                 id_space: str | None = None) -> None:
        if not name:
            raise TableScenarioError("TableScenario: name (the scenario key) must be non-empty")
        self.name = str(name)
        w = f"scenarios.{self.name}.source"
        base = Path(base_dir).expanduser() if base_dir else Path.cwd()
        inter = as_mapping(interactions, f"{w}.interactions")
        self.files = {"interactions": check_file_spec(inter, base, f"{w}.interactions")}
        cols = as_mapping(columns, f"{w}.columns")
        check_keys(cols, COLUMN_KEYS, f"{w}.columns")
        for key in ("user", "item"):
            if not cols.get(key):
                raise TableScenarioError(f"{w}.columns.{key} is missing (the column holding the {key} id)")
        cols = {k: (None if cols.get(k) is None else str(cols[k])) for k in COLUMN_KEYS}
        lab = self._check_label(as_mapping(label, f"{w}.label"), cols, w)
        spl = self._check_split(as_mapping(split, f"{w}.split"), cols, w)
        neg = as_mapping(negatives, f"{w}.negatives")
        check_keys(neg, NEGATIVE_KEYS, f"{w}.negatives")
        neg = {k: int(neg.get(k) or 0) for k in NEGATIVE_KEYS}
        if min(neg.values()) < 0:
            raise TableScenarioError(f"{w}.negatives={neg}: counts must be >= 0")
        for entity, spec in (("users", users), ("items", items)):
            if spec is not None:
                self.files[entity] = check_side_spec(as_mapping(spec, f"{w}.{entity}"), base, f"{w}.{entity}")
        if dedupe not in (True, False):
            raise TableScenarioError(f"{w}.dedupe={dedupe!r}, expected true or false")
        sl = None if slice is None else check_slice(
            as_mapping(slice, f"{w}.slice"), {k: k in self.files for k in ("users", "items")}, f"{w}.slice")
        if id_space is not None and (not isinstance(id_space, str) or not id_space.strip()):
            raise TableScenarioError(f"{w}.id_space={id_space!r}, expected a non-empty name (or null)")
        if spl.get("scope") == "pooled" and not id_space:
            raise TableScenarioError(f"{w}.split.scope=pooled needs id_space (the name every slice of the pool "
                                     "shares; it seeds the one pooled split)")
        self.where = w
        self.params = {"files": self.files, "columns": cols, "label": lab, "split": spl, "negatives": neg,
                       "dedupe": bool(dedupe), "seed": int(seed)}
        # only when used, so the fingerprints (and cached bundles) of plain table scenarios stay as they were
        self.params.update({k: v for k, v in (("slice", sl), ("id_space", id_space or None)) if v})

    @staticmethod
    def _check_label(lab: dict[str, Any], cols: dict[str, str | None], w: str) -> dict[str, Any]:
        check_keys(lab, ("rule", "threshold"), f"{w}.label")
        rule = lab.get("rule", "implicit")
        if rule not in LABEL_RULES:
            raise TableScenarioError(f"{w}.label.rule={rule!r}, expected one of {list(LABEL_RULES)}")
        if rule == "threshold" and (cols["rating"] is None or lab.get("threshold") is None):
            raise TableScenarioError(f"{w}.label.rule=threshold needs columns.rating and label.threshold")
        if rule == "column" and cols["label"] is None:
            raise TableScenarioError(f"{w}.label.rule=column needs columns.label (a 0/1 column)")
        return {"rule": rule, "threshold": None if rule != "threshold" else float(lab["threshold"])}

    @staticmethod
    def _check_split(spl: dict[str, Any], cols: dict[str, str | None], w: str) -> dict[str, Any]:
        check_keys(spl, SPLIT_KEYS, f"{w}.split")
        protocol = spl.get("protocol", "leave_one_out")
        if protocol not in PROTOCOLS:
            raise TableScenarioError(f"{w}.split.protocol={protocol!r}, expected one of {list(PROTOCOLS)}")
        out = {"protocol": protocol, "val_frac": float(spl.get("val_frac", 0.1)),
               "test_frac": float(spl.get("test_frac", 0.1)), "min_user_rows": int(spl.get("min_user_rows", 3)),
               **({"scope": spl["scope"]} if spl.get("scope", "scenario") != "scenario" else {})}
        if out.get("scope", "scenario") not in SPLIT_SCOPES:
            raise TableScenarioError(f"{w}.split.scope={out['scope']!r}, expected one of {list(SPLIT_SCOPES)}")
        if not (0 < out["val_frac"] < 1 and 0 < out["test_frac"] < 1 and out["val_frac"] + out["test_frac"] < 1):
            raise TableScenarioError(f"{w}.split: val_frac={out['val_frac']} and test_frac={out['test_frac']} must "
                                     "each be in (0, 1) with a sum below 1")
        if protocol == "temporal" and cols["timestamp"] is None:
            raise TableScenarioError(f"{w}.split.protocol=temporal needs columns.timestamp (or use protocol=random)")
        return out

    # ------------------------------------------------------------------------------------------ source API

    def rng(self, salt: int) -> np.random.Generator:
        return np.random.default_rng([self.params["seed"], zlib.crc32(self.name.encode()), salt])

    def pool_rng(self) -> np.random.Generator:
        """The pooled split's stream: seeded by the id space, so every slice of the pool draws the same split."""
        return np.random.default_rng([self.params["seed"], zlib.crc32(str(self.params.get("id_space")).encode()), 0])

    def hashes(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, spec in self.files.items():
            out.update(file_sha256(spec, f"{self.where}.{key}"))
        return out

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": f"{type(self).__module__}.{type(self).__name__}", "loader_version": self.loader_version,
                "name": self.name, "params": self.params, "files_sha256": self.hashes()}

    def build(self) -> BuiltBundle:
        t0 = time.perf_counter()
        hashes = self.hashes()
        return stamp_provenance(self, self._build(), hashes, t0)

    # ------------------------------------------------------------------------------------------ building

    def _read_interactions(self) -> tuple[pd.DataFrame, dict[str, int]]:
        spec, cols = self.files["interactions"], self.params["columns"]
        w = f"{self.where}.columns"
        df = read_table(spec, f"{self.where}.interactions")
        require_columns(df, cols, spec["path"], w)
        used = [c for c in cols.values() if c is not None]
        sl = self.params.get("slice")
        if sl and sl["table"] == "interactions" and sl["column"] not in used:  # the slice rule's column too
            require_columns(df, {"column": sl["column"]}, spec["path"], f"{self.where}.slice")
            used.append(sl["column"])
        counts = {"rows": int(len(df))}
        df = df[used].dropna().reset_index(drop=True)
        counts["rows_with_missing_values"] = counts["rows"] - int(len(df))
        if len(df) == 0:
            raise TableScenarioError(f"{spec['path']}: no rows with all of the columns {used} filled")
        return df, counts

    def _labels(self, df: pd.DataFrame) -> np.ndarray:
        lab, cols, path = self.params["label"], self.params["columns"], self.files["interactions"]["path"]
        if lab["rule"] == "implicit":
            return np.ones(len(df), dtype=np.float32)
        if lab["rule"] == "threshold":
            r = pd.to_numeric(df[cols["rating"]], errors="coerce")
            if r.isna().any():
                bad = df[cols["rating"]][r.isna()].iloc[0]
                raise TableScenarioError(f"{path}: rating column {cols['rating']!r} has non-numeric value {bad!r}")
            return (r.to_numpy(np.float64) >= lab["threshold"]).astype(np.float32)
        v = df[cols["label"]]
        if v.dtype == object:
            v = v.astype(str).str.strip().str.lower().map({"1": 1.0, "0": 0.0, "true": 1.0, "false": 0.0})
        v = pd.to_numeric(v, errors="coerce")
        ok = v.isin([0.0, 1.0]).to_numpy()
        if not ok.all():
            bad = df[cols["label"]][~ok].iloc[0]
            raise TableScenarioError(f"{path}: label column {cols['label']!r} has value {bad!r}, expected 0/1 "
                                     "(or true/false)")
        return v.to_numpy(np.float32)

    def _rule_text(self) -> str:
        lab, cols = self.params["label"], self.params["columns"]
        if lab["rule"] == "threshold":
            return f"{cols['rating']} >= {lab['threshold']:g}"
        return "implicit (every row positive)" if lab["rule"] == "implicit" else f"column {cols['label']!r}"

    def _check_classes(self, label: np.ndarray, level: np.ndarray, df: pd.DataFrame) -> None:
        """Training and evaluation need both classes in every split; name the rule that made one class."""
        path, cols, neg = self.files["interactions"]["path"], self.params["columns"], self.params["negatives"]
        for lv, s in enumerate(SPLITS):
            vals = np.unique(label[level == lv])
            if len(vals) == 2:
                continue
            only = "positive (1)" if vals[0] > 0.5 else "negative (0)"
            hint = ""
            if self.params["label"]["rule"] == "threshold":
                r = pd.to_numeric(df[cols["rating"]]).to_numpy()
                hint = f"; ratings range over [{r.min():g}, {r.max():g}]: change label.threshold"
            elif self.params["label"]["rule"] == "implicit":
                hint = (f"; with label.rule=implicit set negatives.{'train' if lv == 0 else 'eval'} >= 1 "
                        f"(now {neg['train' if lv == 0 else 'eval']})")
            raise TableScenarioError(f"{path}: label rule {self._rule_text()} makes every {s} row {only}{hint}")

    def _check_splits(self, level: np.ndarray, user: np.ndarray) -> None:
        spl = self.params["split"]
        for lv, s in enumerate(SPLITS):
            if not (level == lv).any():
                n_users, sizes = len(np.unique(user)), np.bincount(user)
                raise TableScenarioError(
                    f"{self.files['interactions']['path']}: split protocol {spl['protocol']} ({spl}) leaves split "
                    f"{s!r} empty ({len(user)} rows, {n_users} users, {int((sizes >= spl['min_user_rows']).sum())} "
                    f"with >= min_user_rows rows)")

    def _observed(self) -> tuple[pd.DataFrame, np.ndarray, dict[str, int]]:
        """The interaction rows (deduplicated when asked), their order key and raw counts."""
        cols, path = self.params["columns"], self.files["interactions"]["path"]
        df, counts = self._read_interactions()
        ts = (order_key(df[cols["timestamp"]], path, cols["timestamp"]) if cols["timestamp"]
              else np.arange(len(df), dtype=np.int64))
        if self.params["dedupe"]:  # one row per (user, item): the latest (ties: the later in the file)
            df = df.assign(_ts=ts, _row=np.arange(len(df)))
            df = df.sort_values(["_ts", "_row"]).drop_duplicates([cols["user"], cols["item"]], keep="last")
            df = df.sort_values("_row")
            ts = df.pop("_ts").to_numpy(np.int64)
            df = df.drop(columns="_row").reset_index(drop=True)
        counts["duplicates_removed"] = counts["rows"] - counts["rows_with_missing_values"] - int(len(df))
        return df, ts, counts

    def _side_tables(self, user_ids: np.ndarray, item_ids: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame, list,
                                                                                  list, dict[str, Any]]:
        users, items = pd.DataFrame({"user": np.arange(len(user_ids))}), pd.DataFrame({"item": np.arange(len(item_ids))})
        user_fields: list = []
        item_fields: list = []
        info: dict[str, Any] = {}
        if "users" in self.files:
            users, user_fields, info["users"] = side_table(self.files["users"], user_ids, "user", f"{self.where}.users")
        if "items" in self.files:
            items, item_fields, info["items"] = side_table(self.files["items"], item_ids, "item", f"{self.where}.items")
        return users, items, user_fields, item_fields, info

    def _protocol(self, group_by: str) -> str:
        spl, neg, cols = self.params["split"], self.params["negatives"], self.params["columns"]
        fracs = "" if spl["protocol"] == "leave_one_out" else f" val {spl['val_frac']:g} test {spl['test_frac']:g}"
        return (f"label {self._rule_text()}; split {spl['protocol']}{fracs}; {neg['train']} sampled negative(s) per "
                f"train positive; {neg['eval']} per val/test positive; ts = {cols['timestamp'] or 'file order'}; "
                f"grouped by {group_by}")

    def _rows(self) -> tuple[pd.DataFrame, np.ndarray, dict[str, int], dict[str, Any]]:
        """The observed rows with dense ids, labels and split levels (``df`` gets ``_user``, ``_item``,
        ``_label``, ``_level``), cut to the slice. With an id space the ids (and a pooled split) come from the
        whole table, so every slice of it agrees on them; ``pool`` keeps the whole table's ids, train rows."""
        p, cols, w = self.params, self.params["columns"], self.where
        df, ts, counts = self._observed()
        keep = slice_mask(df, cols, p.get("slice"), self.files, f"{w}.slice") if p.get("slice") else None
        if keep is not None and not p.get("id_space"):  # a slice with its own ids: cut first
            df, ts, keep = df[keep].reset_index(drop=True), ts[keep], None
        user, user_ids = dense_ids(df[cols["user"]])
        item, item_ids = dense_ids(df[cols["item"]])
        df = df.assign(_user=user, _item=item, _label=self._labels(df), _ts=ts)
        pool: dict[str, Any] = {"user_ids": user_ids, "item_ids": item_ids}
        if p["split"].get("scope") == "pooled":
            df["_level"] = split_levels_for(p["split"]["protocol"], user, ts, p["split"], self.pool_rng())
            pool["train_users"] = user[df["_level"].to_numpy() == 0]
            pool["train_items"] = item[df["_level"].to_numpy() == 0]
        if keep is not None:
            counts["rows_outside_slice"] = int((~keep).sum())
            df = df[keep].reset_index(drop=True)
        if p["split"].get("scope") != "pooled":
            df["_level"] = split_levels_for(p["split"]["protocol"], df["_user"].to_numpy(), df["_ts"].to_numpy(),
                                            p["split"], self.rng(0))
        return df, df.pop("_ts").to_numpy(np.int64), counts, pool

    def _dense(self, users: pd.DataFrame, items: pd.DataFrame, user_fields: list, item_fields: list,
               train_users: np.ndarray, train_items: np.ndarray) -> dict[str, Any]:
        """Scale the dense fields with the statistics of the training rows (their users' / items' values)."""
        out: dict[str, Any] = {}
        for entity, frame, fields, rows in (("users", users, user_fields, train_users),
                                            ("items", items, item_fields, train_items)):
            scale = {f["name"]: f["scale"] for f in self.files.get(entity, {}).get("fields", [])}
            for how in ("minmax", "standard", "none"):
                names = [f.name for f in fields if f.kind == "dense" and scale.get(f.name) == how]
                if names:
                    out.update(scale_dense(frame, names, rows, how))
        return out

    def _shared_fields(self, fields: list, entity: str) -> list:
        """Slices of one id space share their field tables: private fields (a vocabulary built from the whole
        side table, the same in every slice) move to the namespace ``shared:<id_space>/<entity>/<field>``."""
        space = self.params.get("id_space")
        if not space:
            return fields
        if self.params["split"].get("scope") != "pooled":  # dense values are scaled per slice: keep them private
            return [f if f.namespace != "private" or f.kind == "dense"
                    else replace(f, namespace=f"shared:{space}/{entity}/{f.name}") for f in fields]
        return [f if f.namespace != "private" else replace(f, namespace=f"shared:{space}/{entity}/{f.name}")
                for f in fields]

    def _build(self) -> BuiltBundle:
        p, cols = self.params, self.params["columns"]
        df, ts, counts, pool = self._rows()
        user_ids, item_ids = pool["user_ids"], pool["item_ids"]
        user, item = df["_user"].to_numpy(), df["_item"].to_numpy()
        nu, ni = len(user_ids), len(item_ids)
        label, level = df["_label"].to_numpy(np.float32), df["_level"].to_numpy(np.int64)
        self._check_splits(level, user)
        if cols["group"] is not None:
            group, group_by = dense_ids(df[cols["group"]])[0], f"column {cols['group']!r}"
        elif p["negatives"]["eval"]:
            group, group_by = 3 * user + level, "user_split"
        else:
            group, group_by = user.copy(), "user"
        rows = {"user": user, "item": item, "label": label, "ts": ts, "level": level, "group": group}
        if cols["rating"]:
            rows["rating"] = pd.to_numeric(df[cols["rating"]], errors="coerce").to_numpy(np.float64)
        k_tr, k_ev = p["negatives"]["train"], p["negatives"]["eval"]
        if k_ev > ni - 1:
            raise TableScenarioError(f"{self.files['interactions']['path']}: negatives.eval={k_ev} but only {ni} "
                                     "items exist")
        rows = with_negatives(rows, ni, k_tr, k_ev, self.rng(1), self.rng(2))
        self._check_classes(rows["label"], rows["level"], df)
        inter = interactions_frame(rows["user"], rows["item"], rows["label"], rows["ts"], rows["level"],
                                   rows["group"], rating=rows.get("rating"))
        users, items, user_fields, item_fields, side_info = self._side_tables(user_ids, item_ids)
        train = level == 0
        dense = self._dense(users, items, user_fields, item_fields, pool.get("train_users", user[train]),
                            pool.get("train_items", item[train]))
        if dense:
            side_info["dense_scaling"] = dense
        user_fields, item_fields = self._shared_fields(user_fields, "user"), self._shared_fields(item_fields, "item")
        spec = make_spec(self.name, nu, ni, user_fields, item_fields, label=self._rule_text(),
                         protocol=self._protocol(group_by), group_by=group_by,
                         dataset=f"table:{Path(self.files['interactions']['paths'][0]).name}",
                         eval_negatives=k_ev, train_negatives=k_tr)
        if p.get("id_space"):
            spec = replace(spec, id_space=str(p.get("id_space")))
        prov = {"raw_counts": {**counts, "users": int(nu), "items": int(ni), "interactions": int(len(user))},
                "side_tables": side_info, "raw_user_ids": "dense id = rank of the raw user id",
                "raw_item_ids": "dense id = rank of the raw item id"}
        return BuiltBundle(spec, inter, users, items, prov)
