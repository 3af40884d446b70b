"""One fused embedding table: every table is a row range of one weight, yet lookups, padding, init, gradients
and state-dict keys are those of separate ``nn.Embedding`` / ``EmbeddingBag(mean)`` tables."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from unirec_lab.engine.optim import LazyAdam
from unirec_lab.features import FeatureSpace, Slot
from unirec_lab.models.backbones.fields import FieldsBackbone
from unirec_lab.models.embedding import FeatureEmbedding, init_embedding

TABLES = {"shop/user/age": 4, "shared/item/genre": 6, "shop/item/brand": 5, "shop/item/tag": 3}
USER_SLOTS = [Slot("shop/user/age", "categorical", 0, 1)]
ITEM_SLOTS = [Slot("shared/item/genre", "multi", 0, 3), Slot("shop/item/brand", "categorical", 3, 1),
              Slot("shop/item/tag", "multi", 4, 1)]


def _space() -> FeatureSpace:
    g = torch.Generator().manual_seed(3)
    users = torch.randint(0, 4, (6, 1), generator=g)
    genre = torch.randint(1, 6, (9, 3), generator=g)
    genre[0] = 0
    genre[2, 1:] = 0  # a one-genre item: the mean over its one value
    genre[5] = 0  # an item without genres
    items = torch.cat([genre, torch.randint(0, 5, (9, 1), generator=g), torch.randint(0, 3, (9, 1), generator=g)], 1)
    users[0], items[0] = 0, 0
    return FeatureSpace(["shop"], 6, 9, {"shop": 0}, {"shop": 0}, dict(TABLES), USER_SLOTS, ITEM_SLOTS, users, items,
                        torch.zeros(9, dtype=torch.long))


def _separate(emb: FeatureEmbedding) -> dict[str, nn.Module]:
    """Separate tables holding the fused embedding's per-table state-dict tensors (the pre-fusion model)."""
    state = emb.state_dict()
    out = {}
    for key, t in state.items():
        name = key[: -len(".weight")]
        bag = name.startswith("tables.") and "genre" in name
        m = (nn.EmbeddingBag(len(t), t.shape[1], mode="mean", padding_idx=0) if bag
             else nn.Embedding(len(t), t.shape[1], padding_idx=0))
        m.weight.data.copy_(t)
        out[name] = m
    return out


def test_one_parameter_and_the_per_table_state_dict_keys():
    emb = FeatureEmbedding(_space(), 4)
    assert [n for n, _ in emb.named_parameters()] == ["fused.weight"]
    assert isinstance(emb.fused, nn.Embedding) and emb.fused.sparse  # DDP expects a sparse gradient from it
    assert emb.weight.shape == (6 + 9 + sum(TABLES.values()), 4)
    assert list(emb.state_dict()) == ["user_id.weight", "item_id.weight", "tables.shop__user__age.weight",
                                      "tables.shared__item__genre.weight", "tables.shop__item__brand.weight",
                                      "tables.shop__item__tag.weight"]
    assert emb.state_dict()["tables.shop__item__brand.weight"].shape == (5, 4)


def test_init_draws_what_separate_tables_drew():
    torch.manual_seed(11)
    emb = FeatureEmbedding(_space(), 4, init_std=0.1)
    torch.manual_seed(11)
    ref = [nn.Embedding(n, 4, padding_idx=0) for n in (6, 9, *TABLES.values())]
    for t in ref:
        init_embedding(t, 0.1)
    torch.testing.assert_close(emb.weight.detach(), torch.cat([t.weight.detach() for t in ref]), rtol=0, atol=0)


def test_lookups_equal_separate_tables_and_padding_is_zero():
    sp = _space()
    emb = FeatureEmbedding(sp, 4, init_std=0.5)
    sep = _separate(emb)
    u, i = torch.arange(6), torch.arange(9)
    fu, fi = sp.user_features, sp.item_features
    want_u = sep["user_id"](u) + sep["tables.shop__user__age"](fu[:, 0])
    genre = sep["tables.shared__item__genre"](fi[:, :3]) * (fi[:, :1] > 0)
    tag = sep["tables.shop__item__tag"](fi[:, 4])
    want_i = (sep["item_id"](i) + genre + sep["tables.shop__item__brand"](fi[:, 3]) + tag) * (i > 0).unsqueeze(1)
    torch.testing.assert_close(emb.user_vectors(u), want_u)
    torch.testing.assert_close(emb.item_vectors(i), want_i)
    assert not emb.user_vectors(torch.zeros(3, dtype=torch.long)).any()
    # the fields form: every field side by side, the same per-table vectors
    bb = FieldsBackbone(sp, embedding_dim=4, trunk_dims=[8], init_std=0.5)
    sep = _separate(bb.embedding)
    want = torch.cat([sep["item_id"](i), sep["tables.shared__item__genre"](fi[:, :3]),
                      sep["tables.shop__item__brand"](fi[:, 3]), sep["tables.shop__item__tag"](fi[:, 4])], 1)
    torch.testing.assert_close(bb.item_vectors(i), want)
    torch.testing.assert_close(bb.item_vectors(i.reshape(3, 3)), want.reshape(3, 3, -1))
    # forward gathers both sides in one lookup: the same vectors as the per-side path
    users = torch.tensor([1, 0, 5, 2, 3, 4, 1, 2, 3])
    out = bb({"user": users, "item": i, "scenario": torch.zeros(9, dtype=torch.long)})
    torch.testing.assert_close(out["item"], want)
    torch.testing.assert_close(out["user"], bb.user_vectors(users))


def test_one_sparse_update_touches_only_used_rows_and_never_padding():
    sp = _space()
    emb = FeatureEmbedding(sp, 4, init_std=0.5)
    opt = LazyAdam(emb.parameters(), lr=0.1)
    before = emb.weight.detach().clone()
    loss = emb.user_vectors(torch.tensor([1, 2, 0])).sum() + emb.item_vectors(torch.tensor([[3, 3], [0, 4]])).sum()
    loss.backward()
    assert emb.weight.grad.is_sparse
    opt.step()
    changed = set((emb.weight.detach() != before).any(1).nonzero().flatten().tolist())
    starts = {k: v.start for k, v in emb._views.items()}
    f_u, f_i = sp.user_features, sp.item_features
    want = {1, 2, starts["item_id"] + 3, starts["item_id"] + 4}
    want |= {starts["tables.shop__user__age"] + int(f_u[u, 0]) for u in (1, 2) if f_u[u, 0] > 0}
    for it in (3, 4):
        want |= {starts["tables.shared__item__genre"] + int(g) for g in f_i[it, :3] if g > 0}
        want |= {starts["tables.shop__item__brand"] + int(f_i[it, 3])} if f_i[it, 3] > 0 else set()
        want |= {starts["tables.shop__item__tag"] + int(f_i[it, 4])} if f_i[it, 4] > 0 else set()
    assert changed == want
    for view in emb._views.values():  # every table's padding row is still zero
        assert not view.weight[0].any()


def test_old_checkpoints_load_and_a_wrong_table_is_named():
    sp = _space()
    a, b = FeatureEmbedding(sp, 4, init_std=0.5), FeatureEmbedding(sp, 4, init_std=0.5)
    b.load_state_dict({k: v.clone() for k, v in a.state_dict().items()})
    assert torch.equal(a.weight, b.weight)
    bad = {k: v.clone() for k, v in a.state_dict().items()}
    bad["tables.shop__item__brand.weight"] = torch.zeros(7, 4)
    with pytest.raises(RuntimeError, match=r"size mismatch for tables\.shop__item__brand\.weight: copying a param "
                                           r"with shape \(7, 4\) from checkpoint, the shape in current model is "
                                           r"\(5, 4\)"):
        b.load_state_dict(bad)
    del bad["tables.shop__item__brand.weight"]
    with pytest.raises(RuntimeError, match=r"Missing key\(s\) in state_dict: \"tables\.shop__item__brand\.weight\""):
        b.load_state_dict(bad)


def test_grow_keeps_every_trained_row_and_the_layout():
    sp = _space()
    emb = FeatureEmbedding(sp, 4, init_std=0.5)
    old = {k: v.clone() for k, v in emb.state_dict().items()}
    emb.grow_ids("user", 8, lambda w, n: torch.full((n - len(w), w.shape[1]), 7.0))
    new = emb.state_dict()
    assert new["user_id.weight"].shape == (8, 4) and (new["user_id.weight"][6:] == 7.0).all()
    for k, v in old.items():
        assert torch.equal(new[k][: len(v)], v), k
    fi = sp.item_features
    sep = _separate(emb)
    torch.testing.assert_close(emb.item_vectors(torch.tensor([1])),
                               sep["item_id"](torch.tensor([1])) + sep["tables.shared__item__genre"](fi[1:2, :3])
                               + sep["tables.shop__item__brand"](fi[1:2, 3]) + sep["tables.shop__item__tag"](fi[1:2, 4]))


def _loss(emb: FeatureEmbedding) -> torch.Tensor:
    w = torch.linspace(-1, 1, emb.dim)
    return ((emb.user_vectors(torch.tensor([1, 2, 0, 2])) * w).sum()
            + (emb.item_vectors(torch.tensor([[3, 3], [0, 4], [2, 5]])) ** 2).sum())


def test_a_steps_lookups_give_one_concatenated_gradient_equal_to_the_plain_lookups():
    sp = _space()
    torch.manual_seed(5)
    emb = FeatureEmbedding(sp, 4, init_std=0.5)
    torch.manual_seed(5)
    dense = FeatureEmbedding(sp, 4, init_std=0.5, sparse=False)  # F.embedding / embedding_bag, dense gradient
    _loss(emb).backward()
    _loss(dense).backward()
    grad = emb.weight.grad
    assert grad.is_sparse and not grad.is_coalesced()  # one concatenation, merged once by the optimizer
    assert not (grad._indices() == 0).any()  # no entry for the padding row
    torch.testing.assert_close(grad.to_dense(), dense.weight.grad)
    # the next backward opens a new root: gradients accumulate as with plain lookups, copies start clean
    _loss(emb).backward()
    torch.testing.assert_close(emb.weight.grad.to_dense(), 2 * dense.weight.grad)
    twin = copy.deepcopy(emb)
    twin.weight.grad = None
    _loss(twin).backward()
    torch.testing.assert_close(twin.weight.grad.to_dense(), dense.weight.grad)
    twin.double().weight.grad = None  # a cast module opens a root of its new dtype
    _loss(twin).backward()
    torch.testing.assert_close(twin.weight.grad.to_dense().float(), dense.weight.grad)
    with torch.no_grad():  # evaluation still uses the plain lookups
        torch.testing.assert_close(emb.item_vectors(torch.arange(9)), dense.item_vectors(torch.arange(9)))
