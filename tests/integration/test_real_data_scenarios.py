"""The four default real scenarios (Beauty, Ciao, ASSISTments 2009, MIND subset) prepared from the real raw
files: published counts, protocol invariants, leakage, determinism, the prepare CLI (first and cached run) and
one-line errors on small temp copies of the raw folders.

Needs the raw data (``<repo>/../shared/data`` or ``$UNIREC_RAW_DIR``); skipped with a reason when it is absent.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from unirec_lab.cli.prepare import prepare_all
from unirec_lab.cli.stats import main as stats_main
from unirec_lab.data.history import build_histories
from unirec_lab.data.prepare import bundle_dir
from unirec_lab.data.scenarios.ids import contains_sorted
from unirec_lab.data.scenarios.raw import RawDataError, default_raw_dir
from unirec_lab.data.schema import read_bundle
from unirec_lab.features import SPLIT_LEVEL, SPLITS

RAW = default_raw_dir()
if not RAW.is_dir():
    pytest.skip(f"real raw data not found at {RAW} (set UNIREC_RAW_DIR to the shared data folder)",
                allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
DEFAULTS = ("ecommerce", "social", "education", "news")


def compose_prepare(cache_dir: Path, raw_dir: Path, scenario: str = "real", extra: list[str] | None = None):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("prepare", overrides=[f"scenario={scenario}", f"cache_dir={cache_dir}",
                                             f"paths.raw_dir={raw_dir}", f"paths.root_dir={ROOT}",
                                             *(extra or [])])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    cache = tmp_path_factory.mktemp("bundles")
    cfg = compose_prepare(cache, RAW)
    t0 = time.perf_counter()
    rows, errors = prepare_all(cfg)
    first = time.perf_counter() - t0
    assert not errors, errors
    t0 = time.perf_counter()
    rows2, errors2 = prepare_all(cfg)
    cached = time.perf_counter() - t0
    assert not errors2
    return {"cfg": cfg, "cache": cache, "rows": rows, "rows_cached": rows2, "first_s": first, "cached_s": cached}


@pytest.fixture(scope="module")
def bundles(prepared):
    return {r["scenario"]: read_bundle(Path(r["path"])) for r in prepared["rows"]}


# ------------------------------------------------------------------------------------- CLI and timing


def test_prepare_times_and_table(prepared, capsys):
    assert [r["scenario"] for r in prepared["rows"]] == list(DEFAULTS)
    assert not any(r["cached"] for r in prepared["rows"]) and all(r["cached"] for r in prepared["rows_cached"])
    assert prepared["first_s"] < 120, prepared["first_s"]
    assert prepared["cached_s"] < 5, prepared["cached_s"]
    assert stats_main([str(prepared["cache"])]) == 0
    out = capsys.readouterr().out
    for name in ("amazon_s3rec/Beauty", "ciao", "assist2009_pid", "mind_small_subset"):
        assert name in out


# ---------------------------------------------------------------------------------- published counts


def test_ecommerce_beauty_counts_and_protocol(bundles):
    b = bundles["ecommerce"]
    df = b.interactions
    pos = df[df.label == 1]
    assert (len(pos), pos.user.nunique(), pos.item.nunique()) == (198_502, 22_363, 12_101)
    assert (b.spec.num_users, b.spec.num_items) == (22_363, 12_101)
    assert b.stats["provenance"]["raw_counts"]["attribute_ids"] == 637
    ev = df[df.split != "train"]
    g = ev.groupby("group")
    assert g.ngroups == 2 * 22_363
    assert g.size().eq(100).all() and g.label.sum().eq(1).all()
    ev_keys = np.sort(ev.group.to_numpy() * b.spec.num_items + ev["item"].to_numpy())
    assert (ev_keys[1:] != ev_keys[:-1]).all()  # the 100 candidates of a group are distinct
    tr = df[df.split == "train"]
    assert (tr.label == 0).sum() == (tr.label == 1).sum() == 198_502 - 2 * 22_363
    # negatives never collide with any positive of that user
    ni = b.spec.num_items
    pos_keys = pos.user.to_numpy() * ni + pos["item"].to_numpy()
    neg = df[df.label == 0]
    assert not contains_sorted(np.sort(pos_keys), neg.user.to_numpy() * ni + neg["item"].to_numpy()).any()
    # negatives carry the ts of their positive; the test positive is each user's last item
    assert (g.ts.min() == g.ts.max()).all()
    last = pos.groupby("user").ts.max()
    t = pos[pos.split == "test"].set_index("user").ts
    assert (t == last[t.index]).all()
    assert b.spec.extra["eval_negatives"] == 99 and b.spec.has_group


def test_social_ciao_counts_and_protocol(bundles):
    b = bundles["social"]
    df, raw = b.interactions, b.stats["provenance"]["raw_counts"]
    assert (raw["ratings"], raw["users"], raw["items"], raw["trust_edges"]) == (284_086, 7_375, 105_114, 111_781)
    assert len(df) == 284_086 - 1_436 and b.stats["provenance"]["duplicates_removed"] == 1_436
    assert (b.spec.num_users, b.spec.num_items) == (7_375, 105_114)
    assert ((df.rating >= 4) == (df.label == 1)).all()
    assert not df.duplicated(["user", "item"]).any()
    trust = b.users["trust"].map(len)
    assert trust.max() == 20 and b.spec.user_fields[0].vocab_size == 7_376
    assert b.spec.extra["trust_edges_used"] == 111_781


def test_education_assist2009_counts_and_protocol(bundles):
    b = bundles["education"]
    df, raw = b.interactions, b.stats["provenance"]["raw_counts"]
    assert (raw["responses"], raw["students"], raw["items"], raw["skills"]) == (325_637, 4_151, 16_891, 110)
    assert len(df) == 325_637 - b.stats["provenance"]["merged_multi_skill_rows"]
    assert b.stats["provenance"]["merged_multi_skill_rows"] == 51_052
    assert (b.spec.num_users, b.spec.num_items) == (4_151, 16_891)
    fields = {f.name: f for f in b.spec.item_fields}
    assert fields["skill"].vocab_size == 111 and fields["skills"].max_len == 4
    assert fields["skill_text"].namespace == "shared:tokens" and fields["skill_text"].kind == "text"
    assert b.items["skill_text"].map(len).gt(0).all()  # every problem has a named skill
    # ts = 0..n-1 within each student
    assert df.groupby("user").ts.agg(lambda t: t.min() == 0 and t.max() == len(t) - 1).all()


def test_news_mind_counts_and_protocol(bundles):
    b = bundles["news"]
    df = b.interactions
    assert (df.group.nunique(), len(df), int(df.label.sum()), df.user.nunique()) == (5_000, 189_359, 7_542, 4_637)
    assert b.spec.num_items == 22_592 and b.spec.has_history
    assert b.spec.extra["metadata_coverage"]["items_with_metadata"] == 838
    assert b.spec.extra["day_split"] == {"val_from": "2019-11-13", "test_from": "2019-11-14"}
    assert df.groupby("group").split.nunique().eq(1).all()
    per = df.drop_duplicates("group").split.value_counts().to_dict()
    assert per == {"train": 3_058, "val": 974, "test": 968}
    day = pd.to_datetime(df.ts, unit="s").dt.strftime("%Y-%m-%d")
    assert set(day[df.split == "test"]) == {"2019-11-14"} and set(day[df.split == "val"]) == {"2019-11-13"}
    assert not df.duplicated(["group", "item"]).any()
    h = df.history
    assert h.map(len).max() == 50 and all(x.max() < b.spec.num_items for x in h if len(x))
    # the explicit history is the user's pre-window clicks: identical for all of a user's impressions
    key = df.assign(hk=h.map(lambda x: x.tobytes())).groupby("user").hk.nunique()
    assert key.eq(1).all()


# ------------------------------------------------------------------------------------------------- leakage


def _subset_users(df: pd.DataFrame, n: int) -> pd.DataFrame:
    return df[df.user < n] if df.user.nunique() > n else df


@pytest.mark.parametrize("name", DEFAULTS)
def test_no_val_test_item_in_train_histories(bundles, name):
    df = _subset_users(bundles[name].interactions, 3000).reset_index(drop=True)
    level = df.split.map(SPLIT_LEVEL).to_numpy()
    hist = build_histories(df.user.to_numpy(), df["item"].to_numpy(), df.label.to_numpy(), df.ts.to_numpy(),
                           level, k=20)
    train = np.flatnonzero(level == 0)
    rows = np.repeat(train, 20)
    items = hist[train].reshape(-1)
    keep = items >= 0
    rows, items = rows[keep], items[keep]
    pairs = pd.DataFrame({"user": df.user.to_numpy()[rows], "item": items, "ts": df.ts.to_numpy()[rows]})
    # every history item of a train row is a train positive of that user strictly earlier in time
    tp = df[(df.split == "train") & (df.label == 1)].groupby(["user", "item"]).ts.min().rename("first")
    m = pairs.join(tp, on=["user", "item"])
    assert m["first"].notna().all() and (m["first"] < m["ts"]).all()
    # and literally: no val/test positive (user, item) that is not also an earlier train positive
    vt = df[(df.split != "train") & (df.label == 1)][["user", "item"]].drop_duplicates()
    vt_only = vt.merge(tp.reset_index()[["user", "item"]], how="left", indicator=True)
    vt_only = set(map(tuple, vt_only[vt_only["_merge"] == "left_only"][["user", "item"]].to_numpy()))
    assert not any(p in vt_only for p in zip(pairs.user, pairs["item"]))


@pytest.mark.parametrize("name", ("social", "education"))
def test_per_user_chronological_splits(bundles, name):
    df = bundles[name].interactions
    lv = df.split.map(SPLIT_LEVEL)
    g = df.assign(lv=lv).groupby(["user", "lv"]).ts.agg(["min", "max"]).unstack()
    # within a user, train <= val <= test in time (ties allowed for same-day timestamps)
    both = g.dropna()
    assert (both[("max", 0)] <= both[("min", 1)]).all() and (both[("max", 1)] <= both[("min", 2)]).all()
    n = df.groupby("user").size()
    small = n[n < 3].index
    assert df[df.user.isin(small)].split.eq("train").all()
    assert set(df.split.unique()) == set(SPLITS)


def _rebuild_equals_bundle(prepared, bundles, name: str) -> None:
    import hydra

    src = hydra.utils.instantiate(prepared["cfg"].scenarios[name].source)
    assert bundle_dir(src, prepared["cache"]) == bundles[name].path  # same fingerprint -> same bundle
    again = src.build().interactions
    pd.testing.assert_frame_equal(again.reset_index(drop=True), bundles[name].interactions, check_dtype=False)


def test_splits_deterministic(prepared, bundles):
    import hydra

    for name in ("social", "education", "news"):
        _rebuild_equals_bundle(prepared, bundles, name)
    other = hydra.utils.instantiate(prepared["cfg"].scenarios.ecommerce.source, seed=1)
    assert bundle_dir(other, prepared["cache"]) != bundles["ecommerce"].path


@pytest.mark.slow
def test_ecommerce_negatives_deterministic_for_a_seed(prepared, bundles):
    _rebuild_equals_bundle(prepared, bundles, "ecommerce")  # 4.4M seeded eval negatives, bit for bit


# ------------------------------------------------------------------------------------------ bad input


@pytest.fixture
def mind_copy(tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(RAW / "news" / "mind_small_subset", raw / "news" / "mind_small_subset")
    return raw


def _prepare_news(raw: Path, cache: Path) -> tuple[list, dict]:
    return prepare_all(compose_prepare(cache, raw, scenario="news"))


def test_missing_raw_dir_says_how_to_download(tmp_path):
    rows, errors = _prepare_news(tmp_path / "nowhere", tmp_path / "cache")
    assert not rows
    msg = errors["news"]
    assert "does not exist" in msg and "python -m unirec_lab.data.download --dest" in msg
    assert "\n" not in msg


def test_missing_file(mind_copy, tmp_path):
    (mind_copy / "news" / "mind_small_subset" / "news.tsv").unlink()
    rows, errors = _prepare_news(mind_copy, tmp_path / "cache")
    assert "news.tsv is missing" in errors["news"] and "unirec_lab.data.download" in errors["news"]
    assert not list((tmp_path / "cache").rglob("*.parquet"))


def test_sha_mismatch(mind_copy, tmp_path):
    f = mind_copy / "news" / "mind_small_subset" / "behaviors.tsv"
    data = bytearray(f.read_bytes())
    data[100] = ord("X") if data[100] != ord("X") else ord("Y")
    f.write_bytes(bytes(data))
    rows, errors = _prepare_news(mind_copy, tmp_path / "cache")
    assert "behaviors.tsv has sha256" in errors["news"] and "MANIFEST.tsv says" in errors["news"]
    assert not list((tmp_path / "cache").rglob("*.parquet"))


def test_corrupt_line_is_named_and_no_partial_bundle(mind_copy, tmp_path):
    import hashlib

    folder = mind_copy / "news" / "mind_small_subset"
    lines = (folder / "behaviors.tsv").read_text().split("\n")
    lines[1233] = lines[1233].replace("-0", "-?", 1)
    data = "\n".join(lines).encode()
    (folder / "behaviors.tsv").write_bytes(data)
    man = (folder / "MANIFEST.tsv").read_text().split("\n")  # a consistent manifest: the parser must catch it
    man = [("\t".join(["behaviors.tsv", str(len(data)), hashlib.sha256(data).hexdigest(), "x"])
            if m.startswith("behaviors.tsv") else m) for m in man]
    (folder / "MANIFEST.tsv").write_text("\n".join(man))
    rows, errors = _prepare_news(mind_copy, tmp_path / "cache")
    assert "behaviors.tsv:1234: impressions must be" in errors["news"]
    assert not list((tmp_path / "cache").rglob("*.parquet"))
    with pytest.raises(RawDataError):
        import hydra

        hydra.utils.instantiate(compose_prepare(tmp_path / "c2", mind_copy, scenario="news").scenarios.news.source
                                ).build()
