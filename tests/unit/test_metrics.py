"""Metrics agree with sklearn / torchmetrics and with hand-computed values on fixed inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss, ndcg_score, roc_auc_score
from torchmetrics.functional.classification import binary_auroc

from unirec_lab.evaluation.metrics import (
    ScenarioEvaluator,
    auc,
    gauc,
    hr_at_k,
    logloss,
    metric_fn,
    mrr,
    ndcg_at_k,
)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    y = (rng.random(3000) < 0.3).astype(np.float64)
    z = np.round(rng.normal(size=3000) + 1.2 * y, 1)  # rounding creates many ties
    g = rng.integers(0, 200, 3000)
    return y, z, g


def test_auc_matches_sklearn_and_torchmetrics_with_ties(data):
    y, z, _ = data
    assert auc(y, z) == pytest.approx(roc_auc_score(y, z), abs=1e-12)
    tm = binary_auroc(torch.tensor(1 / (1 + np.exp(-z))), torch.tensor(y).long()).item()
    assert auc(y, z) == pytest.approx(tm, abs=1e-5)


def test_auc_known_values():
    assert auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert math.isnan(auc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_logloss_matches_sklearn(data):
    y, z, _ = data
    assert logloss(y, z) == pytest.approx(log_loss(y, 1 / (1 + np.exp(-z))), rel=1e-9)
    # stable for extreme logits where probabilities would round to 0/1
    assert logloss(np.array([1.0, 0.0]), np.array([-800.0, 800.0])) == pytest.approx(800.0)


def test_gauc_matches_size_weighted_per_group_sklearn(data):
    y, z, g = data
    vals, w = [], []
    for k in np.unique(g):
        m = g == k
        if 0 < y[m].sum() < m.sum():
            vals.append(roc_auc_score(y[m], z[m]))
            w.append(m.sum())
    assert gauc(y, z, g) == pytest.approx(np.average(vals, weights=w), abs=1e-12)


def test_gauc_hand_computed_skips_single_class_groups():
    y = np.array([1, 0, 0, 1, 0, 1, 1])
    z = np.array([0.9, 0.1, 0.8, 0.2, 0.5, 0.3, 0.4])
    g = np.array([0, 0, 1, 1, 1, 2, 2])  # group 2 has only positives -> skipped
    # group 0: auc 1 (size 2); group 1: pos 0.2 vs negs 0.8, 0.5 -> 0 (size 3)
    assert gauc(y, z, g) == pytest.approx((1.0 * 2 + 0.0 * 3) / 5)
    # a NaN score has no rank: no number rather than a wrong one
    assert math.isnan(gauc(y, np.where(np.arange(7) == 3, np.nan, z), g))
    assert math.isnan(auc(y, np.where(np.arange(7) == 3, np.nan, z)))


def test_ndcg_hand_computed():
    # one group, scores rank the rows [a, b, c, d]; labels 0,1,0,1 -> DCG = 1/log2(3) + 1/log2(5)
    y = np.array([0, 1, 0, 1])
    z = np.array([0.9, 0.8, 0.7, 0.6])
    g = np.zeros(4, dtype=int)
    dcg = 1 / np.log2(3) + 1 / np.log2(5)
    idcg = 1 + 1 / np.log2(3)
    assert ndcg_at_k(y, z, g, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(y, z, g, 2) == pytest.approx((1 / np.log2(3)) / idcg)
    assert mrr(y, z, g) == pytest.approx(0.5)
    assert hr_at_k(y, z, g, 1) == 0.0 and hr_at_k(y, z, g, 2) == 1.0


def test_ndcg_matches_sklearn_per_group(data):
    y, _, g = data
    z = np.random.default_rng(1).normal(size=len(y))  # no ties: sklearn and ours rank identically
    ref = [ndcg_score([y[g == k]], [z[g == k]], k=10) for k in np.unique(g) if y[g == k].sum() > 0]
    assert ndcg_at_k(y, z, g, 10) == pytest.approx(np.mean(ref), abs=1e-12)


def test_metric_names_validated():
    assert metric_fn("ndcg@5")(np.array([1, 0]), np.array([0.1, 0.2]), np.zeros(2)) == pytest.approx(
        1 / np.log2(3))
    for bad in ("acc", "ndcg@0", "ndcg", "hr@x"):
        with pytest.raises(ValueError, match="valid: auc, logloss"):
            metric_fn(bad)


def test_evaluator_counts_each_row_once_and_splits_by_scenario():
    ev = ScenarioEvaluator(["a", "b"], ["auc", "logloss"])
    batch = {"row": torch.tensor([0, 1, 2, 3]), "scenario": torch.tensor([0, 0, 1, 1]),
             "label": torch.tensor([0.0, 1.0, 1.0, 0.0]), "group": torch.tensor([0, 0, 1, 1])}
    ev.update(batch, torch.tensor([0.1, 0.9, 0.2, 0.8]))
    ev.update({k: v[:2] for k, v in batch.items()}, torch.tensor([0.1, 0.9]))  # padded duplicate rows
    res = ev.compute_from(ev.gathered())
    assert res["a"]["rows"] == 2 and res["b"]["rows"] == 2
    assert res["a"]["auc"] == 1.0 and res["b"]["auc"] == 0.0
    assert res["a"]["logloss"] == pytest.approx(log_loss([0, 1], 1 / (1 + np.exp(-np.array([0.1, 0.9])))))
    ev.reset()
    assert ev.compute_from(ev.gathered()) == {}


@pytest.mark.slow  # two spawned processes: ~7 s idle, most of it importing torch
def test_ddp_gather_of_uneven_ranks_counts_each_row_once(tmp_path):
    """Two gloo ranks with 5 and 3 rows (row 0 on both, as sampler padding): every rank gathers all 7 rows
    once, in row order, and their metrics equal a single process's over the same rows."""
    from gather_worker import eval_rows, gather_on_rank

    shares = [[0, 1, 2, 3, 4], [5, 6, 0]]
    torch.multiprocessing.spawn(gather_on_rank, args=(2, str(tmp_path / "init"), shares, str(tmp_path)), nprocs=2)
    single = ScenarioEvaluator(["a", "b"], ["auc", "gauc"])
    single.update(*eval_rows(torch.arange(7)))
    want = single.gathered()
    for rank in range(2):
        got = dict(np.load(tmp_path / f"rank{rank}.npz"))
        assert set(got) == set(want)
        for k in want:
            assert np.array_equal(got[k], want[k]), (rank, k)
        assert single.compute_from(got) == single.compute_from(want)
    assert list(want["row"]) == list(range(7))
