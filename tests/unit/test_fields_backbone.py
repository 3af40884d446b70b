"""The field-concatenation backbone: its input is every field (ids, categorical, bag, dense) side by side, every
head works on it, and catalogue scoring (user_side / item_side / score_pairs) equals forward on the pairs."""

from __future__ import annotations

import functools

import pytest
import torch

from tests.unit.test_table_slices import BY_BAND, _dm, _files
from unirec_lab.evaluation.catalogue import CatalogueRanker
from unirec_lab.models.backbones.fields import FieldsBackbone
from unirec_lab.models.builders import build_scenario_as_feature, build_unified
from unirec_lab.models.heads.mlp import MLPTowers
from unirec_lab.models.heads.mmoe import MMoE
from unirec_lab.models.heads.pepnet import PEPNet
from unirec_lab.models.heads.ple import PLE
from unirec_lab.models.heads.star import STAR

HEADS = {
    "mlp": functools.partial(MLPTowers, hidden_dims=[8]),
    "mmoe": functools.partial(MMoE, num_experts=3, expert_dims=[16], tower_dims=[8]),
    "ple": functools.partial(PLE, num_levels=1, expert_dims=[16], tower_dims=[8]),
    "star": functools.partial(STAR, hidden_dims=[16, 8], extra_inputs=["user", "item", "dot"]),
    "pepnet": functools.partial(PEPNet, hidden_dims=[16], gate_hidden_dim=8, extra_inputs=["user", "item"]),
    # SWR's MLP form: Linear -> BatchNorm -> ReLU in towers and experts
    "mlp_bn": functools.partial(MLPTowers, hidden_dims=[8], batch_norm=True),
    "mmoe_bn": functools.partial(MMoE, num_experts=3, expert_dims=[16, 8], tower_dims=[8], batch_norm=True),
    "ple_bn": functools.partial(PLE, num_levels=2, expert_dims=[16], tower_dims=[8], batch_norm=True),
}


@pytest.fixture(scope="module")
def slice_dm(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fields")
    _files(tmp)
    return _dm(tmp, BY_BAND)


def _model(space, head="mlp", trunk=(32,), builder=build_unified, batch_norm=True):
    bb = functools.partial(FieldsBackbone, embedding_dim=4, trunk_dims=list(trunk), batch_norm=batch_norm)
    model = builder(space, bb, HEADS[head])
    torch.manual_seed(1)
    with torch.no_grad():  # weights far from init, so scores are distinct and a wrong path shows
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    return model


def test_input_is_every_field_side_by_side(slice_dm):
    sp = slice_dm.space
    bb = FieldsBackbone(sp, embedding_dim=4, trunk_dims=[8])
    # user: id + gender + age (dense, 1 column); item: id + genre (a bag)
    assert (bb.user_dim, bb.item_dim, bb.in_dim) == (4 + 4 + 1, 4 + 4, 17)
    assert bb.trunk[0].in_features == 17 and bb.out_dim == 8
    batch = {k: v[:16] for k, v in slice_dm.splits["train"].items()}
    u = bb.user_vectors(batch["user"])
    torch.testing.assert_close(u[:, -1], sp.user_dense[batch["user"], 0])  # the scaled age, as it is
    torch.testing.assert_close(u[:, :4], bb.embedding.user_id(batch["user"]))
    assert bb.embedding.user_dense_proj is None  # the summed form's projection is not used here


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("trunk", [(16,), ()])
def test_catalogue_scores_equal_forward(slice_dm, head, trunk):
    model = _model(slice_dm.space, head, trunk).train()
    items = torch.arange(1, slice_dm.space.num_items)
    te = slice_dm.splits["test"]
    rows = {k: v[:9] for k, v in te.items()}
    new = CatalogueRanker(model, items, block_rows=50)
    ref = CatalogueRanker(model, items, cached=False).scores(rows)  # every pair a forward row
    got = new.scores(rows)
    assert model.training and new.cached
    assert ref.std() > 1e-3
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    model.eval()
    with torch.no_grad():
        direct = model(rows)
    idx = rows["item"] - 1
    torch.testing.assert_close(got[torch.arange(len(idx)), idx], direct, rtol=1e-4, atol=1e-4)


def test_scenario_as_feature_on_fields(slice_dm):
    model = _model(slice_dm.space, "mmoe", builder=build_scenario_as_feature).eval()
    items = torch.arange(1, slice_dm.space.num_items)
    rows = {k: v[:6] for k, v in slice_dm.splits["val"].items()}
    ref = CatalogueRanker(model, items, cached=False).scores(rows)
    torch.testing.assert_close(CatalogueRanker(model, items).scores(rows), ref, rtol=1e-4, atol=1e-4)
    other = dict(rows, scenario=(rows["scenario"] + 1) % 3)  # the scenario embedding is an input
    with torch.no_grad():
        assert not torch.allclose(model(rows), model(other))


def test_dense_values_reach_the_score(slice_dm):
    model = _model(slice_dm.space, "mlp", batch_norm=False).eval()
    rows = {k: v[:32] for k, v in slice_dm.splits["train"].items()}
    with torch.no_grad():
        before = model(rows)
        model.backbone.user_dense.add_(3.0)
        after = model(rows)
    assert (before - after).abs().min() > 0


def test_batch_norm_heads_normalise_every_hidden_layer(slice_dm):
    sp = slice_dm.space
    mmoe = HEADS["mmoe_bn"](sp, 12)
    assert [n.num_features for n in mmoe.experts.norms] == [3 * 16, 3 * 8]  # one BatchNorm per expert and layer
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in mmoe.towers.modules()) == 3
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in HEADS["mmoe"](sp, 12).modules())
    x = torch.randn(64, 12) * 1e-3  # tiny inputs (embeddings ~ N(0, 1e-4)): BatchNorm rescales the experts
    out = mmoe.experts.train()(x)
    assert out.shape == (64, 3, 8) and out.std() > 0.1
