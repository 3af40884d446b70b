"""TableScenario: a user's own CSV / TSV / Parquet files as a scenario by YAML alone.

Bundles are compared with hand-computed expectations for every split protocol; negatives, histories and side
tables are checked against the bundle contract; each bad input ends in one line naming the file / key."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import pytest

from unirec_lab.data.datamodule import MultiScenarioDataModule
from unirec_lab.data.prepare import fingerprint_key, prepare_bundle
from unirec_lab.data.scenarios.base import RawDataset
from unirec_lab.data.scenarios.fields import DEFAULT_TEXT_BUCKETS, word_id
from unirec_lab.data.scenarios.raw import RawDataError, default_raw_dir
from unirec_lab.data.scenarios.table import TableScenario
from unirec_lab.data.scenarios.table_io import TableScenarioError
from unirec_lab.data.schema import BundleError, read_bundle
from unirec_lab.engine.config import ConfigError, check_config
from unirec_lab.engine.guard import run_guarded
from unirec_lab.train import train

from conftest import compose_cfg

# u1 rates a..e at t=100..104; u2 rates a, c, e, b at 100, 105, 106, 107; u3 (2 rows) stays in train.
ROWS = [("u1", "a", 5, 100), ("u1", "b", 2, 101), ("u1", "c", 4, 102), ("u1", "d", 1, 103), ("u1", "e", 5, 104),
        ("u2", "a", 1, 100), ("u2", "c", 3, 105), ("u2", "e", 4, 106), ("u2", "b", 2, 107),
        ("u3", "b", 4, 50), ("u3", "d", 5, 60)]
COLUMNS = {"user": "uid", "item": "iid", "rating": "stars", "timestamp": "t"}
THRESHOLD = {"rule": "threshold", "threshold": 4}


def write_files(d: Path) -> None:
    pd.DataFrame(ROWS, columns=["uid", "iid", "stars", "t"]).to_csv(d / "inter.csv", index=False)
    pd.DataFrame({"uid": ["u2", "u1", "u9"], "age": [30, 20, 40], "tags": ["y", "x|y| x", "z"]}).to_csv(
        d / "users.csv", index=False)
    pd.DataFrame({"iid": list("abcdef"), "cat": ["k", "l", "k", "m", "l", "z"],
                  "title": ["Red shoe", "blue hat", "red HAT", "", None, "x"]}).to_csv(d / "items.tsv", sep="\t",
                                                                                      index=False)


def scenario(d: Path, **kw) -> TableScenario:
    args = {"interactions": {"path": "inter.csv"}, "columns": COLUMNS, "label": THRESHOLD, "base_dir": str(d)}
    args.update(kw)
    return TableScenario("shop", **args)


def build(src: TableScenario, cache: Path):
    return read_bundle(prepare_bundle(src, cache))


def rows_of(b) -> list[tuple]:
    df = b.interactions
    return list(zip(df["user"], df["item"], df["label"].astype(int), df["ts"], df["split"], strict=True))


@pytest.fixture
def data(tmp_path):
    write_files(tmp_path)
    return tmp_path


# dense ids: users u1 u2 u3 -> 0 1 2; items a..e -> 0..4. label = stars >= 4.
LOO = [(0, 0, 1, 100, "train"), (0, 1, 0, 101, "train"), (0, 2, 1, 102, "train"), (0, 3, 0, 103, "val"),
       (0, 4, 1, 104, "test"), (1, 0, 0, 100, "train"), (1, 2, 0, 105, "train"), (1, 4, 1, 106, "val"),
       (1, 1, 0, 107, "test"), (2, 1, 1, 50, "train"), (2, 3, 1, 60, "train")]
# val 0.2 / test 0.4: u1 (5 rows) -> 2 test, 1 val; u2 (4 rows) -> round(1.6)=2 test, round(0.8)=1 val
CHRONO = [(0, 0, 1, 100, "train"), (0, 1, 0, 101, "train"), (0, 2, 1, 102, "val"), (0, 3, 0, 103, "test"),
          (0, 4, 1, 104, "test"), (1, 0, 0, 100, "train"), (1, 2, 0, 105, "val"), (1, 4, 1, 106, "test"),
          (1, 1, 0, 107, "test"), (2, 1, 1, 50, "train"), (2, 3, 1, 60, "train")]
# 11 rows by (t, file row): the latest round(4.4)=4 -> test (t 104..107), the 2 before -> val (t 102, 103)
TEMPORAL = [(0, 0, 1, 100, "train"), (0, 1, 0, 101, "train"), (0, 2, 1, 102, "val"), (0, 3, 0, 103, "val"),
            (0, 4, 1, 104, "test"), (1, 0, 0, 100, "train"), (1, 2, 0, 105, "test"), (1, 4, 1, 106, "test"),
            (1, 1, 0, 107, "test"), (2, 1, 1, 50, "train"), (2, 3, 1, 60, "train")]


@pytest.mark.parametrize("protocol, expected", [("leave_one_out", LOO), ("user_chrono", CHRONO),
                                                ("temporal", TEMPORAL)])
def test_split_protocols_give_the_hand_computed_bundle(data, protocol, expected):
    b = build(scenario(data, split={"protocol": protocol, "val_frac": 0.2, "test_frac": 0.4}), data / "c")
    assert rows_of(b) == expected
    assert b.spec.num_users == 3 and b.spec.num_items == 5
    assert b.interactions["group"].tolist() == b.interactions["user"].tolist()  # GAUC per user
    assert b.interactions["rating"].tolist() == [5, 2, 4, 1, 5, 1, 3, 4, 2, 4, 5]
    assert b.spec.label == "stars >= 4" and protocol in b.spec.extra["protocol"]


def test_random_split_without_time_column_is_seeded_and_uses_file_order(data):
    cols = {"user": "uid", "item": "iid", "rating": "stars"}
    b = build(scenario(data, columns=cols, split={"protocol": "random", "val_frac": 0.2, "test_frac": 0.4}),
              data / "c")
    df = b.interactions
    assert sorted(df["ts"]) == list(range(11))  # no timestamp column: time = row position in the file
    assert df["split"].value_counts().to_dict() == {"train": 5, "test": 4, "val": 2}
    # the split of each file row is the one a seeded permutation of the 11 rows gives (last 4 ranks test)
    rank = np.empty(11, dtype=np.int64)
    perm = np.random.default_rng([0, __import__("zlib").crc32(b"shop"), 0]).permutation(11)
    rank[perm] = np.arange(11)
    want = np.where(rank >= 7, "test", np.where(rank >= 5, "val", "train"))
    assert df.sort_values("ts")["split"].tolist() == want.tolist()
    again = build(scenario(data, columns=cols, split={"protocol": "random", "val_frac": 0.2, "test_frac": 0.4}),
                  data / "c2")
    assert again.interactions.equals(df)


def test_side_tables_become_fields(data):
    users = {"path": "users.csv", "key": "uid",
             "fields": [{"column": "age"}, {"column": "tags", "kind": "multi", "sep": "|"}]}
    items = {"path": "items.tsv", "key": "iid",
             "fields": [{"column": "cat"}, {"column": "cat", "name": "cat_shared", "namespace": "shared:cat"},
                        {"column": "title", "kind": "text", "max_len": 3}]}
    b = build(scenario(data, users=users, items=items), data / "c")
    u, i = b.users.set_index("user"), b.items.set_index("item")
    assert u["age"].tolist() == [1, 2, 0]  # 20 -> 1, 30 -> 2; u3 is not in the table: missing
    assert [list(x) for x in u["tags"]] == [[1, 2], [2], []]  # x -> 1, y -> 2; duplicates and blanks dropped
    assert i["cat"].tolist() == [1, 2, 1, 3, 2]  # k l m (the unmatched item f's 'z' is not in the vocabulary)
    assert i["cat_shared"].tolist() == [word_id(c, 1 << 14) for c in "klkml"]
    w = {t: word_id(t, DEFAULT_TEXT_BUCKETS) for t in ("red", "shoe", "blue", "hat")}
    assert [list(x) for x in i["title"]] == [[w["red"], w["shoe"]], [w["blue"], w["hat"]], [w["red"], w["hat"]],
                                             [], []]
    f = {x.name: x for x in b.spec.user_fields + b.spec.item_fields}
    assert (f["age"].vocab_size, f["tags"].vocab_size, f["tags"].max_len, f["cat"].vocab_size) == (3, 3, 2, 4)
    assert (f["cat_shared"].namespace, f["title"].namespace, f["title"].kind) == ("shared:cat", "shared:tokens",
                                                                                  "text")
    assert b.stats["provenance"]["side_tables"]["users"]["rows_unmatched"] == 1


CLICKS = """uid,iid,clicked,when,imp
u1,a,1,2024-01-01 10:00:00,i1
u1,b,0,2024-01-01 10:00:00,i1
u1,a,0,2024-01-02 09:00:00,i2
u1,c,1,2024-01-02 09:00:00,i2
u2,a,0,2024-01-01 12:00:00,i3
u2,b,1,2024-01-01 12:00:00,i3
u2,c,1,2024-01-03 08:00:00,i4
u2,d,0,2024-01-03 08:00:00,i4
"""


def test_label_column_group_column_dates_and_dedupe(tmp_path):
    (tmp_path / "clicks.csv").write_text(CLICKS)
    src = TableScenario("news2", {"path": str(tmp_path / "clicks.csv")},
                        {"user": "uid", "item": "iid", "label": "clicked", "timestamp": "when", "group": "imp"},
                        label={"rule": "column"}, split={"protocol": "temporal", "val_frac": 0.25, "test_frac": 0.25},
                        dedupe=True)
    b = build(src, tmp_path / "c")
    # dedupe keeps u1's later (u1, a) row; 7 rows by time: the last round(1.75)=2 test, the 2 before val
    d1, d1b, d2, d3 = 1704103200, 1704110400, 1704186000, 1704268800  # the dates in unix seconds (UTC)
    assert rows_of(b) == [(0, 1, 0, d1, "train"), (0, 0, 0, d2, "val"), (0, 2, 1, d2, "val"),
                          (1, 0, 0, d1b, "train"), (1, 1, 1, d1b, "train"), (1, 2, 1, d3, "test"),
                          (1, 3, 0, d3, "test")]
    assert b.interactions["group"].tolist() == [0, 1, 1, 2, 2, 3, 3]  # impressions i1..i4
    assert b.stats["provenance"]["raw_counts"]["duplicates_removed"] == 1
    assert b.spec.extra["group_by"] == "column 'imp'" and "rating" not in b.interactions.columns


def test_bad_values_in_mapped_columns_are_named(tmp_path):
    (tmp_path / "clicks.csv").write_text(CLICKS.replace("u2,d,0,", "u2,d,yes,").replace("2024-01-03 08:00:00,i4\n",
                                                                                     "someday,i4\n", 1))
    cols = {"user": "uid", "item": "iid", "label": "clicked", "group": "imp"}
    bad_label = TableScenario("n", {"path": str(tmp_path / "clicks.csv")}, cols, label={"rule": "column"})
    assert _err(bad_label, tmp_path / "c") == (f"{tmp_path / 'clicks.csv'}: label column 'clicked' has value 'yes', "
                                              "expected 0/1 (or true/false)")
    bad_time = TableScenario("n", {"path": str(tmp_path / "clicks.csv")}, {**cols, "timestamp": "when"},
                             label={"rule": "column"})
    assert _err(bad_time, tmp_path / "c") == (f"{tmp_path / 'clicks.csv'}: timestamp column 'when' has value "
                                             "'someday' that is neither a number nor a date/time")


def test_duplicate_side_table_key_is_named(data):
    (data / "users2.csv").write_text("uid,age\nu1,20\nu2,30\nu1,40\n")
    msg = _err(scenario(data, users={"path": "users2.csv", "key": "uid", "fields": [{"column": "age"}]}), data / "c")
    assert msg == (f"{data / 'users2.csv'}: key column 'uid' (scenarios.shop.source.users.key) has duplicate value "
                   "'u1'; expected one row per user")


def _implicit_data(d: Path, n_users: int = 30, n_items: int = 60) -> None:
    rng = np.random.default_rng(5)
    rows = []
    for u in range(n_users):
        for k, it in enumerate(rng.choice(n_items, 8, replace=False)):
            rows.append((f"user{u}", int(it), 1000 + 10 * k + u))
    pd.DataFrame(rows, columns=["u", "i", "when"]).to_parquet(d / "clicks.parquet")


def _implicit(d: Path, seed: int = 0, **kw) -> TableScenario:
    args = dict(interactions={"path": str(d / "clicks.parquet")}, columns={"user": "u", "item": "i", "timestamp": "when"},
                label={"rule": "implicit"}, split={"protocol": "leave_one_out"}, negatives={"train": 2, "eval": 5},
                seed=seed)
    args.update(kw)
    return TableScenario("clicks", **args)


def test_negatives_are_never_positives_and_eval_negatives_are_fixed(tmp_path):
    _implicit_data(tmp_path)
    b = build(_implicit(tmp_path), tmp_path / "c")
    df = b.interactions
    pos = df[df["label"] == 1]
    neg = df[df["label"] == 0]
    seen = set(zip(pos["user"], pos["item"], strict=True))
    assert not any((u, i) in seen for u, i in zip(neg["user"], neg["item"], strict=True))
    counts = df.groupby(["split", "label"]).size().to_dict()
    assert counts[("train", 1.0)] == 30 * 6 and counts[("train", 0.0)] == 2 * 30 * 6
    assert counts[("val", 1.0)] == counts[("test", 1.0)] == 30 and counts[("test", 0.0)] == 5 * 30
    ev = df[df["split"] != "train"]
    per_group = ev.groupby("group").agg(n=("item", "size"), distinct=("item", "nunique"), pos=("label", "sum"))
    assert (per_group["n"] == 6).all() and (per_group["distinct"] == 6).all() and (per_group["pos"] == 1).all()
    assert (ev["group"] == 3 * ev["user"] + ev["split"].map({"val": 1, "test": 2})).all()
    again = build(_implicit(tmp_path), tmp_path / "c2")  # fixed: the same negatives on every build
    assert again.interactions.equals(df)
    other = build(_implicit(tmp_path, seed=1), tmp_path / "c3")
    assert not other.interactions["item"].equals(df["item"])


def test_histories_never_see_val_or_test_items(tmp_path):
    _implicit_data(tmp_path)
    # random split: many train rows come later in time than a val/test row of the same user, so only the
    # split-visibility rule (not the time rule) keeps held-out items out of train histories
    src = _implicit(tmp_path, split={"protocol": "random", "val_frac": 0.2, "test_frac": 0.2})
    dm = MultiScenarioDataModule({"clicks": {"source": src}}, cache_dir=tmp_path / "c", batch_size=64,
                                 history_len=10)
    dm.setup()
    b = dm.bundles["clicks"]
    df = b.interactions
    held_out = df[(df["split"] != "train") & (df["label"] == 1)]
    off = dm.space.item_offset["clicks"] + 1
    held = {(u, i + off) for u, i in zip(dm.space.global_users("clicks", held_out["user"].to_numpy()),
                                         held_out["item"], strict=True)}
    tr = dm.splits["train"]
    users, hist = tr["user"].numpy(), tr["history"].numpy()
    assert (hist > 0).sum() > 0  # histories exist at all
    assert not any((u, h) in held for u, row in zip(users, hist, strict=True) for h in row if h > 0)
    val = df[(df["split"] == "val") & (df["label"] == 1)]  # ...while test rows do see earlier val items
    val_items = {(u, i + off) for u, i in zip(dm.space.global_users("clicks", val["user"].to_numpy()), val["item"],
                                              strict=True)}
    test = dm.splits["test"]
    assert any((u, h) in val_items for u, row in zip(test["user"].numpy(), test["history"].numpy(), strict=True)
               for h in row)


def test_fingerprint_covers_parameters_and_file_bytes(data):
    src = scenario(data)
    fp = src.fingerprint()
    assert fp["files_sha256"] == {str((data / "inter.csv").resolve()):
                                  hashlib.sha256((data / "inter.csv").read_bytes()).hexdigest()}
    assert fingerprint_key(scenario(data, label={"rule": "threshold", "threshold": 3}).fingerprint()) != \
        fingerprint_key(fp)
    path = prepare_bundle(src, data / "c")
    assert json.loads((path / "stats.json").read_text())["provenance"]["params"]["label"]["threshold"] == 4
    with open(data / "inter.csv", "a") as f:
        f.write("u3,e,5,70\n")
    assert fingerprint_key(scenario(data).fingerprint()) != fingerprint_key(fp)


# ------------------------------------------------------------------------------------------------ errors


def _err(src_or_fn, cache: Path) -> str:
    with pytest.raises(TableScenarioError) as e:
        build(src_or_fn() if callable(src_or_fn) else src_or_fn, cache)
    msg = str(e.value)
    assert "\n" not in msg and isinstance(e.value, RawDataError) and isinstance(e.value, BundleError)
    return msg


def test_missing_column_names_the_file_and_the_columns_found(data):
    msg = _err(scenario(data, columns={**COLUMNS, "item": "item_id"}), data / "c")
    assert msg == (f"{data / 'inter.csv'}: column 'item_id' (scenarios.shop.source.columns.item) not found; "
                   "columns found: ['uid', 'iid', 'stars', 't']")
    msg = _err(scenario(data, items={"path": "items.tsv", "key": "iid", "fields": [{"column": "colour"}]}), data / "c")
    assert msg.startswith(f"{data / 'items.tsv'}: column 'colour' (scenarios.shop.source.items.fields[0].column) "
                          "not found; columns found: ['iid', 'cat', 'title']")


def test_missing_or_unreadable_file_is_named_without_a_download_hint(data):
    msg = _err(scenario(data, interactions={"path": "nope.csv"}), data / "c")
    assert msg.startswith(f"{data / 'nope.csv'}: file not found (scenarios.shop.source.interactions.path;")
    assert "download" not in msg
    (data / "bad.parquet").write_text("uid,iid\nu1,a\n")
    msg = _err(scenario(data, interactions={"path": "bad.parquet"}), data / "c")
    assert msg.startswith(f"{data / 'bad.parquet'}: cannot be read as parquet (scenarios.shop.source.interactions;")
    with pytest.raises(TableScenarioError, match=r"interactions.path='.*inter.data': cannot tell the format"):
        scenario(data, interactions={"path": "inter.data"})


def test_sha256_pin_mismatch_is_one_line(data):
    real = hashlib.sha256((data / "inter.csv").read_bytes()).hexdigest()
    build(scenario(data, interactions={"path": "inter.csv", "sha256": real}), data / "c")
    msg = _err(scenario(data, interactions={"path": "inter.csv", "sha256": "0" * 64}), data / "c2")
    assert msg == (f"{data / 'inter.csv'}: sha256 is {real} but scenarios.shop.source.interactions.sha256 pins "
                   f"{'0' * 64} (the file changed; update the pin if that is intended)")


def test_label_rule_with_one_class_is_named(data):
    msg = _err(scenario(data, label={"rule": "threshold", "threshold": 6}), data / "c")
    assert msg == (f"{data / 'inter.csv'}: label rule stars >= 6 makes every train row negative (0); ratings "
                   "range over [1, 5]: change label.threshold")
    msg = _err(scenario(data, label={"rule": "implicit"}), data / "c")
    assert msg == (f"{data / 'inter.csv'}: label rule implicit (every row positive) makes every train row positive "
                   "(1); with label.rule=implicit set negatives.train >= 1 (now 0)")


def test_empty_split_names_the_protocol_and_parameters(data):
    msg = _err(scenario(data, split={"protocol": "leave_one_out", "min_user_rows": 6}), data / "c")
    assert msg == (f"{data / 'inter.csv'}: split protocol leave_one_out ({{'protocol': 'leave_one_out', "
                   "'val_frac': 0.1, 'test_frac': 0.1, 'min_user_rows': 6}) leaves split 'val' empty (11 rows, "
                   "3 users, 0 with >= min_user_rows rows)")


def test_config_mistakes_fail_at_construction(data):
    with pytest.raises(TableScenarioError, match=r"scenarios.shop.source.split.protocol='loo', expected one of"):
        scenario(data, split={"protocol": "loo"})
    with pytest.raises(TableScenarioError, match=r"scenarios.shop.source.columns: unknown key\(s\) \['users'\]"):
        scenario(data, columns={**COLUMNS, "users": "x"})
    with pytest.raises(TableScenarioError, match=r"label.rule=threshold needs columns.rating and label.threshold"):
        scenario(data, label={"rule": "threshold"})
    with pytest.raises(TableScenarioError, match=r"users.fields\[0\].namespace='global'"):
        scenario(data, users={"path": "users.csv", "key": "uid", "fields": [{"column": "age", "namespace": "global"}]})


def test_a_manifestless_folder_of_an_unregistered_dataset_says_so(tmp_path):
    (tmp_path / "mine" / "shop").mkdir(parents=True)
    (tmp_path / "mine" / "shop" / "a.csv").write_text("x\n")
    with pytest.raises(RawDataError) as e:
        RawDataset(tmp_path, "mine/shop").sha256("a.csv")
    assert "'shop' has no download entry" in str(e.value) and "unknown dataset" not in str(e.value)
    assert "download --dest" not in str(e.value)


# ------------------------------------------------------------------------------------------ through the configs

SCENARIO_YAML = """\
source:
  _target_: unirec_lab.data.scenarios.table.TableScenario
  name: my_shop
  base_dir: ${paths.root_dir}
  interactions: {path: DATA}
  columns: {user: u, item: i, timestamp: when}
  label: {rule: implicit}
  split: {protocol: leave_one_out}
  negatives: {train: 1, eval: 5}
loss_weight: 1.0
protocol: "implicit; leave-one-out; 1-vs-5"
"""
TINY = ["scenarios.news.source.num_users=120", "scenarios.news.source.num_items=90",
        "scenarios.news.source.rows_per_user=48", "data.batch_size=256", "trainer.max_epochs=1",
        "backbone.embedding_dim=16", "backbone.trunk_dims=[32]", "head.hidden_dims=[16]", "num_threads=1"]


def _user_conf(tmp_path: Path, header: bool) -> Path:
    _implicit_data(tmp_path)
    conf = tmp_path / "my_conf"
    (conf / "scenario").mkdir(parents=True)
    text = SCENARIO_YAML.replace("DATA", str(tmp_path / "clicks.parquet"))
    (conf / "scenario" / "my_shop.yaml").write_text(("# @package scenarios.my_shop\n" if header else "") + text)
    return conf


def test_scenario_yaml_without_package_line_names_the_line_to_add(tmp_path):


    conf = _user_conf(tmp_path, header=False)
    for selection in ("[synthetic_news,my_shop]", "my_shop"):
        cfg = compose_cfg(tmp_path / "run", [f"scenario={selection}", f"hydra.searchpath=[file://{conf}]"])
        with pytest.raises(ConfigError) as e:
            check_config(cfg)
        assert str(e.value) == (f"{conf / 'scenario' / 'my_shop.yaml'}: add '# @package scenarios.my_shop' as its "
                                "first line (without it the file's keys land under 'scenario', not "
                                "'scenarios.<name>', and the scenario is ignored)")


def test_unirec_prepare_names_the_missing_package_line_too(tmp_path):
    from unirec_lab.cli.prepare import prepare_all

    conf = _user_conf(tmp_path, header=False)
    cfg = compose_cfg(tmp_path / "run", ["scenario=[my_shop]", f"hydra.searchpath=[file://{conf}]"],
                      config_name="prepare")
    rows, errors = prepare_all(cfg)
    assert rows == [] and errors == {"scenario": f"{conf / 'scenario' / 'my_shop.yaml'}: add '# @package "
                                     "scenarios.my_shop' as its first line (without it the file's keys land under "
                                     "'scenario', not 'scenarios.<name>', and the scenario is ignored)"}


@pytest.mark.parametrize("selection", ["synthetic", "real", "[synthetic_news,synthetic_social]"])
def test_shipped_scenario_sets_pass_the_package_check(tmp_path, selection):
    """Defaults-only files (synthetic.yaml, real.yaml) leave an empty `scenario: {}` node: that is not an error."""
    check_config(compose_cfg(tmp_path / "run", [f"scenario={selection}"]))


def test_the_cli_guard_prints_one_line_for_a_bad_column(tmp_path, capsys):


    conf = _user_conf(tmp_path, header=True)
    cfg = compose_cfg(tmp_path / "run", ["scenario=[my_shop]", f"hydra.searchpath=[file://{conf}]",
                                         "scenarios.my_shop.source.columns.item=product"])
    with pytest.raises(SystemExit) as e:
        run_guarded(train, cfg)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1
    assert err[0] == (f"error: {tmp_path / 'clicks.parquet'}: column 'product' (scenarios.my_shop.source.columns.item) "
                      "not found; columns found: ['u', 'i', 'when']")


def test_unified_training_on_synthetic_news_and_a_table_scenario(tmp_path):


    conf = _user_conf(tmp_path, header=True)
    cfg = compose_cfg(tmp_path / "run", ["scenario=[synthetic_news,my_shop]", f"hydra.searchpath=[file://{conf}]",
                                         *TINY])
    assert list(cfg.scenarios) == ["news", "my_shop"]
    train(cfg)
    r = json.loads((Path(cfg.paths.output_dir) / "result.json").read_text())
    assert r["status"] == "completed" and r["scenarios"] == ["news", "my_shop"]
    m = r["test"]["my_shop"]
    assert {"auc", "logloss", "gauc", "ndcg@10"} <= set(m) and 0.0 <= m["auc"] <= 1.0
    assert m["rows"] == 30 * 6  # 30 test users, each 1 positive + 5 fixed negatives


# ------------------------------------------------------------------ shipped loaders vs. a TableScenario config

RAW = default_raw_dir()


@pytest.mark.parametrize("loader, path, names, ts", [
    ("amazon_hin.AmazonHinScenario", "ecommerce/amazon_hin/user_item.dat", ["user", "item", "rating", "ts"], "ts"),
    ("yelp_hin.YelpHinScenario", "social/yelp_hin/user_business.dat", ["user", "item", "rating"], None)])
def test_rating_loaders_interactions_equal_a_table_config(loader, path, names, ts):
    """The interactions of the two rating loaders are a pure column mapping (their item / friend fields are not:
    long-format side files, raw-id vocabularies, a user-user network), so only interactions.parquet is compared."""
    import importlib

    if not (RAW / path).is_file():
        pytest.skip(f"raw data not available at {RAW} (set UNIREC_RAW_DIR)")
    mod, cls = loader.rsplit(".", 1)
    shipped = getattr(importlib.import_module(f"unirec_lab.data.scenarios.{mod}"), cls)("x", RAW).build()
    table = TableScenario("x", {"path": str(RAW / path), "format": "tsv", "header": False, "names": names},
                          {"user": "user", "item": "item", "rating": "rating", "timestamp": ts},
                          label={"rule": "threshold", "threshold": 4},
                          split={"protocol": "user_chrono", "val_frac": 0.1, "test_frac": 0.1,
                                 "min_user_rows": 3}).build()
    assert table.interactions.equals(shipped.interactions)
    assert (table.spec.num_users, table.spec.num_items) == (shipped.spec.num_users, shipped.spec.num_items)


def test_the_cli_guard_prints_a_config_mistake_without_hydras_wrapper(tmp_path, capsys):
    conf = _user_conf(tmp_path, header=True)
    cfg = compose_cfg(tmp_path / "run", ["scenario=[my_shop]", f"hydra.searchpath=[file://{conf}]",
                                         "scenarios.my_shop.source.split.protocol=loo"])
    with pytest.raises(SystemExit):
        run_guarded(train, cfg)
    assert capsys.readouterr().err.strip() == ("error: scenarios.my_shop.source.split.protocol='loo', expected one "
                                               "of ['leave_one_out', 'user_chrono', 'temporal', 'random']")


def test_the_readme_example_data_and_yaml_make_a_valid_scenario(tmp_path):
    """Runs the docs example's bash block up to (not including) the training command, then prepares the bundle
    from the composed config: the example's files and YAML stay in step with TableScenario."""
    import re
    import subprocess

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Add your own scenario"):]
    script = re.findall(r"```bash\n(.*?)```", section, re.S)[0]
    setup = script.split("\nunirec-compare")[0]
    assert "\nunirec-compare -- scenario=[synthetic_news,my_shop] hydra.searchpath=[file://$PWD/my_conf]" in script
    subprocess.run(["bash", "-euo", "pipefail", "-c", setup], cwd=tmp_path, check=True, capture_output=True)
    cfg = compose_cfg(tmp_path / "run", ["scenario=[synthetic_news,my_shop]",
                                         f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]",
                                         f"paths.root_dir={tmp_path}"])
    src = hydra.utils.instantiate(cfg.scenarios.my_shop.source)
    b = build(src, tmp_path / "c")
    assert (b.spec.num_users, b.spec.num_items) == (600, 240) and len(b.interactions) == 10711
    assert 0.2 < b.interactions["label"].mean() < 0.8
    assert [f.name for f in b.spec.item_fields] == ["category", "title"]


def test_a_list_of_parts_is_concatenated_in_order_and_must_share_columns(data):
    df = pd.read_csv(data / "inter.csv")
    df.iloc[:5].to_csv(data / "part1.csv", index=False)
    df.iloc[5:].to_csv(data / "part2.csv", index=False)
    parts = scenario(data, interactions={"path": ["part1.csv", "part2.csv"]})
    assert rows_of(build(parts, data / "c")) == LOO
    assert len(parts.fingerprint()["files_sha256"]) == 2
    df.iloc[5:].rename(columns={"t": "time"}).to_csv(data / "part2.csv", index=False)
    msg = _err(scenario(data, interactions={"path": ["part1.csv", "part2.csv"]}), data / "c2")
    assert msg == (f"{data / 'part2.csv'}: columns ['uid', 'iid', 'stars', 'time'] differ from those of "
                   f"{data / 'part1.csv'} ['uid', 'iid', 'stars', 't'] (scenarios.shop.source.interactions.path)")


def test_encoding_is_configurable_and_a_wrong_one_is_named(data):
    (data / "items_latin1.csv").write_bytes("iid,title\na,Café crème\nb,Über\n".encode("latin-1"))
    items = {"path": "items_latin1.csv", "key": "iid", "fields": [{"column": "title", "kind": "text"}]}
    msg = _err(scenario(data, items=items), data / "c")
    assert msg == (f"{data / 'items_latin1.csv'}: not valid utf-8 text (set scenarios.shop.source.items.encoding, "
                   "e.g. latin-1)")
    b = build(scenario(data, items={**items, "encoding": "latin-1"}), data / "c2")
    assert list(b.items["title"][0]) == [word_id("caf", DEFAULT_TEXT_BUCKETS), word_id("cr", DEFAULT_TEXT_BUCKETS),
                                         word_id("me", DEFAULT_TEXT_BUCKETS)]  # the shared tokenizer: [a-z0-9]+


def test_movielens_1m_is_a_yaml_only_scenario():
    """ML-1M (no loader in the package): five headerless rating parts, '::'-separated latin-1 side tables."""
    ml = RAW / "movies" / "ml1m"
    if not (ml / "movies.dat").is_file():
        pytest.skip(f"raw data not available at {RAW} (set UNIREC_RAW_DIR)")
    src = TableScenario(
        "movies", {"path": [str(ml / f"test_1m{i}.dat") for i in range(1, 6)], "format": "csv", "header": False,
                   "names": ["user", "movie", "rating"]},
        {"user": "user", "item": "movie", "rating": "rating"}, label={"rule": "threshold", "threshold": 4},
        split={"protocol": "random", "val_frac": 0.1, "test_frac": 0.1},
        users={"path": str(ml / "users.dat"), "format": "csv", "sep": "::", "header": False,
               "names": ["user", "gender", "age", "occupation", "zip"], "key": "user",
               "fields": [{"column": "gender"}, {"column": "age"}, {"column": "occupation"}]},
        items={"path": str(ml / "movies.dat"), "format": "csv", "sep": "::", "header": False, "encoding": "latin-1",
               "names": ["movie", "title", "genres"], "key": "movie",
               "fields": [{"column": "genres", "kind": "multi", "sep": "|"}, {"column": "title", "kind": "text"}]})
    b = src.build()
    assert (len(b.interactions), b.spec.num_users, b.spec.num_items) == (1_000_209, 6_040, 3_706)  # SOURCE.md
    f = {x.name: x for x in b.spec.user_fields + b.spec.item_fields}
    assert (f["gender"].vocab_size, f["age"].vocab_size, f["occupation"].vocab_size, f["genres"].vocab_size) == \
        (3, 8, 22, 19)  # 2 genders, 7 age bands, 21 occupations, 18 genres (+ missing)
    assert b.interactions["split"].value_counts().to_dict() == {"train": 800_167, "val": 100_021, "test": 100_021}


def test_side_table_keys_match_across_types_and_gaps(data):
    """Interaction ids read as ints, side-table keys as floats (a blank key row) or strings: still matched."""
    (data / "inter_int.csv").write_text("uid,iid,stars\n7,1,5\n7,2,1\n7,3,4\n8,1,2\n8,3,5\n8,2,3\n")
    (data / "items_gap.csv").write_text("iid,cat\n1,k\n,z\n3,m\n2,\n")
    (data / "users_str.csv").write_text("uid,seg\nu8,a\n8,b\n7,c\n")
    cols = {"user": "uid", "item": "iid", "rating": "stars"}
    b = build(scenario(data, interactions={"path": "inter_int.csv"}, columns=cols,
                       split={"protocol": "leave_one_out"},
                       items={"path": "items_gap.csv", "key": "iid", "fields": [{"column": "cat"}]},
                       users={"path": "users_str.csv", "key": "uid", "fields": [{"column": "seg"}]}), data / "c")
    assert b.items["cat"].tolist() == [1, 0, 2]  # items 1, 2, 3: k, (blank), m
    assert b.users["seg"].tolist() == [2, 1]  # users 7, 8: 'c', 'b' among the matched values {b, c}
