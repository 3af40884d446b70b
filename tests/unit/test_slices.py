"""Cold-start slices: masks from training positives only, metrics equal to sklearn on the slice's rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss, roc_auc_score

from unirec_lab.evaluation.metrics import ScenarioEvaluator, metric_fn
from unirec_lab.evaluation.slices import POINTWISE, slice_masks, slice_metrics


def test_masks_count_training_positives_only(tiny_dm):
    tr, te, space = tiny_dm.splits["train"], tiny_dm.splits["test"], tiny_dm.space
    masks = slice_masks(te, space.user_train_pos, space.item_train_pos, cold_user_max_pos=2, cold_item_max_pos=3)
    user_pos: dict[int, int] = {}
    item_pos: dict[int, int] = {}
    for u, i, y in zip(tr["user"].tolist(), tr["item"].tolist(), tr["label"].tolist()):
        user_pos[u] = user_pos.get(u, 0) + int(y > 0.5)
        item_pos[i] = item_pos.get(i, 0) + int(y > 0.5)
    want_cu = np.array([user_pos.get(u, 0) <= 2 for u in te["user"].tolist()])
    want_ci = np.array([item_pos.get(i, 0) <= 3 for i in te["item"].tolist()])
    assert np.array_equal(masks["cold_user"], want_cu) and np.array_equal(masks["warm_user"], ~want_cu)
    assert np.array_equal(masks["cold_item"], want_ci) and np.array_equal(masks["warm_item"], ~want_ci)
    assert 0 < want_cu.sum() < len(want_cu) and 0 < want_ci.sum() < len(want_ci)  # both sides non-empty here
    with pytest.raises(ValueError, match="cold_user_max_pos=-1"):
        slice_masks(te, space.user_train_pos, space.item_train_pos, cold_user_max_pos=-1)


def test_slice_metrics_equal_sklearn_on_the_slice_rows():
    rng = np.random.default_rng(0)
    n = 400
    data = {"row": np.arange(n), "scenario": rng.integers(0, 2, n), "label": (rng.random(n) < 0.4).astype(np.float32),
            "group": rng.integers(0, 30, n), "logit": rng.normal(size=n).astype(np.float32)}
    cold = rng.random(n) < 0.3
    masks = {"cold_user": cold, "warm_user": ~cold, "cold_item": cold, "warm_item": np.zeros(n, dtype=bool)}
    names = ["auc", "logloss", "gauc", "ndcg@10"]
    out = slice_metrics(data, masks, ["a", "b", "empty"], {m: metric_fn(m) for m in names})
    assert set(out) == {"a", "b"}  # a scenario without rows is left out
    for s_idx, s in enumerate(["a", "b"]):
        assert set(out[s]) == {"cold_user", "warm_user", "cold_item"}  # the empty slice is left out
        for sl, mask in (("cold_user", cold), ("warm_user", ~cold), ("cold_item", cold)):
            m = (data["scenario"] == s_idx) & mask
            y, p = data["label"][m], 1 / (1 + np.exp(-data["logit"][m].astype(np.float64)))
            assert out[s][sl]["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
            assert out[s][sl]["logloss"] == pytest.approx(log_loss(y, p), abs=1e-9)
            assert out[s][sl]["rows"] == m.sum() and out[s][sl]["positives"] == (y > 0.5).sum()
        assert set(out[s]["cold_user"]) == {*names, "rows", "positives"}
        assert set(out[s]["cold_item"]) == {*POINTWISE, "rows", "positives"}  # item slices cut through groups
    # the user slices use the same metric code as the whole-scenario evaluation
    ev = ScenarioEvaluator(["a", "b"], names)
    ev.update({k: torch.from_numpy(np.asarray(v)) for k, v in data.items() if k != "logit"},
              torch.from_numpy(data["logit"]))
    whole = ev.compute_from(ev.gathered())
    every = {"cold_user": np.ones(n, dtype=bool)}
    assert slice_metrics(data, every, ["a", "b"], ev.metrics)["a"]["cold_user"]["gauc"] == \
        pytest.approx(whole["a"]["gauc"], abs=1e-12)


def test_unseen_item_slice_is_items_without_any_training_row(tiny_dm):
    te, space = tiny_dm.splits["test"], tiny_dm.space
    count = space.item_train_count.clone()
    gone = te["item"][:5]
    count[gone] = 0  # as if these test items had no training row
    masks = slice_masks(te, space.user_train_pos, space.item_train_pos, item_train_count=count)
    want = np.isin(te["item"].numpy(), np.flatnonzero(count.numpy() == 0))
    assert np.array_equal(masks["unseen_item"], want) and want[:5].all()
    assert "unseen_item" not in slice_masks(te, space.user_train_pos, space.item_train_pos)
    # reported with every metric: its ranking metrics rank the never-seen candidates of each group
    rng = np.random.default_rng(1)
    n = len(want)
    data = {"row": np.arange(n), "scenario": np.zeros(n, dtype=np.int64), "label": (rng.random(n) < 0.4).astype(
        np.float32), "group": rng.integers(0, 3, n), "logit": rng.normal(size=n).astype(np.float32)}
    out = slice_metrics(data, masks, ["a"], {m: metric_fn(m) for m in ("auc", "gauc", "ndcg@10")})
    assert set(out["a"]["unseen_item"]) == {"auc", "gauc", "ndcg@10", "rows", "positives"}
    assert out["a"]["unseen_item"]["rows"] == want.sum()
