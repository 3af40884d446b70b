"""The bundle contract, the synthetic generator, caching, the datamodule and batching."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from unirec_lab.data.batching import TensorBatches, mixed_epoch_order
from unirec_lab.data.prepare import bundle_dir, prepare_bundle
from unirec_lab.data.schema import BundleError, FeatureSpec, FieldSpec, read_bundle, validate_bundle
from unirec_lab.data.synthetic import SyntheticScenario

WORLD = dict(dim=8, num_topics=10, num_segments=6, num_tokens=50, tokens_per_topic=10, seed=3)


def test_synthetic_label_rates_and_shapes(tmp_path):
    for rate, group_by in ((0.04, "impression"), (0.65, "user")):
        src = SyntheticScenario("x", WORLD, num_users=400, num_items=200, rows_per_user=30, label_rate=rate,
                                group_by=group_by, text_tokens=3)
        b = read_bundle(prepare_bundle(src, tmp_path))
        assert b.stats["label_rate"] == pytest.approx(rate, abs=0.02)
        assert set(b.interactions["split"]) == {"train", "val", "test"}
        # temporal split: every test row is at or after every train row
        df = b.interactions
        assert df.loc[df.split == "test", "ts"].min() >= df.loc[df.split == "train", "ts"].max()
        if group_by == "impression":  # an impression never shows an item twice
            assert not df.duplicated(["group", "item"]).any()


def test_synthetic_is_deterministic_and_seed_sensitive():
    a = SyntheticScenario("x", WORLD, num_users=50, num_items=40, seed=1).build().interactions
    b = SyntheticScenario("x", WORLD, num_users=50, num_items=40, seed=1).build().interactions
    c = SyntheticScenario("x", WORLD, num_users=50, num_items=40, seed=2).build().interactions
    pd.testing.assert_frame_equal(a, b)
    assert not a["label"].equals(c["label"]) or not a["item"].equals(c["item"])


def test_popularity_is_power_law():
    df = SyntheticScenario("x", WORLD, num_users=2000, num_items=500, rows_per_user=30).build().interactions
    counts = np.sort(df["item"].value_counts().to_numpy())[::-1]
    assert counts[:25].sum() > 0.3 * counts.sum()  # top 5% of items draw > 30% of exposures


def test_bundle_cache_reused_and_keyed_by_parameters(tmp_path):
    src = SyntheticScenario("x", WORLD, num_users=50, num_items=40)
    p1 = prepare_bundle(src, tmp_path)
    mtime = (p1 / "interactions.parquet").stat().st_mtime_ns
    assert prepare_bundle(SyntheticScenario("x", WORLD, num_users=50, num_items=40), tmp_path) == p1
    assert (p1 / "interactions.parquet").stat().st_mtime_ns == mtime
    other = SyntheticScenario("x", WORLD, num_users=51, num_items=40)
    assert bundle_dir(other, tmp_path) != p1


def _tiny_bundle():
    spec = FeatureSpec("s", num_users=2, num_items=2,
                       item_fields=(FieldSpec("cat", "categorical", 3), FieldSpec("tags", "multi", 5, max_len=2)))
    inter = pd.DataFrame({"user": [0, 1, 0], "item": [0, 1, 1], "label": [1.0, 0.0, 1.0], "ts": [1, 2, 3],
                          "split": ["train", "val", "test"]})
    users = pd.DataFrame({"user": [0, 1]})
    items = pd.DataFrame({"item": [0, 1], "cat": [1, 2], "tags": [[1, 2], [4]]})
    return spec, inter, users, items


@pytest.mark.parametrize("breakage, message", [
    (lambda i, u, it: i.assign(item=[0, 1, 2]), r"column 'item' has values in \[0, 2\], expected \[0, 2\)"),
    (lambda i, u, it: i.assign(label=[1.0, 0.5, 1.0]), "label values must be 0/1"),
    (lambda i, u, it: i.assign(split=["train", "valid", "test"]), "split value 'valid'"),
    (lambda i, u, it: i.assign(split=["train", "train", "test"]), "split 'val' is empty"),
    (lambda i, u, it: i.drop(columns=["ts"]), "missing column 'ts'"),
    (lambda i, u, it: it.assign(tags=[[1, 2, 3], [4]]), "length 3 > max_len 2"),
    (lambda i, u, it: it.assign(cat=[1, 3]), r"field 'cat' has values in \[1, 3\], expected \[0, 3\)"),
])
def test_validation_names_the_problem(breakage, message):
    spec, inter, users, items = _tiny_bundle()
    validate_bundle(spec, inter, users, items)
    inter2 = breakage(inter, users, items)
    items2 = items
    if inter2 is None or "tags" in inter2.columns:  # breakage of the items table
        items2, inter2 = inter2, inter
    with pytest.raises(BundleError, match=message):
        validate_bundle(spec, inter2, users, items2)


def test_datamodule_tensors(tiny_dm):
    space = tiny_dm.space
    tr = tiny_dm.splits["train"]
    assert set(tr) == {"scenario", "user", "item", "label", "group", "history", "history_action", "row"}
    assert tr["history"].shape[1] == 8
    # global ids: each scenario's items live in its own range, never 0 (padding)
    for s_idx, name in enumerate(space.scenarios):
        items = tr["item"][tr["scenario"] == s_idx]
        lo = space.item_offset[name] + 1
        assert items.min() >= lo and items.max() < lo + tiny_dm.bundles[name].spec.num_items
        assert (space.item_scenario[items] == s_idx).all()
        hist = tr["history"][tr["scenario"] == s_idx]
        assert ((hist == 0) | (space.item_scenario[hist] == s_idx)).all()
    # groups of different scenarios never merge
    for split in ("val", "test"):
        t = tiny_dm.splits[split]
        per_group = torch.full((int(t["group"].max()) + 1,), -1).scatter_reduce(
            0, t["group"], t["scenario"], "amax")
        assert (per_group[t["group"]] == t["scenario"]).all()
        assert torch.equal(t["row"], torch.arange(len(t["row"])))


def test_train_batches_cover_each_row_once_and_depend_only_on_seed_and_epoch(tiny_dm):
    tr = tiny_dm.splits["train"]

    def rows(seed, epoch):
        it = TensorBatches(tr, 100, shuffle=True, seed=seed, epoch_fn=lambda: epoch, num_scenarios=4)
        return torch.cat([b["row"] for b in it])

    r = rows(1, 0)
    assert torch.equal(torch.sort(r).values, torch.arange(len(tr["row"])))
    assert torch.equal(r, rows(1, 0))
    assert not torch.equal(r, rows(1, 1)) and not torch.equal(r, rows(2, 0))


def test_mix_alpha_quotas():
    scen = torch.tensor([0] * 900 + [1] * 100)
    g = torch.Generator().manual_seed(0)
    idx = mixed_epoch_order(scen, 2, 0.0, g)
    counts = torch.bincount(scen[idx], minlength=2)
    assert counts.tolist() == [500, 500]  # alpha=0: equal share, the small scenario repeated
    idx = mixed_epoch_order(scen, 2, 0.5, g)
    share = torch.bincount(scen[idx], minlength=2).double() / len(idx)
    assert share[1].item() == pytest.approx(10 / (30 + 10), abs=0.01)


def test_eval_shards_are_disjoint_and_complete(tiny_dm):
    va = tiny_dm.splits["val"]
    rows = [torch.cat([b["row"] for b in TensorBatches(va, 37, shuffle=False, rank=r, world_size=3)])
            for r in range(3)]
    allr = torch.cat(rows)
    assert torch.equal(torch.sort(allr).values, torch.arange(len(va["row"])))


def test_test_loader_restricts_to_scenarios_and_keeps_global_row_ids(tiny_dm):
    full = torch.cat([b["row"] for b in tiny_dm.test_dataloader()])
    names = tiny_dm.scenario_names
    rows, scen = zip(*[(b["row"], b["scenario"]) for b in tiny_dm.test_loader([names[1], names[3]])])
    rows, scen = torch.cat(rows), torch.cat(scen)
    assert set(scen.tolist()) == {1, 3}
    expected = tiny_dm.splits["test"]["row"][torch.isin(tiny_dm.splits["test"]["scenario"], torch.tensor([1, 3]))]
    assert torch.equal(rows, expected) and set(rows.tolist()) < set(full.tolist())
    with pytest.raises(ValueError, match=r"test scenarios \['nope'\]: expected a subset of"):
        tiny_dm.test_loader(["nope"])
    assert torch.equal(torch.cat([b["row"] for b in tiny_dm.test_dataloader()]), full)
