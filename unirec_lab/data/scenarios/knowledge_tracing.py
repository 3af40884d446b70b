"""Shared loader for the knowledge-tracing data sets (AKT / DKVMN text format) — the education scenario.

Raw format: one block of lines per student. The first line is a header (``user_idx,orig_user_id`` for the
ASSISTments files, ``seq_len`` for Statics); then one comma-separated list per column (problem ids, skill ids,
0/1 correctness, ...), all of the same length, in the order the student answered.

Protocol (every education variant):
- one row per response; label = correct (1) / incorrect (0); user = student, item = problem (or skill / tag
  where the data has no problem ids);
- ``ts`` = position in the student's sequence (0-based; the data has order only, no timestamps);
- default ``split: user_chrono``: per student, the last ``test_frac`` of the responses -> test, ``val_frac``
  before -> val (each at least 1), rest train; students with fewer than ``min_user_rows`` (3) responses go
  entirely to train;
- ``group`` = student (GAUC per student);
- ``merge_multi_skill_rows`` (default true): the ASSISTments exports list a response to a problem tagged with
  k skills k times in a row (same problem, same answer, one skill each: 51,052 of ASSIST2009's 325,637 rows).
  Left in, each copy's label sits in its own behaviour history (the earlier copy is a positive strictly before
  it), so they are merged into the first copy; every skill stays in the item's ``skills`` field. The raw
  counts (the published figures) are kept in provenance.
Dataset-specific modules (``assist2009`` ...) set the files, the columns and the item fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from unirec_lab.data.prepare import BuiltBundle
from unirec_lab.data.scenarios.base import RawScenarioSource
from unirec_lab.data.scenarios.fields import DEFAULT_TEXT_BUCKETS, list_column, multi_field, text_field
from unirec_lab.data.scenarios.ids import dense_ids, positions_in_user
from unirec_lab.data.scenarios.interactions import interactions_frame, make_spec
from unirec_lab.data.scenarios.raw import RawDataError, parse_int_array, read_json, read_lines
from unirec_lab.data.scenarios.splits import per_user_chrono_split
from unirec_lab.data.scenarios.text_embedding import optional_encoder, text_embedding_field, text_fingerprint
from unirec_lab.data.schema import FieldSpec
from unirec_lab.utils.lazy import lazy_import

pd = lazy_import("pandas")  # imported on first use: a cached job never needs it


def parse_kt_file(path: Path, columns: tuple[str, ...], header: str) -> tuple[pd.DataFrame, list[int]]:
    """Parse one KT file. ``header``: ``"user"`` (``idx,orig``) or ``"len"`` (sequence length).

    Returns (long frame with ``student`` = header user idx or block number within the file, ``seq`` = block
    number, and one column per name in ``columns``; list of header user ids or lengths).
    """
    lines = read_lines(path)
    per = 1 + len(columns)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise RawDataError(f"{path}: empty file")
    if len(lines) % per:
        raise RawDataError(f"{path}: {len(lines)} lines is not a multiple of {per} (one header + {len(columns)} "
                           f"lists per student); the last block starting at line {len(lines) - len(lines) % per + 1} "
                           "is incomplete")
    cols: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    heads, lengths = [], []
    for b in range(0, len(lines), per):
        head = parse_int_array(lines[b], path, b + 1)
        if header == "user" and len(head) != 2:
            raise RawDataError(f"{path}:{b + 1}: expected 'user_idx,orig_user_id', got {lines[b][:60]!r}")
        if header == "len" and len(head) != 1:
            raise RawDataError(f"{path}:{b + 1}: expected the sequence length, got {lines[b][:60]!r}")
        arrs = [parse_int_array(lines[b + 1 + j], path, b + 2 + j) for j in range(len(columns))]
        n = len(arrs[0])
        for j, a in enumerate(arrs):
            if len(a) != n:
                raise RawDataError(f"{path}:{b + 2 + j}: {len(a)} values but line {b + 2} has {n} "
                                   f"(every list of a student must have the same length)")
        if header == "len" and head[0] != n:
            raise RawDataError(f"{path}:{b + 1}: header says {head[0]} responses but the lists have {n}")
        for c, a in zip(columns, arrs):
            cols[c].append(a)
        heads.append(int(head[0]))
        lengths.append(n)
    lens = np.asarray(lengths, dtype=np.int64)
    df = pd.DataFrame({c: np.concatenate(v) for c, v in cols.items()})
    df.insert(0, "seq", np.repeat(np.arange(len(lens)), lens))
    df.insert(0, "student", np.repeat(np.asarray(heads, dtype=np.int64), lens) if header == "user"
              else df["seq"].to_numpy())
    df["line"] = np.repeat(np.arange(len(lens)) * per + 2 + columns.index("correct"), lens)
    if "correct" in df and not df["correct"].isin([0, 1]).all():
        bad = df.loc[~df["correct"].isin([0, 1])].iloc[0]
        raise RawDataError(f"{path}:{int(bad['line'])}: correctness must be 0/1, found {int(bad['correct'])}")
    return df.drop(columns="line"), heads


class KnowledgeTracingScenario(RawScenarioSource):
    """Base class; subclasses set ``dataset``, ``files``, ``columns``, ``header``, ``item_column``."""

    files: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    header: str = "user"
    item_column: str = "problem"
    skill_names: str | None = None  # JSON {skill name: idx} for the text field
    fold_splits: dict[str, str] | None = None  # file -> split, for split: fold

    def __init__(self, name: str, raw_dir: str | Path, split: str = "user_chrono", val_frac: float = 0.1,
                 test_frac: float = 0.1, min_user_rows: int = 3, max_skills: int = 4, max_text_len: int = 16,
                 text_buckets: int = DEFAULT_TEXT_BUCKETS, merge_multi_skill_rows: bool = True,
                 text_encoder: dict[str, Any] | None = None, embedding_cache: str | None = None,
                 item_column: str | None = None) -> None:
        """``item_column``: which column is the item (default: the data set's, e.g. ``problem``); ``skill`` makes
        every row's own skill the item, DKT's input (a multi-skill response's copies are then different items)."""
        if text_encoder is not None and not self.skill_names:
            raise ValueError(f"scenario {name!r} ({self.dataset}): text_encoder is set but this data set has no "
                             "skill names to encode")
        if item_column is not None:
            allowed_items = [c for c in self.columns if c != "correct"]
            if item_column not in allowed_items:
                raise ValueError(f"scenario {name!r} ({self.dataset}): item_column={item_column!r}, expected one of "
                                 f"{allowed_items}")
            self.item_column = item_column
        self.encoder = optional_encoder(text_encoder)  # None: no skill_vec field (the default bundle)
        self.embedding_cache = embedding_cache
        allowed = ("user_chrono", "fold") if self.fold_splits else ("user_chrono",)
        if split not in allowed:
            raise ValueError(f"scenario {name!r} ({self.dataset}): split={split!r}, expected one of {allowed}")
        super().__init__(name, raw_dir, dict(split=split, val_frac=val_frac, test_frac=test_frac,
                                             min_user_rows=min_user_rows, max_skills=max_skills,
                                             max_text_len=max_text_len, text_buckets=text_buckets,
                                             merge_multi_skill_rows=merge_multi_skill_rows,
                                             # only when set: bundles of the default item keep their fingerprint
                                             **({} if item_column is None else {"item_column": item_column})))

    def raw_files(self) -> list[str]:
        return list(self.files) + ([self.skill_names] if self.skill_names else [])

    def fingerprint(self) -> dict[str, Any]:
        fp = super().fingerprint()
        if self.encoder is not None:  # encoder name + verified weights hash + the text (skill names)
            fp["text_embedding"] = text_fingerprint(self.encoder, ["skill_names"])
        return fp

    def read(self) -> pd.DataFrame:
        frames = []
        for f in self.files:
            df, _ = parse_kt_file(self.raw.file(f), self.columns, self.header)
            df["file"] = f
            frames.append(df)
        df = pd.concat(frames, ignore_index=True)
        if self.header == "len":  # no user ids: a student is a block; number blocks across files
            df["student"] = df.groupby(["file", "seq"], sort=False).ngroup()
        dup = df.drop_duplicates(["file", "student"]).duplicated("student")
        if dup.any():
            s = df.drop_duplicates(["file", "student"]).loc[dup, "student"].iloc[0]
            raise RawDataError(f"{self.raw.path}: student {s} appears in more than one file/block")
        return df

    def _build(self) -> BuiltBundle:
        p = self.params
        df = self.read()
        raw_counts = {"responses": int(len(df)), "students": int(df["student"].nunique()),
                      "items": int(df[self.item_column].nunique())}
        if "skill" in df:
            raw_counts["skills"] = int(df["skill"].nunique())
        if (df[self.item_column] < 0).any():
            raise RawDataError(f"{self.raw.path}: negative {self.item_column} id")
        skills_df = df
        merged = 0
        if p["merge_multi_skill_rows"] and "skill" in df and self.item_column != "skill":
            # a response to a problem with k skills is listed k times in a row (one per skill, same answer);
            # left as is, the copy's label is visible in its own history. Keep the first copy.
            prev = df.shift(1)
            dup = ((df["student"] == prev["student"]) & (df["file"] == prev["file"]) & (df["seq"] == prev["seq"])
                   & (df[self.item_column] == prev[self.item_column]) & (df["skill"] != prev["skill"])
                   & (df["correct"] == prev["correct"])).to_numpy()
            merged = int(dup.sum())
            df = df.loc[~dup].reset_index(drop=True)

        user, user_ids = dense_ids(df["student"].to_numpy())
        item, item_ids = dense_ids(df[self.item_column].to_numpy())
        skills_item = np.searchsorted(item_ids, skills_df[self.item_column].to_numpy())
        nu, ni = len(user_ids), len(item_ids)
        ts = positions_in_user(user)  # rows are in answer order within a student
        if p["split"] == "fold":
            level = df["file"].map({f: {"train": 0, "val": 1, "test": 2}[s]
                                    for f, s in self.fold_splits.items()}).to_numpy(np.int64)
            split_desc = ("published fold-1 split by student (" +
                          ", ".join(f"{f} -> {s}" for f, s in self.fold_splits.items()) + ")")
        else:
            level = per_user_chrono_split(user, ts, p["val_frac"], p["test_frac"], p["min_user_rows"])
            split_desc = (f"per-student chronological split {1 - p['val_frac'] - p['test_frac']:.0%}/"
                          f"{p['val_frac']:.0%}/{p['test_frac']:.0%} (students with <{p['min_user_rows']} "
                          "responses: train only)")
        label = df["correct"].to_numpy().astype(np.float32)
        inter = interactions_frame(user, item, label, ts, level, user)

        items = pd.DataFrame({"item": np.arange(ni)})
        item_fields: list[FieldSpec] = []
        extra: dict[str, Any] = {}
        if "skill" in df and self.item_column != "skill":
            item_fields += self._skill_fields(skills_df, skills_item, ni, items, extra)
        users = pd.DataFrame({"user": np.arange(nu)})
        spec = make_spec(
            self.name, nu, ni, [], item_fields, label="1 = answered correctly",
            protocol=f"label = correct; ts = position in the student's sequence; {split_desc}; GAUC by student",
            group_by="user", dataset=self.dataset.rsplit("/", 1)[-1], item_entity=self.item_column,
            merged_multi_skill_rows=merged, **extra)
        return BuiltBundle(spec, inter, users, items, {"raw_counts": raw_counts,
                                                       "merged_multi_skill_rows": merged})

    def _skill_fields(self, df: pd.DataFrame, item: np.ndarray, ni: int, items: pd.DataFrame,
                      extra: dict[str, Any]) -> list[FieldSpec]:
        """``skill`` (categorical: the problem's most frequent skill), ``skills`` (multi: all of them, most
        frequent first) and, when skill names exist, ``skill_text`` (their words, namespace shared:tokens)."""
        p = self.params
        skill = df["skill"].to_numpy()
        if skill.min() < 1:
            raise RawDataError(f"{self.raw.path}: skill ids must be >= 1 (0 is reserved for missing)")
        ps = pd.DataFrame({"item": item, "skill": skill}).value_counts().reset_index(name="n")
        ps = ps.sort_values(["item", "n", "skill"], ascending=[True, False, True])
        lists, longest = multi_field(ps["item"].to_numpy(), ps["skill"].to_numpy(), ni, p["max_skills"],
                                     rank=-ps["n"].to_numpy())
        first = ps.drop_duplicates("item")
        primary = np.zeros(ni, dtype=np.int64)
        primary[first["item"].to_numpy()] = first["skill"].to_numpy()
        n_skill = int(skill.max()) + 1
        items["skill"] = primary
        items["skills"] = list_column(lists)
        fields = [FieldSpec("skill", "categorical", n_skill, "private"),
                  FieldSpec("skills", "multi", n_skill, "private", max_len=max(1, longest))]
        extra["items_with_several_skills"] = int(sum(len(x) > 1 for x in lists))
        if self.skill_names:
            path = self.raw.file(self.skill_names)
            names = read_json(path)
            try:
                idx_to_name = pd.Series({int(v): str(k) for k, v in names.items()})
            except (json.JSONDecodeError, ValueError, AttributeError, TypeError) as e:
                raise RawDataError(f"{path}: expected a JSON object {{skill name: idx}} ({e})") from None
            # text of a problem = the names of its skills (in the ``skills`` order), tokenised
            flat = ps[["item", "skill"]].copy()
            flat["name"] = flat["skill"].map(idx_to_name).fillna("")
            text = flat.groupby("item", sort=True)["name"].agg(" ".join).reindex(range(ni), fill_value="")
            toks, max_len, info = text_field(text, p["max_text_len"], p["text_buckets"],
                                             vocab_texts=pd.Series(idx_to_name.to_numpy(dtype=object)))
            items["skill_text"] = list_column(toks)
            fields.append(FieldSpec("skill_text", "text", info["vocab_size"], "shared:tokens", max_len=max_len))
            extra["skill_text"] = {**info, "named_skills": int(len(idx_to_name))}
            if self.encoder is not None:  # skill names through the frozen encoder, into the shared text tower
                items["skill_vec"], f, extra["text_embedding"] = text_embedding_field(
                    text, self.encoder, "skill_vec", cache_dir=self.embedding_cache, dedupe=True)
                fields.append(f)
        return fields
