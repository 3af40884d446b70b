"""The per-epoch validation subset: whole groups, seeded and stable, within budget, never the test split, off
when configured off."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unirec_lab.data.datamodule import MultiScenarioDataModule
from unirec_lab.data.val_subset import check_budget, group_subset_mask
from unirec_lab.engine.config import check_run_values


def _groups(rng: np.random.Generator) -> np.ndarray:
    """Rows of 200 groups of 1..30 rows, interleaved (group ids not sorted, not contiguous)."""
    sizes = rng.integers(1, 31, 200)
    return rng.permutation(np.repeat(rng.permutation(10_000)[:200], sizes))


def test_mask_keeps_whole_groups_within_budget_and_is_seeded():
    g = _groups(np.random.default_rng(0))
    m = group_subset_mask(g, 500, seed=0, name="news")
    kept = np.unique(g[m])
    assert 0 < m.sum() <= 500
    assert np.array_equal(m, np.isin(g, kept))  # a group is in whole or not at all
    assert m.sum() > 500 - 31  # groups are taken until the next one (<= 30 rows) would overflow
    assert np.array_equal(m, group_subset_mask(g, 500, seed=0, name="news"))  # stable
    assert not np.array_equal(m, group_subset_mask(g, 500, seed=1, name="news"))  # seeded
    assert not np.array_equal(m, group_subset_mask(g, 500, seed=0, name="social"))  # per scenario


def test_mask_keeps_everything_that_fits_and_one_group_at_least():
    g = _groups(np.random.default_rng(1))
    assert group_subset_mask(g, len(g), seed=0, name="x").all()
    one = group_subset_mask(g, 0, seed=0, name="x")
    assert len(np.unique(g[one])) == 1 and np.array_equal(one, g == g[one][0])


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "half", True])
def test_bad_budget_is_one_line_naming_the_key(bad):
    with pytest.raises(ValueError, match=r"^data\.val_budget=.*: expected a positive number .* or null"):
        check_budget(bad)


def test_config_check_names_budget_and_seed(cfg_factory):
    with pytest.raises(ValueError, match=r"^data\.val_budget=-2\.0: expected a positive number"):
        check_run_values(cfg_factory(["data.val_budget=-2.0"]))
    with pytest.raises(ValueError, match=r"^data\.val_subset_seed=-3, expected an integer >= 0$"):
        check_run_values(cfg_factory(["data.val_subset_seed=-3"]))
    cfg = cfg_factory()
    assert cfg.data.val_budget == 1.0 and cfg.data.val_subset_seed == 0  # the shipped default
    check_run_values(cfg_factory(["data.val_budget=null"]))


def _dm(tiny_dm, **kw) -> MultiScenarioDataModule:
    dm = MultiScenarioDataModule({k: {"source": v} for k, v in tiny_dm.sources.items()}, cache_dir=tiny_dm.cache_dir,
                                 batch_size=128, history_len=8, **kw)
    dm.setup()
    return dm


def test_datamodule_subset_is_whole_groups_of_full_val_and_test_untouched(tiny_dm):
    full = tiny_dm.splits["val"]
    dm = _dm(tiny_dm, val_budget=0.1, val_subset_seed=5)
    sub = dm.splits["val"]
    keep = torch.isin(full["group"], sub["group"].unique())
    assert 0 < len(sub["label"]) < len(full["label"])
    for k, v in full.items():  # whole groups of the full split, in order, with the full split's row ids
        assert torch.equal(sub[k], v[keep]), k
    train_per_s = torch.bincount(dm.splits["train"]["scenario"], minlength=4)
    val_per_s = torch.bincount(sub["scenario"], minlength=4)
    for s, name in enumerate(dm.scenario_names):
        info = dm.val_subset[name]
        assert info["rows"] == int(val_per_s[s]) and info["of_rows"] == int((full["scenario"] == s).sum())
        assert info["rows"] <= np.ceil(0.1 * int(train_per_s[s])) or info["groups"] == 1, name
        assert info["rows"] < info["of_rows"], name  # every tiny scenario has more than 10% val rows
    for split in ("train", "test"):
        for k, v in tiny_dm.splits[split].items():
            assert torch.equal(v, dm.splits[split][k]), (split, k)
    again = _dm(tiny_dm, val_budget=0.1, val_subset_seed=5).splits["val"]
    assert all(torch.equal(sub[k], again[k]) for k in sub)  # same subset in a second run
    other = _dm(tiny_dm, val_budget=0.1, val_subset_seed=6).splits["val"]
    assert set(other["group"].tolist()) != set(sub["group"].tolist())  # seeded by val_subset_seed


def test_off_or_large_budget_is_the_full_validation(tiny_dm):
    for kw in ({"val_budget": None}, {"val_budget": 1000.0}):
        dm = _dm(tiny_dm, **kw)
        assert all(torch.equal(v, tiny_dm.splits["val"][k]) for k, v in dm.splits["val"].items()), kw
    assert _dm(tiny_dm, val_budget=None).val_subset == {}


def test_scenario_alone_gets_the_same_subset_as_in_the_joint_run(tiny_dm):
    """model.mode=separate builds one datamodule per scenario: its validation rows must be the joint run's."""
    joint = _dm(tiny_dm, val_budget=0.1).splits["val"]
    alone = MultiScenarioDataModule({"news": {"source": tiny_dm.sources["news"]}}, cache_dir=tiny_dm.cache_dir,
                                    batch_size=128, history_len=8, val_budget=0.1)
    alone.setup()
    news = joint["scenario"] == tiny_dm.scenario_names.index("news")
    a, j = alone.splits["val"], {k: v[news] for k, v in joint.items()}
    assert torch.equal(a["label"], j["label"])
    for k in ("user", "item"):  # global ids differ by the scenario's offset, the rows must not
        assert len(a[k]) and len(torch.unique(a[k] - j[k])) == 1, k
    assert len(torch.unique(a["group"] - j["group"])) == 1
