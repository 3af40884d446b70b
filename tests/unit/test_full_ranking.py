"""Full-ranking evaluation: hand-computed values on a fixed scorer, and a per-user brute force on a real model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from unirec_lab.evaluation.full_ranking import PairIndex, full_ranking_metrics


class ItemScore(nn.Module):
    """score = a fixed value per global item: the ranking is known in advance."""

    def __init__(self, values: torch.Tensor) -> None:
        super().__init__()
        self.values = values

    def forward(self, batch):
        return self.values[batch["item"]]


def _split(user, item, label, scenario):
    n = len(user)
    return {"user": torch.tensor(user), "item": torch.tensor(item), "label": torch.tensor(label, dtype=torch.float32),
            "scenario": torch.tensor(scenario), "history": torch.zeros(n, 3, dtype=torch.long),
            "group": torch.tensor(user), "row": torch.arange(n)}


def test_known_values_with_masking_and_two_scenarios():
    # scenario 0 owns global items 1..6, scenario 1 items 7..8; item k scores -k (item 1 ranks first)
    item_scenario = torch.tensor([-1, 0, 0, 0, 0, 0, 0, 1, 1])
    model = ItemScore(-torch.arange(9, dtype=torch.float32))
    splits = {
        # user 1 bought item 1 before (masked); user 2 had only a negative on item 2 (not masked)
        "train": _split([1, 2, 3], [1, 2, 7], [1.0, 0.0, 1.0], [0, 0, 1]),
        "val": _split([1], [5], [0.0], [0]),
        # truth: user 1 -> {2, 4}; user 2 -> {6}; a negative test row never counts
        "test": _split([1, 1, 2, 2, 3], [2, 4, 6, 3, 8], [1.0, 1.0, 1.0, 0.0, 1.0], [0, 0, 0, 0, 1]),
    }
    out = full_ranking_metrics(model, splits, ["a", "b"], "a", item_scenario, ks=(1, 3))
    # user 1 ranking (item 1 masked): 2, 3, 4, 5, 6 -> top1 {2}, top3 {2,3,4}: recall 1/2, 1; hits at ranks 1, 3
    # user 2 ranking: 1, 2, 3, 4, 5, 6 -> truth 6 at rank 6: no hits
    idcg2 = 1 + 1 / math.log2(3)
    assert out["users"] == 2 and out["candidates"] == 6
    assert out["recall@1"] == pytest.approx((0.5 + 0) / 2)
    assert out["recall@3"] == pytest.approx((1.0 + 0) / 2)
    assert out["hr@1"] == pytest.approx(0.5) and out["hr@3"] == pytest.approx(0.5)
    assert out["ndcg@1"] == pytest.approx((1.0 + 0) / 2)
    assert out["ndcg@3"] == pytest.approx(((1 + 1 / math.log2(4)) / idcg2 + 0) / 2)
    other = full_ranking_metrics(model, splits, ["a", "b"], "b", item_scenario, ks=(1,))
    # user 3 saw item 7 (masked), truth item 8 is then first
    assert other["users"] == 1 and other["recall@1"] == 1.0 and other["candidates"] == 2
    with pytest.raises(ValueError, match="ks"):
        full_ranking_metrics(model, splits, ["a", "b"], "a", item_scenario, ks=(0,))
    with pytest.raises(ValueError, match=r"full ranking scenario 'c': expected one of \['a', 'b'\]"):
        full_ranking_metrics(model, splits, ["a", "b"], "c", item_scenario)


def test_matches_a_per_user_brute_force_on_a_real_model(tiny_dm):
    from test_unified_model import make_model

    torch.manual_seed(0)
    model = make_model(tiny_dm.space).eval()
    name, s_idx = tiny_dm.scenario_names[1], 1
    got = full_ranking_metrics(model, tiny_dm.splits, tiny_dm.scenario_names, name, tiny_dm.space.item_scenario,
                               ks=(5, 10), max_rows=1000)  # small chunks: several passes
    te = tiny_dm.splits["test"]
    items = torch.nonzero(tiny_dm.space.item_scenario == s_idx, as_tuple=True)[0]
    rec, nd, users = [], [], []
    for r in range(len(te["label"])):
        if te["scenario"][r] != s_idx or te["label"][r] < 0.5 or int(te["user"][r]) in users:
            continue
        u = int(te["user"][r])
        users.append(u)
        batch = {k: v[r:r + 1].repeat_interleave(len(items), 0) for k, v in te.items()}
        batch["item"] = items.clone()
        with torch.no_grad():
            scores = model(batch).double()
        seen = set()
        for sp in ("train", "val"):
            t = tiny_dm.splits[sp]
            m = (t["user"] == u) & (t["label"] > 0.5)
            seen |= set(t["item"][m].tolist())
        truth = set(te["item"][(te["user"] == u) & (te["label"] > 0.5)].tolist())
        for j, it in enumerate(items.tolist()):
            if it in seen:
                scores[j] = -np.inf
        top = [items[j].item() for j in torch.argsort(scores, descending=True, stable=True)[:10].tolist()]
        rec.append(len(set(top) & truth) / len(truth))
        dcg = sum(1 / math.log2(i + 2) for i, it in enumerate(top) if it in truth)
        nd.append(dcg / sum(1 / math.log2(i + 2) for i in range(min(10, len(truth)))))
    assert got["users"] == len(users) > 5 and 0 < got["recall@10"] < 1  # not vacuous
    assert got["recall@10"] == pytest.approx(np.mean(rec)) and got["ndcg@10"] == pytest.approx(np.mean(nd))


def test_pair_index_matrix_equals_a_dense_construction():
    g = torch.Generator().manual_seed(0)
    users, items = torch.randint(0, 30, (400,), generator=g), torch.randint(5, 25, (400,), generator=g)
    chunk = torch.tensor([29, 3, 0, 17, 40])  # 40: a user without pairs
    dense = torch.zeros(41, 20, dtype=torch.bool)
    dense[users, items - 5] = True
    got = PairIndex(users, items, item_lo=5, num_items=20).matrix(chunk)
    assert torch.equal(got, dense[chunk]) and got.any()
