"""Derived arrays cached beside a bundle (data/derived.py): the same rows and histories as the per-row path,
one history per (user, time, split), and a cache that notices stale or corrupt files and rebuilds with one line."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
import torch

from unirec_lab.data.batching import IndexedRows, take_rows
from unirec_lab.data.datamodule import MultiScenarioDataModule, interaction_tensors
from unirec_lab.data.derived import ARRAYS, derived_key, ensure_derived, load_derived
from unirec_lab.data.feature_space import build_feature_space
from unirec_lab.data.prepare import BuiltBundle, prepare_bundle
from unirec_lab.data.schema import BUNDLE_FILES, BundleError, read_bundle
from unirec_lab.data.synthetic import SyntheticScenario
from unirec_lab.data.synthetic_kt import SyntheticKnowledgeTracing
from unirec_lab.data.val_subset import subset_mask
from unirec_lab.features import SPLITS
from unirec_lab.utils.manifest import write_manifest

WORLD = dict(dim=8, num_topics=10, num_segments=6, num_tokens=50, tokens_per_topic=10, seed=3)
K = 5


class ExplicitHistory:
    """A synthetic scenario with an explicit ``history`` column (MIND-style click lists)."""

    name = "clicks"

    def __init__(self) -> None:
        self.inner = SyntheticScenario("clicks", WORLD, num_users=30, num_items=25, rows_per_user=8)

    def fingerprint(self) -> dict:
        return {"explicit": True, **self.inner.fingerprint()}

    def build(self) -> BuiltBundle:
        b = self.inner.build()
        rng = np.random.default_rng(0)
        lens = rng.integers(0, 9, len(b.interactions))
        hist = [rng.integers(0, b.spec.num_items, n).tolist() for n in lens]
        return dataclasses.replace(b, spec=dataclasses.replace(b.spec, has_history=True),
                                   interactions=b.interactions.assign(history=hist))


class CoarseRandomSplit:
    """Rows split at random and timestamps coarsened: one (user, ts) has rows in several splits, whose histories
    differ (a val row sees earlier val entries, a train row at the same time does not)."""

    name = "mixed"

    def __init__(self) -> None:
        self.inner = SyntheticScenario("mixed", WORLD, num_users=30, num_items=25, rows_per_user=16)

    def fingerprint(self) -> dict:
        return {"coarse": True, **self.inner.fingerprint()}

    def build(self) -> BuiltBundle:
        b = self.inner.build()
        rng = np.random.default_rng(1)
        coarse = b.interactions.groupby("user")["ts"].rank(method="first").astype("int64") // 4
        inter = b.interactions.assign(split=rng.choice(list(SPLITS), len(b.interactions), p=[0.6, 0.2, 0.2]),
                                      ts=coarse)
        return dataclasses.replace(b, interactions=inter)


def _scenarios() -> dict:
    return {
        "shop": {"source": SyntheticScenario("shop", WORLD, num_users=40, num_items=30, rows_per_user=12)},
        "news": {"source": SyntheticScenario("news", WORLD, num_users=30, num_items=40, rows_per_user=24,
                                             group_by="impression", impression_size=6, text_tokens=4)},
        "kt": {"source": SyntheticKnowledgeTracing("kt", num_students=40, num_skills=4, problems_per_skill=5,
                                                   responses_per_student=15),
               "history": {"feedback": "all", "train_chunk": 3}},
        "clicks": {"source": ExplicitHistory()},
        "mixed": {"source": CoarseRandomSplit()},
    }


def _dm(tmp_path, **kw) -> MultiScenarioDataModule:
    dm = MultiScenarioDataModule(_scenarios(), cache_dir=tmp_path, batch_size=32, history_len=K, **kw)
    dm.prepare_data()
    dm.setup()
    return dm


@pytest.mark.parametrize("budget", [None, 0.3])
def test_splits_equal_the_per_row_path(tmp_path, budget):
    """Every column of every split, histories and row ids included, equals what the per-row path builds from
    the frame (and, with a validation budget, the same groups are kept)."""
    dm = _dm(tmp_path, val_budget=budget, val_subset_seed=4)
    ref: dict[str, list[dict]] = {s: [] for s in SPLITS}
    group_offset = 0
    for s_idx, sc in enumerate(_scenarios().values()):
        b = read_bundle(prepare_bundle(sc["source"], tmp_path))
        arrays, n_groups = interaction_tensors(b.interactions, dm.space, s_idx, K, group_offset, sc.get("history"))
        group_offset += n_groups
        for s in SPLITS:
            ref[s].append(arrays[s])
    for s in SPLITS:
        want_all = {k: np.concatenate([p[k] for p in ref[s]]) for k in ref[s][0]}
        want_all["row"] = np.arange(len(want_all["label"]))
        if s == "val" and budget is not None:
            keep, info = subset_mask(want_all, dm.space.scenarios, np.array([len(p["label"]) for p in ref["train"]]),
                                     budget, 4)
            assert 0 < keep.sum() < len(keep) and info == dm.val_subset
            for i, name in enumerate(dm.space.scenarios):  # groups kept = distinct groups of the kept rows
                assert info[name]["groups"] == len(np.unique(want_all["group"][keep & (want_all["scenario"] == i)]))
            want_all = {k: v[keep] for k, v in want_all.items()}
        got = dm.splits[s]
        assert isinstance(got["history"], IndexedRows)
        assert list(got) == list(want_all)
        for key in want_all:
            want = torch.from_numpy(want_all[key])
            have = got[key].materialize() if isinstance(got[key], IndexedRows) else got[key]
            assert have.dtype == want.dtype, key
            assert torch.equal(have, want), (s, key)
        batches = list(dm.val_dataloader() if s == "val" else dm.test_dataloader() if s == "test"
                       else dm.train_dataloader())
        assert all(type(v) is torch.Tensor for b in batches for v in b.values())  # batches are plain tensors


def test_feature_space_from_cached_tables_equals_the_frames(tmp_path):
    """The cached users / items columns (no parquet, no pandas) lay out the same feature space as the frames."""
    dm = _dm(tmp_path)
    ref = build_feature_space({k: read_bundle(prepare_bundle(sc["source"], tmp_path))
                               for k, sc in _scenarios().items()})
    assert any(s.kind == "bag" for s in ref.item_slots)  # list fields are covered
    for name in ("user_features", "item_features", "item_scenario", "user_dense", "item_dense"):
        assert torch.equal(getattr(dm.space, name), getattr(ref, name)), name
    assert dm.space.describe() == ref.describe()


def test_candidate_rows_share_one_history(tmp_path):
    """Rows of one impression (same user, time and split) point at one stored history, not a copy each."""
    bundle = prepare_bundle(_scenarios()["news"]["source"], tmp_path)
    d = load_derived(ensure_derived(bundle, K, "positives"))
    inter = read_bundle(bundle).interactions
    inter = inter.assign(level=inter["split"].map({s: i for i, s in enumerate(SPLITS)})).sort_values(
        "level", kind="stable")
    assert d.split_rows == tuple(int((inter["level"] == i).sum()) for i in range(3))
    assert np.array_equal(d.user, inter["user"]) and np.array_equal(d.item, inter["item"])
    key = inter[["user", "ts", "level"]].to_numpy()
    n_distinct = len(np.unique(key, axis=0))
    assert len(d.hist_items) == n_distinct < len(d.label) // 3
    assert isinstance(d.hist_items, np.memmap) and isinstance(d.user, np.memmap)  # zero-copy from the cache
    # the same (user, time, split) -> the same index; different -> different
    _, inv = np.unique(key, axis=0, return_inverse=True)
    assert len(np.unique(np.stack([inv.reshape(-1), d.hist_index], 1), axis=0)) == n_distinct


def test_cache_hit_then_corruption_is_rebuilt_with_one_line(tmp_path, caplog):
    src = _scenarios()["shop"]["source"]
    bundle = prepare_bundle(src, tmp_path)
    path = ensure_derived(bundle, K, "positives")
    assert path == bundle.resolve() / "derived" / derived_key(K, "positives")
    before = {a: (path / f"{a}.npy").stat().st_mtime_ns for a in ARRAYS}
    assert ensure_derived(bundle, K, "positives") == path  # verified hit: nothing rewritten
    assert before == {a: (path / f"{a}.npy").stat().st_mtime_ns for a in ARRAYS}
    good = load_derived(path).hist_items.copy()
    f = path / "hist_items.npy"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with caplog.at_level(logging.INFO, logger="unirec_lab.data.derived"):
        assert ensure_derived(bundle, K, "positives") == path
    lines = [r.getMessage() for r in caplog.records if "failed their check" in r.getMessage()]
    assert len(lines) == 1 and "hist_items.npy: sha256 " in lines[0] and str(path) in lines[0]
    assert np.array_equal(load_derived(path).hist_items, good)


def test_other_settings_and_other_bundle_bytes_are_not_reused(tmp_path, caplog):
    src = _scenarios()["shop"]["source"]
    bundle = prepare_bundle(src, tmp_path)
    a = ensure_derived(bundle, K, "positives")
    assert ensure_derived(bundle, K + 1, "positives") != a
    assert load_derived(ensure_derived(bundle, K, "all")).hist_actions.min() == 0
    meta = json.loads((a / "meta.json").read_text())
    meta["interactions_sha256"] = "0" * 64  # as if copied from another version of the bundle
    (a / "meta.json").write_text(json.dumps(meta))
    write_manifest(a, (*(f"{x}.npy" for x in ARRAYS), "meta.json"))
    with caplog.at_level(logging.INFO, logger="unirec_lab.data.derived"):
        ensure_derived(bundle, K, "positives")
    assert any("meta.json: interactions_sha256 = '000" in r.getMessage() and "rebuilding" in r.getMessage()
               for r in caplog.records)
    assert json.loads((a / "meta.json").read_text())["interactions_sha256"] != "0" * 64


def test_stats_not_matching_the_rows_is_refused_on_the_cached_path(tmp_path):
    sc = {"shop": _scenarios()["shop"]}
    bundle = prepare_bundle(sc["shop"]["source"], tmp_path).resolve()
    stats = json.loads((bundle / "stats.json").read_text())
    stats["positives"] += 1
    (bundle / "stats.json").write_text(json.dumps(stats))
    write_manifest(bundle, BUNDLE_FILES)  # as if the manifest had been rewritten by hand
    dm = MultiScenarioDataModule(sc, cache_dir=tmp_path, history_len=K)
    with pytest.raises(BundleError, match=r"stats.json: positives = \d+ but interactions.parquet has \d+"):
        dm.setup()


def test_indexed_rows_gather_select_and_materialise():
    table = torch.tensor([[0, 1], [2, 3], [4, 5]])
    col = IndexedRows(table, torch.tensor([2, 2, 0, 1, 2]))
    assert col.shape == (5, 2) and len(col) == 5 and col.dtype == table.dtype
    assert torch.equal(col[1:3], torch.tensor([[4, 5], [0, 1]]))
    assert torch.equal(col[:, -1], torch.tensor([5, 5, 1, 3, 5])) and int(col[3, 0]) == 2
    assert torch.equal(col[torch.tensor([True, False, False, True, False])], torch.tensor([[4, 5], [2, 3]]))
    sub = take_rows({"history": col, "label": torch.arange(5)}, torch.tensor([0, 3]))
    assert isinstance(sub["history"], IndexedRows) and sub["history"].table is table
    assert torch.equal(sub["label"], torch.tensor([0, 3]))
    assert torch.equal(torch.cat([col, sub["history"]]), torch.cat([col.materialize(), table[[2, 1]]]))
    full = col.materialize()  # a whole split used as a batch behaves as the tensor it stands for
    assert torch.equal(col.long(), full) and torch.equal(col > 2, full > 2) and torch.equal(col * 2, full * 2)
    assert torch.equal(torch.nn.functional.embedding(col, torch.eye(6)), torch.eye(6)[full])


def test_unirec_prepare_builds_the_derived_arrays(tmp_path):
    from unirec_lab.cli.prepare import prepare_all

    from conftest import compose_cfg

    cfg = compose_cfg(tmp_path / "run", ["scenario=synthetic_news", "scenarios.news.source.num_users=40",
                                         "history_len=7"], config_name="prepare")
    cfg.cache_dir = str(tmp_path / "cache")
    rows, errors = prepare_all(cfg)
    assert errors == {} and len(rows) == 1
    derived = sorted((tmp_path / "cache" / "news").glob("[!.]*/derived/[!.]*"))  # via the bundle symlink
    assert [p.name for p in derived] == [derived_key(7, "positives")]
    cfg.history_len = -1
    assert prepare_all(cfg)[1] == {"history_len": "history_len=-1: expected an integer >= 0 (the data.history_len "
                                                  "of the jobs to prepare for) or null to skip the derived arrays"}
