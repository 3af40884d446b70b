"""Catalogue ranking: the cached path equals the reference path (every pair a forward row) for every model kind,
the item side is computed once per model version, the retrieval stage, and the one-line errors."""

from __future__ import annotations

import functools

import pytest
import torch

from unirec_lab.evaluation.catalogue import CatalogueRanker, rank_catalogue
from unirec_lab.evaluation.full_ranking import full_ranking_metrics
from unirec_lab.models.backbones.encoders import CausalSelfAttention, MeanPooling, TargetAttention
from unirec_lab.models.backbones.shared import SharedBackbone
from unirec_lab.models.baselines.mf import MatrixFactorization
from unirec_lab.models.baselines.popularity import Popularity
from unirec_lab.models.builders import build_scenario_as_feature, build_unified
from unirec_lab.models.heads.mlp import MLPTowers
from unirec_lab.models.heads.mmoe import MMoE
from unirec_lab.models.heads.pepnet import PEPNet
from unirec_lab.models.heads.star import STAR

MLP_HEAD = functools.partial(MLPTowers, hidden_dims=[16])


def _unified(space, encoder=MeanPooling, head=MLP_HEAD, builder=build_unified, trunk=(32,)):
    bb = functools.partial(SharedBackbone, history_encoder=encoder, embedding_dim=8, trunk_dims=list(trunk))
    return builder(space, bb, head)


MODELS = {
    "unified_mean_mlp": lambda sp: _unified(sp),
    "unified_din_pepnet": lambda sp: _unified(sp, functools.partial(TargetAttention, attention_dims=[8]),
                                              functools.partial(PEPNet, hidden_dims=[16], gate_hidden_dim=8)),
    "unified_sasrec_star": lambda sp: _unified(sp, functools.partial(CausalSelfAttention, max_len=20, num_heads=2),
                                               functools.partial(STAR, extra_inputs=["user", "item", "dot"])),
    "scenario_feature_mmoe": lambda sp: _unified(sp, head=functools.partial(MMoE, num_experts=2),
                                                 builder=build_scenario_as_feature),
    "unified_no_trunk": lambda sp: _unified(sp, trunk=()),
    "scenario_feature_mlp": lambda sp: _unified(sp, builder=build_scenario_as_feature),
    "unified_deep_dropout": lambda sp: _unified(sp, head=functools.partial(MLPTowers, hidden_dims=[8, 4],
                                                                           dropout=0.3), trunk=(16, 12)),
    "unified_bn_tower": lambda sp: _unified(sp, head=functools.partial(MLPTowers, hidden_dims=[8],
                                                                       batch_norm=True)),
    "unified_extra_dot": lambda sp: _unified(sp, head=functools.partial(MLPTowers, hidden_dims=[8],
                                                                        extra_inputs=["dot"])),
    "mf": lambda sp: MatrixFactorization(sp, embedding_dim=8),
    "popularity": lambda sp: Popularity(sp),
}


def _randomise(model):
    """Weights far from their (near-zero / zero-bias) init, so the scores are distinct and the test can fail."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return model


def _user_rows(dm, s_idx, n=12):
    te = dm.splits["test"]
    rows = torch.nonzero((te["scenario"] == s_idx) & (te["label"] > 0.5), as_tuple=True)[0][:n]
    return {k: v[rows] for k, v in te.items()}


@pytest.mark.parametrize("name", list(MODELS))
def test_cached_path_equals_the_reference_path(tiny_dm, name):
    torch.manual_seed(0)
    model = _randomise(MODELS[name](tiny_dm.space)).train()
    s_idx = 1
    items = torch.nonzero(tiny_dm.space.item_scenario == s_idx, as_tuple=True)[0]
    rows = _user_rows(tiny_dm, s_idx)
    new = CatalogueRanker(model, items, block_rows=100)  # small blocks: several passes per user chunk
    assert new.cached
    ref = CatalogueRanker(model, items, cached=False).scores(rows)
    got = new.scores(rows)
    assert model.training  # restored after scoring in eval mode
    assert got.shape == (len(rows["user"]), len(items)) and ref.std() > 1e-3  # not vacuous
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    name_s = tiny_dm.scenario_names[s_idx]
    args = (model, tiny_dm.splits, tiny_dm.scenario_names, name_s, tiny_dm.space.item_scenario)
    old = full_ranking_metrics(*args, ks=(5, 10), cached=False)
    now = full_ranking_metrics(*args, ks=(5, 10), user_chunk=7, max_rows=300)
    assert now == pytest.approx(old, abs=1e-6)


# the models whose exact path is the ReLU chain (evaluation/relu_chain.py); the others use score_pairs
CHAIN = {"unified_mean_mlp", "scenario_feature_mlp", "unified_deep_dropout"}


@pytest.mark.parametrize("name", list(MODELS))
def test_exact_top_k_equals_brute_force(tiny_dm, name):
    """Every backbone / head family: the exact top-K (earlier positives excluded) is the brute force's, every
    (user, item) pair a forward row; the chain models take the chain, the rest the general path."""
    torch.manual_seed(0)
    model = _randomise(MODELS[name](tiny_dm.space)).eval()
    s_idx = 1
    items = torch.nonzero(tiny_dm.space.item_scenario == s_idx, as_tuple=True)[0]
    rows = _user_rows(tiny_dm, s_idx)
    exclude = torch.rand(len(rows["user"]), len(items), generator=torch.Generator().manual_seed(0)) < 0.2
    brute = CatalogueRanker(model, items, cached=False).scores(rows).masked_fill(exclude, -torch.inf)
    want = torch.topk(brute, 10, dim=1)
    ranker = CatalogueRanker(model, items, block_rows=100)
    got = ranker.topk(rows, 10, exclude)
    assert torch.equal(got.indices, want.indices)
    torch.testing.assert_close(got.values, want.values, rtol=1e-5, atol=1e-5)
    if ranker.cached:
        with torch.no_grad():
            chain = getattr(model, "relu_chain", lambda u, i: None)(model.user_side(rows), ranker.item_state())
        assert (chain is not None) == (name in CHAIN)


def test_rows_of_several_scenarios_take_the_general_path(tiny_dm):
    """One chain holds one scenario's tower: mixed rows are scored by score_pairs, still exactly."""
    model = _randomise(MODELS["unified_mean_mlp"](tiny_dm.space)).eval()
    items = torch.nonzero(tiny_dm.space.item_scenario == 1, as_tuple=True)[0]
    a, b = _user_rows(tiny_dm, 0, n=3), _user_rows(tiny_dm, 1, n=3)
    rows = {k: torch.cat([a[k], b[k]]) for k in a}
    ranker = CatalogueRanker(model, items)
    with torch.no_grad():
        assert model.relu_chain(model.user_side(rows), ranker.item_state()) is None
    ref = CatalogueRanker(model, items, cached=False).scores(rows)
    torch.testing.assert_close(ranker.scores(rows), ref, rtol=1e-5, atol=1e-5)


def test_a_wrong_chain_is_caught(tiny_dm, monkeypatch):
    """Sabotage: a chain that reads the wrong scenario's tower must not pass the brute-force comparison."""
    model = _randomise(MODELS["unified_mean_mlp"](tiny_dm.space)).eval()
    items = torch.nonzero(tiny_dm.space.item_scenario == 1, as_tuple=True)[0]
    rows = _user_rows(tiny_dm, 1)
    ref = CatalogueRanker(model, items, cached=False).scores(rows)
    tower = model.head.tower_modules
    monkeypatch.setattr(model.head, "tower_modules", lambda s: tower((s + 1) % tiny_dm.space.num_scenarios))
    assert not torch.allclose(CatalogueRanker(model, items).scores(rows), ref, rtol=1e-5, atol=1e-5)


def test_item_side_once_per_model_version(tiny_dm):
    model = MODELS["unified_mean_mlp"](tiny_dm.space)
    calls = []
    side = model.item_side
    model.item_side = lambda items: calls.append(len(items)) or side(items)
    items = torch.nonzero(tiny_dm.space.item_scenario == 0, as_tuple=True)[0]
    ranker = CatalogueRanker(model, items)
    rows = _user_rows(tiny_dm, 0, n=4)
    before = ranker.scores(rows)
    ranker.topk(rows, 3)
    assert calls == [len(items)]
    with torch.no_grad():  # a new model version (an optimizer step or a load writes in place)
        model.backbone.embedding.item_id.weight.mul_(2.0)
    after = ranker.scores(rows)
    assert len(calls) == 2 and not torch.allclose(before, after)


def test_retrieval_stage_is_exact_when_the_score_is_linear_in_the_keys(tiny_dm):
    # MF without biases: a user's score is exactly linear in the item vector, so the fitted first stage ranks
    # exactly and re-ranking its top k gives the exact top k; the biased MF is not, and still agrees mostly
    model = _randomise(MatrixFactorization(tiny_dm.space, embedding_dim=8, bias=False))
    items = torch.nonzero(tiny_dm.space.item_scenario == 0, as_tuple=True)[0]
    rows = _user_rows(tiny_dm, 0)
    exclude = torch.zeros(len(rows["user"]), len(items), dtype=torch.bool)
    exclude[:, ::3] = True
    exact = CatalogueRanker(model, items).topk(rows, 5, exclude)
    two_stage = CatalogueRanker(model, items, candidates=5, fit_items=30)
    assert two_stage.candidates == 5
    got = two_stage.topk(rows, 5, exclude)
    assert torch.equal(got[1], exact.indices)
    assert not exclude.gather(1, got[1]).any()
    ids, vals = rank_catalogue(model, rows, items, 5, exclude, candidates=len(items))  # >= N: exact path
    assert torch.equal(ids, items[exact.indices]) and torch.allclose(vals, exact.values)


def test_bad_inputs_get_one_line(tiny_dm):
    model = MODELS["mf"](tiny_dm.space)
    items = torch.arange(1, 5)
    with pytest.raises(ValueError, match=r"full ranking candidates=0: expected a positive integer or null"):
        CatalogueRanker(model, items, candidates=0)
    with pytest.raises(ValueError, match=r"catalogue items: expected a non-empty 1-D tensor of item ids, got shape"):
        CatalogueRanker(model, items.reshape(2, 2))
    with pytest.raises(ValueError, match=r"catalogue top-k k=0: expected a positive integer"):
        CatalogueRanker(model, items).topk(_user_rows(tiny_dm, 0, n=2), 0)


def test_retrieval_stage_returns_exact_scores_of_unexcluded_items(tiny_dm):
    model = _randomise(MODELS["unified_mean_mlp"](tiny_dm.space))
    items = torch.nonzero(tiny_dm.space.item_scenario == 0, as_tuple=True)[0]
    rows = _user_rows(tiny_dm, 0)
    exclude = torch.zeros(len(rows["user"]), len(items), dtype=torch.bool)
    exclude[:, :40] = True
    full = CatalogueRanker(model, items).scores(rows)
    values, pos = CatalogueRanker(model, items, candidates=20, fit_items=40).topk(rows, 8, exclude)
    assert not exclude.gather(1, pos).any() and all(len(set(p.tolist())) == 8 for p in pos)
    torch.testing.assert_close(values, full.gather(1, pos))  # re-ranked on exact scores, best first
    assert torch.all(values[:, :-1] >= values[:, 1:])
    best = full.masked_fill(exclude, -torch.inf).max(1).values
    assert torch.all(values[:, 0] <= best + 1e-6)
