"""What made the SASRec reproduction exact and fast, in the main framework: length-bucketed training batches cut
to their span (data.length_buckets), the next-item loss normalised per epoch (every target weighs the same), and
ranking metrics that share one group sort."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from unirec_lab.data.batching import TensorBatches, cut_history, history_span, length_bucketed
from unirec_lab.evaluation.metrics import ScenarioEvaluator, hr_at_k, metric_values, mrr, ndcg_at_k
from unirec_lab.models.backbones.encoders import CausalSelfAttention
from unirec_lab.models.backbones.shared import SharedBackbone
from unirec_lab.models.baselines.sasrec import SASRec
from unirec_lab.models.objectives import NextItemObjective, next_item_bce


def _rows(n: int = 200, K: int = 10, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    span = torch.randint(0, K + 1, (n,), generator=g)
    hist = torch.randint(1, 50, (n, K), generator=g)
    hist[torch.arange(K).unsqueeze(0) < (K - span).unsqueeze(1)] = 0  # left padding
    return {"history": hist, "history_action": (hist > 0).to(torch.int8) * 2, "row": torch.arange(n),
            "scenario": torch.zeros(n, dtype=torch.long), "label": torch.ones(n), "item": torch.arange(n) % 49 + 1}


def test_history_span_and_cut():
    b = {"history": torch.tensor([[0, 0, 3, 4], [0, 0, 0, 5], [0, 0, 0, 0]]),
         "history_action": torch.tensor([[0, 0, 2, 1], [0, 0, 0, 2], [0, 0, 0, 0]]), "item": torch.tensor([1, 2, 3])}
    assert history_span(b["history"]).tolist() == [2, 1, 0]
    cut = cut_history(b)
    assert cut["history"].tolist() == [[3, 4], [0, 5], [0, 0]] and cut["history_action"].shape == (3, 2)
    assert cut["item"] is b["item"]  # other columns untouched


def test_length_buckets_cover_every_row_once_in_sorted_chunks():
    data = _rows()
    span = history_span(data["history"])
    order = torch.randperm(200, generator=torch.Generator().manual_seed(1))
    batches = length_bucketed(order, span, 16, 4, torch.Generator().manual_seed(2))
    assert sorted(torch.cat(batches).tolist()) == list(range(200))
    assert len(batches) == math.ceil(200 / 16)
    # inside a chunk of 4 batches the spans are sorted: a batch's spans lie within a narrow band of the chunk
    spread = [int(span[b].max() - span[b].min()) for b in batches]
    assert np.mean(spread) < 0.6 * np.mean([int(span[order[i:i + 16]].max() - span[order[i:i + 16]].min())
                                            for i in range(0, 200, 16)])
    it = TensorBatches(data, 16, shuffle=True, seed=3, length_buckets=4)
    got = list(it)
    assert len(got) == len(it) and sorted(torch.cat([b["row"] for b in got]).tolist()) == list(range(200))
    assert all(b["history"].shape[1] == max(int(history_span(b["history"]).max()), 1) for b in got)
    assert [b["row"].tolist() for b in got] == [b["row"].tolist() for b in it]  # a function of (seed, epoch)
    with pytest.raises(ValueError, match=r"data.length_buckets=-1, expected an integer >= 0"):
        TensorBatches(data, 16, shuffle=True, length_buckets=-1)


def test_cut_batches_give_the_same_sasrec_outputs(tiny_dm):
    """Exact: a batch cut to its span scores and trains like the same rows padded to history_len."""
    torch.manual_seed(0)
    enc = functools.partial(CausalSelfAttention, max_len=8, dropout=0.0)
    model = SASRec(SharedBackbone(tiny_dm.space, enc, embedding_dim=16, trunk_dims=()))
    tr = tiny_dm.splits["train"]
    short = torch.nonzero(history_span(tr["history"]) <= 3)[:32, 0]
    full = {k: v[short] for k, v in tr.items()}
    cut = cut_history(full)
    assert cut["history"].shape[1] <= 3 < full["history"].shape[1]
    model.eval()
    torch.testing.assert_close(model(cut), model(full))
    # the per-position states the next-item objective trains: the cut batch's are the last columns of the full one's
    states_full = model.backbone.sequence_states(full)["states"][:, -cut["history"].shape[1]:]
    torch.testing.assert_close(states_full, model.backbone.sequence_states(cut)["states"])


def test_epoch_norm_is_the_sum_over_the_mean_targets_per_batch(tiny_dm):
    tr = tiny_dm.splits["train"]
    obj = NextItemObjective(tiny_dm.space, norm="epoch")
    with pytest.raises(ValueError, match="next_item norm=epoch needs calibrate"):
        obj._denominator()
    obj.calibrate(tr, 10)
    # by hand: a target after position t is entry t+1 (or the row's item) when it is a positive and t is real
    ids, act = tr["history"].numpy(), tr["history_action"].numpy()
    nxt_pos = np.concatenate([act[:, 1:] == 2, (tr["label"].numpy() > 0.5)[:, None]], 1)
    nxt = np.concatenate([ids[:, 1:], tr["item"].numpy()[:, None]], 1)
    want = ((ids > 0) & nxt_pos & (nxt > 0)).sum() / 10
    assert obj.targets_per_batch == pytest.approx(want)
    only = NextItemObjective(tiny_dm.space, norm="epoch", scenarios=["news"])
    only.calibrate(tr, 10)
    assert only.targets_per_batch < obj.targets_per_batch
    states = torch.tensor([[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    pos = torch.tensor([[2.0, 0.0], [0.0, 1.0], [9.0, 9.0]])
    neg = torch.tensor([[0.0, 1.0], [1.0, 1.0], [9.0, 9.0]])
    valid = torch.tensor([True, True, False])
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    assert next_item_bce(states, pos, neg, valid, 4.0).item() == pytest.approx(
        ((sp(-2) + sp(0)) + (sp(-2) + sp(2))) / 4.0, rel=1e-6)
    with pytest.raises(ValueError, match=r"next_item norm='sequence', expected 'batch' or 'epoch'"):
        NextItemObjective(tiny_dm.space, norm="sequence")


def test_ranking_metrics_share_one_sort_and_agree():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(300), 10)
    y = (rng.random(3000) < 0.15).astype(np.float32)
    z = np.round(rng.normal(size=3000), 1)  # ties
    ev = ScenarioEvaluator(["s"], ["mrr", "ndcg@5", "hr@3", "auc"])
    got = metric_values(ev.metrics, y, z, g)
    assert got["mrr"] == mrr(y, z, g) and got["ndcg@5"] == ndcg_at_k(y, z, g, 5) and got["hr@3"] == hr_at_k(y, z, g, 3)
    assert 0.0 < got["auc"] < 1.0
