"""Every real-scenario loader on tiny hand-made raw folders (no shared data needed): protocol properties and
one-line errors for bad input. Each folder gets a MANIFEST.tsv matching its files, as a download would."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from unirec_lab.data.prepare import prepare_bundle
from unirec_lab.data.scenarios.amazon_hin import AmazonHinScenario
from unirec_lab.data.scenarios.amazon_s3rec import AmazonS3RecScenario
from unirec_lab.data.scenarios.assist2009 import Assist2009Scenario
from unirec_lab.data.scenarios.bing_dkn import BingDknScenario
from unirec_lab.data.scenarios.ciao import CiaoScenario
from unirec_lab.data.scenarios.mind import MindScenario
from unirec_lab.data.scenarios.raw import RawDataError
from unirec_lab.data.scenarios.statics2011 import Statics2011Scenario
from unirec_lab.data.scenarios.yelp_hin import YelpHinScenario
from unirec_lab.data.schema import validate_bundle


def write_dataset(root: Path, subdir: str, files: dict[str, bytes | str]) -> Path:
    folder = root / subdir
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["file\tbytes\tsha256\tsource"]
    for name, data in files.items():
        b = data.encode() if isinstance(data, str) else data
        (folder / name).write_bytes(b)
        rows.append(f"{name}\t{len(b)}\t{hashlib.sha256(b).hexdigest()}\thttp://example.invalid/{name}")
    (folder / "MANIFEST.tsv").write_text("\n".join(rows) + "\n")
    return folder


def built_ok(source):
    b = source.build()
    validate_bundle(b.spec, b.interactions, b.users, b.items)
    assert b.spec.has_group and "group" in b.interactions
    assert b.spec.extra["protocol"] and b.spec.extra["group_by"]
    return b


# ------------------------------------------------------------------------------------------- amazon s3rec


def s3rec_files(n_users: int = 8, n_items: int = 40, seed: int = 0) -> dict[str, str]:
    rng = np.random.default_rng(seed)
    lines = []
    for u in range(1, n_users + 1):
        seq = rng.choice(np.arange(1, n_items + 1), size=int(rng.integers(5, 9)), replace=False)
        lines.append(" ".join(map(str, [u, *seq])))
    attrs = {str(i): sorted(rng.choice(np.arange(1, 15), size=int(rng.integers(0, 4)), replace=False).tolist())
             for i in range(1, n_items + 1)}
    return {"Beauty.txt": "\n".join(lines) + "\n", "Beauty_item2attributes.json": json.dumps(attrs)}


def test_s3rec_leave_one_out_and_sampled_negatives(tmp_path):
    write_dataset(tmp_path, "ecommerce/amazon_s3rec", s3rec_files())
    b = built_ok(AmazonS3RecScenario("ecommerce", tmp_path, train_negatives=2, eval_negatives=10, seed=3))
    df = b.interactions
    pos = df[df.label == 1]
    assert pos.groupby("user").size().min() >= 5
    # leave-one-out: exactly one val and one test positive per user, the last two positions
    for split, back in (("test", 1), ("val", 2)):
        p = pos[pos.split == split]
        assert p.groupby("user").size().eq(1).all()
        last = pos.groupby("user")["ts"].max()
        assert (p.set_index("user")["ts"] == last[p["user"]].to_numpy() - (back - 1)).all()
    # eval groups: 1 positive + 10 distinct negatives, none of them a positive of the user, same ts
    ev = df[df.split != "train"]
    g = ev.groupby("group")
    assert g.size().eq(11).all() and g["label"].sum().eq(1).all() and g["item"].nunique().eq(11).all()
    assert g["ts"].nunique().eq(1).all()
    seen = set(zip(pos.user, pos.item))
    negs = df[df.label == 0]
    assert not any((u, i) in seen for u, i in zip(negs.user, negs.item))
    tr = df[df.split == "train"]
    assert (tr.label == 0).sum() == 2 * (tr.label == 1).sum()
    # deterministic for a seed, different for another
    again = AmazonS3RecScenario("ecommerce", tmp_path, train_negatives=2, eval_negatives=10, seed=3).build()
    assert again.interactions.equals(df)
    other = AmazonS3RecScenario("ecommerce", tmp_path, train_negatives=2, eval_negatives=10, seed=4).build()
    assert not other.interactions["item"].equals(df["item"])
    f = b.spec.item_fields[0]
    assert f.kind == "multi" and f.max_len <= 3 and f.namespace == "private"


def test_s3rec_bad_line_is_named(tmp_path):
    files = s3rec_files()
    lines = files["Beauty.txt"].splitlines()
    lines[4] = "5 3 x 9"
    files["Beauty.txt"] = "\n".join(lines) + "\n"
    write_dataset(tmp_path, "ecommerce/amazon_s3rec", files)
    with pytest.raises(RawDataError, match=r"Beauty\.txt:5: expected integers, found 'x'"):
        AmazonS3RecScenario("ecommerce", tmp_path).build()


def test_s3rec_sha_mismatch_and_no_partial_bundle(tmp_path):
    folder = write_dataset(tmp_path / "raw", "ecommerce/amazon_s3rec", s3rec_files())
    text = (folder / "Beauty.txt").read_bytes()
    (folder / "Beauty.txt").write_bytes(text.replace(b"1 ", b"2 ", 1))
    src = AmazonS3RecScenario("ecommerce", tmp_path / "raw", eval_negatives=10)
    with pytest.raises(RawDataError, match=r"Beauty\.txt has sha256 .* but .*MANIFEST\.tsv says"):
        prepare_bundle(src, tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("*.parquet"))


# ---------------------------------------------------------------------------------------------------- ciao


def ciao_files(rating: np.ndarray, trust: np.ndarray) -> dict[str, bytes]:
    out = {}
    for name, var, arr in (("rating_with_timestamp.mat", "rating", rating), ("trustnetwork.mat", "trustnetwork",
                                                                             trust)):
        buf = io.BytesIO()
        scipy.io.savemat(buf, {var: arr})
        out[name] = buf.getvalue()
    out["catalog_ciao.txt"] = b"1 DVDs\n2 Books\n"
    return out


def test_ciao_label_split_dedupe_and_trust(tmp_path):
    rows = []
    for u in (10, 20, 30):
        for k in range(10):
            rows.append([u, 100 + k, 1 + k % 2, 5 if k % 3 else 2, 1, 1000 + 10 * k + u])
    rows.append([10, 100, 1, 1, 1, 5000])  # duplicate (user, item): the later rating wins
    rows.append([40, 100, 2, 5, 1, 10])  # a user with 2 ratings: train only
    rows.append([40, 101, 2, 5, 1, 11])
    trust = np.array([[10, 20], [10, 30], [20, 10], [30, 99]])  # 99 is not a rater: dropped
    write_dataset(tmp_path, "social/ciao", ciao_files(np.array(rows, dtype=np.int32), trust.astype(np.uint16)))
    b = built_ok(CiaoScenario("social", tmp_path))
    df = b.interactions
    assert len(df) == len(rows) - 1 and b.provenance["duplicates_removed"] == 1
    assert b.provenance["raw_counts"]["ratings"] == len(rows)
    assert ((df.rating >= 4) == (df.label == 1)).all()
    dup = df[(df.user == 0) & (df["item"] == 0)]
    assert len(dup) == 1 and dup.rating.iloc[0] == 1 and dup.ts.iloc[0] == 5000
    assert df[df.user == 3].split.eq("train").all()
    for u in range(3):
        s = df[df.user == u].sort_values("ts")
        assert s.split.tolist() == ["train"] * 8 + ["val", "test"]
    trust_lists = b.users.set_index("user")["trust"]
    assert sorted(trust_lists[0].tolist()) == [2, 3] and trust_lists[1].tolist() == [1]
    assert trust_lists[2].tolist() == [] and b.spec.user_fields[0].vocab_size == 5
    assert (df.group == df.user).all()


def test_ciao_bad_mat_is_named(tmp_path):
    files = ciao_files(np.ones((3, 5), dtype=np.int32), np.ones((1, 2), dtype=np.uint16))
    write_dataset(tmp_path, "social/ciao", files)
    with pytest.raises(RawDataError, match=r"rating_with_timestamp\.mat: variable 'rating' has shape \(3, 5\)"):
        CiaoScenario("social", tmp_path).build()
    files["rating_with_timestamp.mat"] = b"not a mat file"
    write_dataset(tmp_path, "social/ciao", files)
    with pytest.raises(RawDataError, match=r"rating_with_timestamp\.mat: not a readable MATLAB"):
        CiaoScenario("social", tmp_path).build()


# ---------------------------------------------------------------------------------------- knowledge tracing


def kt_block(user: int, problems: list[int], skills: list[int], correct: list[int]) -> str:
    return "\n".join([f"{user},{user + 1000}", ",".join(map(str, problems)), ",".join(map(str, skills)),
                      ",".join(map(str, correct))]) + "\n"


def assist_files() -> dict[str, str]:
    skills = json.dumps({"Box and Whisker": 1, "Circle Graph": 2, "Mean": 3})
    train = (kt_block(1, [5, 5, 6, 7, 8, 9, 5, 5, 6, 7], [1, 2, 3, 3, 3, 3, 1, 2, 3, 3],
                      [1, 1, 0, 1, 1, 0, 0, 0, 1, 1])
             + kt_block(2, [6, 7], [3, 3], [1, 0]))
    valid = kt_block(3, [7, 8, 9, 6], [3, 3, 3, 3], [0, 1, 1, 1])
    test = kt_block(4, [9, 8, 7], [3, 3, 3], [1, 1, 0])
    return {"assist2009_pid_train1.csv": train, "assist2009_pid_valid1.csv": valid,
            "assist2009_pid_test1.csv": test, "skill.json": skills}


def test_assist2009_merge_skills_text_and_splits(tmp_path):
    write_dataset(tmp_path, "education/assist2009_pid", assist_files())
    b = built_ok(Assist2009Scenario("education", tmp_path, text_buckets=0))
    df = b.interactions
    assert b.provenance["raw_counts"]["responses"] == 19
    assert b.provenance["merged_multi_skill_rows"] == 2  # (5,skill 1),(5,skill 2) listed twice each
    assert len(df) == 17 and df.groupby("user").ts.apply(lambda t: sorted(t) == list(range(len(t)))).all()
    items = b.items.set_index("item")
    p5 = 0  # problem 5 -> dense item 0
    assert sorted(items.loc[p5, "skills"].tolist()) == [1, 2] and items.loc[p5, "skill"] in (1, 2)
    names = {f.name: f for f in b.spec.item_fields}
    assert names["skill_text"].namespace == "shared:tokens" and names["skill_text"].kind == "text"
    assert names["skill_text"].vocab_size == 7  # and box circle graph mean whisker + 0
    assert len(items.loc[p5, "skill_text"]) == 5  # box and whisker circle graph
    assert df[df.user == 1].split.eq("train").all()  # 2 responses < 3
    fold = built_ok(Assist2009Scenario("education", tmp_path, split="fold"))
    by_user = fold.interactions.groupby("user").split.agg(set)
    assert by_user.tolist() == [{"train"}, {"train"}, {"val"}, {"test"}]


def test_assist2009_item_column_skill_is_dkt_input(tmp_path):
    """``item_column: skill``: each row's own skill is the item, so a multi-skill response's copies differ."""
    write_dataset(tmp_path, "education/assist2009_pid", assist_files())
    b = built_ok(Assist2009Scenario("education", tmp_path, split="fold", merge_multi_skill_rows=False,
                                    item_column="skill"))
    df = b.interactions
    assert len(df) == 19 and b.spec.num_items == 3 and not b.spec.item_fields
    first = df[df.user == 0].sort_values("ts")
    assert first.item.tolist()[:3] == [0, 1, 2]  # problem 5 (skills 1, 2), problem 6 (skill 3): dense skills
    default = built_ok(Assist2009Scenario("education", tmp_path, split="fold", merge_multi_skill_rows=False))
    assert default.spec.num_items == 5 and default.interactions[default.interactions.user == 0].item.tolist()[:2] == [0, 0]
    with pytest.raises(ValueError, match=r"item_column='correct', expected one of \['problem', 'skill'\]"):
        Assist2009Scenario("education", tmp_path, item_column="correct")


def test_assist2009_errors_name_the_line(tmp_path):
    files = assist_files()
    files["assist2009_pid_valid1.csv"] = kt_block(3, [7, 8, 9], [3, 3], [0, 1, 1])
    write_dataset(tmp_path, "education/assist2009_pid", files)
    with pytest.raises(RawDataError, match=r"assist2009_pid_valid1\.csv:3: 2 values but line 2 has 3"):
        Assist2009Scenario("education", tmp_path).build()
    files["assist2009_pid_valid1.csv"] = kt_block(3, [7, 8, 9], [3, 3, 3], [0, 2, 1])
    write_dataset(tmp_path, "education/assist2009_pid", files)
    with pytest.raises(RawDataError, match=r"assist2009_pid_valid1\.csv:4: correctness must be 0/1, found 2"):
        Assist2009Scenario("education", tmp_path).build()
    files["assist2009_pid_valid1.csv"] = "3,1003\n7,8\n"
    write_dataset(tmp_path, "education/assist2009_pid", files)
    with pytest.raises(RawDataError, match=r"valid1\.csv: 2 lines is not a multiple of 4"):
        Assist2009Scenario("education", tmp_path).build()


def test_statics_header_length_checked(tmp_path):
    write_dataset(tmp_path, "education/statics2011", {"statics.csv": "3\n1,2,3\n1,0,1\n4\n1,2,3\n1,1,1\n"})
    with pytest.raises(RawDataError, match=r"statics\.csv:4: header says 4 responses but the lists have 3"):
        Statics2011Scenario("education", tmp_path).build()


def test_empty_split_after_filtering_is_one_line(tmp_path):
    # every student has < min_user_rows responses: val/test would be empty
    write_dataset(tmp_path, "education/statics2011", {"statics.csv": "2\n1,2\n1,0\n2\n1,2\n1,1\n"})
    with pytest.raises(RawDataError, match=r"scenario 'education' .*split 'val' is empty"):
        Statics2011Scenario("education", tmp_path).build()


# ---------------------------------------------------------------------------------------------------- MIND


def mind_files() -> dict[str, str]:
    beh = [
        "1\tU1\t11/9/2019 8:00:00 AM\tN1 N2\tN10-1 N11-0 N12-0",
        "2\tU2\t11/10/2019 9:30:00 PM\t\tN10-0 N13-1",
        "3\tU1\t11/11/2019 1:00:00 PM\tN1 N2\tN14-0 N11-1",
        "4\tU3\t11/12/2019 11:59:59 PM\tN3 N1 N2 N4\tN15-1 N10-0",
    ]
    news = ["N10\tsports\tfootball\tBig Match Tonight\tabs\turl\t[]\t[]",
            "N1\tnews\tpolitics\tElection news\tabs\turl\t[]\t[]",
            "N99\tnews\tpolitics\tUnreferenced\tabs\turl\t[]\t[]"]
    return {"behaviors.tsv": "\n".join(beh) + "\n", "news.tsv": "\n".join(news) + "\n"}


def test_mind_impressions_day_split_and_history(tmp_path):
    write_dataset(tmp_path, "news/mind_small_subset", mind_files())
    b = built_ok(MindScenario("news", tmp_path, max_history=3))
    df = b.interactions
    assert len(df) == 9 and df.label.sum() == 4 and df.group.nunique() == 4
    assert df.groupby("group").split.nunique().eq(1).all()
    assert df.groupby("group").split.first().to_dict() == {1: "train", 2: "train", 3: "val", 4: "test"}
    assert df[df.group == 1].ts.iloc[0] == 1573286400  # 2019-11-09 08:00:00 UTC
    assert b.spec.has_history and b.spec.max_history_len == 3
    ids = {n: i for i, n in enumerate(sorted(["N1", "N2", "N3", "N4", "N10", "N11", "N12", "N13", "N14",
                                              "N15"]))}
    h4 = df[df.group == 4].history.iloc[0].tolist()
    assert h4 == [ids["N1"], ids["N2"], ids["N4"]]  # last 3 of "N3 N1 N2 N4"
    assert df[df.group == 2].history.iloc[0].tolist() == []
    items = b.items.set_index("item")
    assert items.loc[ids["N10"], "category"] > 0 and len(items.loc[ids["N10"], "title"]) == 3
    assert items.loc[ids["N11"], "category"] == 0 and len(items.loc[ids["N11"], "title"]) == 0
    assert b.spec.extra["metadata_coverage"]["items_with_metadata"] == 2


def test_mind_bad_rows_are_named(tmp_path):
    files = mind_files()
    files["behaviors.tsv"] = files["behaviors.tsv"].replace("N14-0 N11-1", "N14-0 N11-x")
    write_dataset(tmp_path, "news/mind_small_subset", files)
    with pytest.raises(RawDataError, match=r"behaviors\.tsv:3: impressions must be"):
        MindScenario("news", tmp_path).build()
    files = mind_files()
    files["behaviors.tsv"] = files["behaviors.tsv"].replace("11/11/2019 1:00:00 PM", "yesterday")
    write_dataset(tmp_path, "news/mind_small_subset", files)
    with pytest.raises(RawDataError, match=r"behaviors\.tsv:3: unparsable time 'yesterday'"):
        MindScenario("news", tmp_path).build()
    files = mind_files()
    files["behaviors.tsv"] += "5\tU4\t11/12/2019 1:00:00 PM\tN1\tN10-1\textra\n"
    write_dataset(tmp_path, "news/mind_small_subset", files)
    with pytest.raises(RawDataError, match=r"behaviors\.tsv:5: expected 5 tab-separated fields, found 6"):
        MindScenario("news", tmp_path).build()


# ------------------------------------------------------------------------------------------ bing / hin / yelp


def test_bing_dkn(tmp_path):
    tr = "\n".join(f"{u}\tnews title {u} {k}\t{k % 2}\t{k}:Ent{k}" for u in (7, 8) for k in range(10)) + "\n"
    te = "7\tfresh title\t1\t\n8\tanother fresh title\t0\t1:A;2:B\n"
    write_dataset(tmp_path, "news/bing_dkn_sample", {"raw_train.txt": tr, "raw_test.txt": te})
    b = built_ok(BingDknScenario("news", tmp_path))
    df = b.interactions
    assert df.split.value_counts().to_dict() == {"train": 18, "val": 2, "test": 2}
    assert df[df.split == "val"].ts.tolist() == [9, 19] and df[df.split == "test"].ts.tolist() == [20, 21]
    assert {f.name for f in b.spec.item_fields} == {"title", "entities"}
    write_dataset(tmp_path, "news/bing_dkn_sample", {"raw_train.txt": tr, "raw_test.txt": "7\ttitle\tmaybe\t\n"})
    with pytest.raises(RawDataError, match=r"raw_test\.txt:1: expected 'user_id<TAB>title<TAB>0\|1"):
        BingDknScenario("news", tmp_path).build()


def test_amazon_hin(tmp_path):
    rows = "\n".join(f"{u}\t{i}\t{1 + (u + i) % 5}\t{86400 * (i + 1)}" for u in range(3) for i in range(10)) + "\n"
    files = {"user_item.dat": rows, "item_category.dat": "0,0\n0,1\n1,2\n", "item_brand.dat": "0,0\n1,3\n",
             "item_view.dat": "0,5\n2,6\n"}
    write_dataset(tmp_path, "ecommerce/amazon_hin", files)
    b = built_ok(AmazonHinScenario("ecommerce", tmp_path))
    df = b.interactions
    assert ((df.rating >= 4) == (df.label == 1)).all()
    assert df.groupby("user").split.value_counts().unstack().loc[0].to_dict() == {"test": 1, "train": 8, "val": 1}
    items = b.items.set_index("item")
    assert items.loc[0, "category"].tolist() == [1, 2] and items.loc[1, "brand"] == 4
    files["user_item.dat"] = rows.replace("0\t3\t", "0\tthree\t", 1)
    write_dataset(tmp_path, "ecommerce/amazon_hin", files)
    with pytest.raises(RawDataError, match=r"user_item\.dat:4: expected 4"):
        AmazonHinScenario("ecommerce", tmp_path).build()


def test_yelp_hin(tmp_path):
    ub = "\n".join(f"{u}\t{i}\t{1 + (u * i) % 5}" for u in (1, 2, 3) for i in range(1, 11)) + "\n4\t1\t5\n"
    files = {"user_business.dat": ub, "user_user.dat": "1\t2\t1\n2\t1\t1\n1\t3\t1\n3\t77\t1\n",
             "business_category.dat": "1\t5\t1\n1\t6\t1\n", "business_city.dat": "1\t2\t1\n2\t3\t1\n"}
    write_dataset(tmp_path, "social/yelp_hin", files)
    b = built_ok(YelpHinScenario("social", tmp_path))
    df = b.interactions
    assert df[df.user == 3].split.eq("train").all()
    friends = b.users.set_index("user")["friends"]
    assert sorted(friends[0].tolist()) == [2, 3] and friends[2].tolist() == []
    assert b.items.set_index("item").loc[0, "category"].tolist() == [5, 6]


# ------------------------------------------------------------------------------------------ prepare CLI


def test_prepare_cli_end_to_end_on_tiny_data(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    write_dataset(tmp_path / "raw", "education/statics2011",
                  {"statics.csv": "".join(f"5\n1,2,3,{k},5\n1,0,1,1,0\n" for k in range(1, 5))})
    base = [sys.executable, "-m", "unirec_lab.cli.prepare", "scenario=education_statics",
            f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}"]
    ok = subprocess.run([*base, f"paths.raw_dir={tmp_path / 'raw'}"], cwd=root, capture_output=True,
                        text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "| education | statics2011 | 4 | 5 | 20 |" in ok.stdout
    again = subprocess.run([*base, f"paths.raw_dir={tmp_path / 'raw'}"], cwd=root, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0 and "| yes |" in again.stdout
    bad = subprocess.run([*base, f"paths.raw_dir={tmp_path / 'missing'}"], cwd=root, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 1
    err = [ln for ln in bad.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "does not exist; get it with: python -m unirec_lab.data.download" in err[0]
    assert "Traceback" not in bad.stderr
