"""Unit tests of the real-scenario plumbing: ids, splits, negative sampling, fields, raw-file checks."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from unirec_lab.data import history
from unirec_lab.data.scenarios import fields, ids, negatives, raw, splits
from unirec_lab.data.scenarios.base import RawDataset
from unirec_lab.data.scenarios.raw import RawDataError
from unirec_lab.data.schema import BundleError

# ------------------------------------------------------------------------------------------------ splits


def test_per_user_chrono_split_counts_and_order():
    user = np.repeat(np.arange(4), [2, 3, 10, 20])
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(user))
    user = user[perm]
    order = rng.permutation(len(user))  # arbitrary time keys
    lv = splits.per_user_chrono_split(user, order, 0.1, 0.1, min_rows=3)
    counts = {u: np.bincount(lv[user == u], minlength=3).tolist() for u in range(4)}
    assert counts == {0: [2, 0, 0], 1: [1, 1, 1], 2: [8, 1, 1], 3: [16, 2, 2]}
    for u in range(4):  # every test row is later than every val row, which is later than every train row
        o, l_ = order[user == u], lv[user == u]
        for a, b in ((0, 1), (1, 2)):
            if (l_ == a).any() and (l_ == b).any():
                assert o[l_ == a].max() < o[l_ == b].min()


def test_per_user_chrono_split_ties_follow_row_order_and_zero_fraction():
    user = np.zeros(10, dtype=np.int64)
    ts = np.zeros(10, dtype=np.int64)  # all tied: row order decides
    lv = splits.per_user_chrono_split(user, ts, 0.1, 0.1)
    assert lv.tolist() == [0] * 8 + [1, 2]
    lv = splits.per_user_chrono_split(user, ts, 0.0, 0.2)
    assert lv.tolist() == [0] * 8 + [2, 2]


def test_positions_in_user():
    user = np.array([1, 0, 1, 0, 1])
    assert ids.positions_in_user(user).tolist() == [0, 0, 1, 1, 2]
    assert ids.positions_in_user(user, np.array([5, 1, 3, 0, 4])).tolist() == [2, 1, 0, 0, 1]


def test_split_names_roundtrip():
    lv = np.array([0, 2, 1, 1, 0])
    names = splits.split_names(lv)
    assert names.tolist() == ["train", "test", "val", "val", "train"]
    assert history.split_levels(names).tolist() == lv.tolist()


# --------------------------------------------------------------------------------------------- negatives


def test_sample_negatives_avoid_positives_distinct_and_deterministic():
    ni = 50
    rng = np.random.default_rng(1)
    user = np.repeat(np.arange(30), 20)
    item = np.concatenate([rng.choice(ni, 20, replace=False) for _ in range(30)])
    keys = ids.interaction_keys(user, item, ni)
    owners = np.arange(30)
    a = negatives.sample_negatives(owners, 25, ni, keys, np.random.default_rng(5))
    b = negatives.sample_negatives(owners, 25, ni, keys, np.random.default_rng(5))
    assert np.array_equal(a, b)
    assert a.shape == (30, 25) and a.min() >= 0 and a.max() < ni
    for u in owners:
        assert len(set(a[u])) == 25  # distinct
        assert not set(a[u]) & set(item[user == u])  # never a positive of that user
    # 30 candidates left per user, 30 asked: still possible; 31: impossible -> clear error
    full = negatives.sample_negatives(owners, 30, ni, keys, np.random.default_rng(0))
    assert all(len(set(r)) == 30 for r in full)
    with pytest.raises(RawDataError, match="could not sample"):
        negatives.sample_negatives(owners, 31, ni, keys, np.random.default_rng(0), max_rounds=5)


def test_contains_sorted():
    s = np.array([1, 4, 9])
    assert ids.contains_sorted(s, np.array([0, 1, 5, 9, 10])).tolist() == [False, True, False, True, False]
    assert not ids.contains_sorted(np.array([], dtype=np.int64), np.array([1])).any()


# ------------------------------------------------------------------------------------------------ fields


def test_multi_field_dedup_rank_cap():
    owner = np.array([0, 0, 0, 0, 2, 2])
    value = np.array([5, 3, 5, 7, 1, 2])
    lists, longest = fields.multi_field(owner, value, 3, max_len=2, rank=np.array([2, 0, 1, 3, 0, 0]))
    assert [x.tolist() for x in lists] == [[3, 5], [], [1, 2]]
    assert longest == 2


def test_text_field_hashing_is_stable_and_shared():
    texts = pd.Series(["Box and Whisker", "", None, "box-and-whisker plots!"])
    lists, max_len, info = fields.text_field(texts, max_len=3, buckets=1 << 17)
    assert [len(x) for x in lists] == [3, 0, 0, 3]
    assert lists[0].tolist() == lists[3].tolist()  # same words -> same ids
    assert lists[0][0] == fields.word_id("box", 1 << 17)  # independent of the scenario
    assert info["vocab_size"] == 1 << 17 and info["truncated_texts"] == 1 and max_len == 3
    local, _, info2 = fields.text_field(texts, max_len=5, buckets=0)
    assert info2["vocab_size"] == 5  # and, box, plots, whisker + padding 0
    assert local[3].tolist() == [2, 1, 4, 3]  # box and whisker plots


def test_mean_history_len_matches_build_histories():
    from unirec_lab.data.history import build_histories
    from unirec_lab.features import SPLIT_LEVEL

    rng = np.random.default_rng(3)
    n = 400
    df = pd.DataFrame({"user": rng.integers(0, 20, n), "item": rng.integers(0, 50, n),
                       "label": (rng.random(n) < 0.6).astype(np.float32), "ts": rng.integers(0, 60, n)})
    df["split"] = splits.split_names(splits.per_user_chrono_split(df["user"].to_numpy(), df["ts"].to_numpy()))
    h = build_histories(df["user"].to_numpy(), df["item"].to_numpy(), df["label"].to_numpy(), df["ts"].to_numpy(),
                        df["split"].map(SPLIT_LEVEL).to_numpy(), k=5)
    assert history.mean_history_len(df, cap=5) == pytest.approx((h >= 0).sum(1).mean())
    h_all = build_histories(df["user"].to_numpy(), df["item"].to_numpy(), df["label"].to_numpy(),
                            df["ts"].to_numpy(), df["split"].map(SPLIT_LEVEL).to_numpy(), k=n)
    assert (h_all >= 0).sum(1).max() > 5  # the cap matters on this data
    assert history.mean_history_len(df, cap=None) == pytest.approx((h_all >= 0).sum(1).mean())


def test_mean_history_len_of_an_explicit_history_column():
    df = pd.DataFrame({"history": [np.arange(3), np.arange(0), np.arange(30)]})
    assert history.mean_history_len(df, cap=None) == 11.0  # what stats.json reports (uncapped)
    assert history.mean_history_len(df, cap=20) == pytest.approx(23 / 3)
    assert history.mean_history_len(df.iloc[:0], cap=None) == 0.0


def test_dense_ids_sorted_and_mixed_types_as_strings():
    codes, uniq = ids.dense_ids(np.array([30, 10, 20, 10]))
    assert codes.tolist() == [2, 0, 1, 0] and uniq.tolist() == [10, 20, 30]
    codes, uniq = ids.dense_ids(pd.Series([7, "x", "7", 3.0], dtype=object))  # 7 and "7" are one id
    assert uniq.tolist() == ["3.0", "7", "x"] and codes.tolist() == [1, 2, 1, 0]


# -------------------------------------------------------------------------------------------------- raw


def _dataset(tmp_path: Path, files: dict[str, bytes], manifest: bool = True) -> RawDataset:
    folder = tmp_path / "dom" / "ds"
    folder.mkdir(parents=True)
    rows = ["file\tbytes\tsha256\tsource"]
    for name, data in files.items():
        (folder / name).write_bytes(data)
        rows.append(f"{name}\t{len(data)}\t{hashlib.sha256(data).hexdigest()}\thttp://example.invalid/{name}")
    if manifest:
        (folder / "MANIFEST.tsv").write_text("\n".join(rows) + "\n")
    return RawDataset(tmp_path, "dom/ds")


def test_raw_dataset_checks(tmp_path):
    ds = _dataset(tmp_path, {"a.txt": b"hello\n", "b.txt": b"world\n"})
    assert ds.sha256("a.txt") == hashlib.sha256(b"hello\n").hexdigest()
    with pytest.raises(RawDataError, match=r"c\.txt is missing; 'ds' has no download entry") as e:
        ds.file("c.txt")  # not a registered download: no download command suggested
    assert "unirec_lab.data.download" not in str(e.value)
    (ds.path / "b.txt").write_bytes(b"w0rld\n")  # same size, different bytes
    with pytest.raises(RawDataError, match=r"b\.txt has sha256 .* but .*MANIFEST\.tsv says"):
        ds.sha256("b.txt")
    (ds.path / "b.txt").write_bytes(b"w\n")
    with pytest.raises(RawDataError, match=r"b\.txt has 2 bytes"):
        ds.sha256("b.txt")
    (ds.path / "extra.txt").write_bytes(b"x")
    with pytest.raises(RawDataError, match="not listed"):
        ds.sha256("extra.txt")
    with pytest.raises(RawDataError, match=r"does not exist; get it with: python -m unirec_lab\.data\.download"):
        RawDataset(tmp_path / "nowhere", "education/statics2011").file("a.txt")
    with pytest.raises(RawDataError, match=r"nowhere does not exist; 'ds' has no download entry"):
        RawDataset(tmp_path / "nowhere", "dom/ds").file("a.txt")
    with pytest.raises(RawDataError, match="raw data folder"):
        RawDataset(tmp_path, "dom/other").file("a.txt")
    assert issubclass(RawDataError, BundleError)


def test_raw_dataset_without_manifest_uses_registry(tmp_path):
    ds = _dataset(tmp_path, {"statics.csv": b"1\n1\n1\n"}, manifest=False)
    ds.subdir = "education/statics2011"
    (tmp_path / "education" / "statics2011").mkdir(parents=True)
    (tmp_path / "education" / "statics2011" / "statics.csv").write_bytes(b"1\n1\n1\n")
    with pytest.raises(RawDataError, match="statics.csv has 6 bytes but"):
        ds.sha256("statics.csv")


def test_sha256_cache_keyed_by_size_and_mtime(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"one")
    first = raw.sha256_file(p)
    assert raw.sha256_file(p) == first
    p.write_bytes(b"three")  # size changes -> new key
    assert raw.sha256_file(p) == hashlib.sha256(b"three").hexdigest()


def test_parsers_name_the_line(tmp_path):
    p = tmp_path / "t.csv"
    assert raw.parse_int_array("1,2,3,", p, 1).tolist() == [1, 2, 3]
    with pytest.raises(RawDataError, match=r"t\.csv:7: expected integers, found 'x'"):
        raw.parse_int_array("1,x,3", p, 7)
    with pytest.raises(RawDataError, match=r"t\.csv:2: .*empty line"):
        raw.parse_int_array("", p, 2)
    p.write_text("1\t2\t3\n4\t5\t6\n7\t8\n")
    with pytest.raises(RawDataError, match=r"t\.csv:3: expected 3 '\\t'-separated integers"):
        raw.read_int_table(p, 3, "\t", ["a", "b", "c"])
    p.write_text("1\t2\t3\n4\tfive\t6\n")
    with pytest.raises(RawDataError, match=r"t\.csv:2:"):
        raw.read_int_table(p, 3, "\t", ["a", "b", "c"])
    p.write_text("1\t2\t3\n4\t5\t6\n")
    assert raw.read_int_table(p, 3, "\t", ["a", "b", "c"])["c"].tolist() == [3, 6]


def test_read_manifest_rejects_garbage(tmp_path):
    m = tmp_path / "MANIFEST.tsv"
    m.write_text("file\tbytes\tsha256\tsource\na.txt\tten\tabc\tx\n")
    with pytest.raises(RawDataError, match=r"MANIFEST\.tsv:2"):
        raw.read_manifest(m)
