"""Warm-start fine-tuning (serve/finetune.py): appended ids, extended histories, a planted shift it recovers from,
determinism."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from unirec_lab.data.datamodule import MultiScenarioDataModule
from unirec_lab.data.synthetic import SyntheticScenario
from unirec_lab.engine.build import build_model
from unirec_lab.engine.optim import LazyAdam
from unirec_lab.evaluation.metrics import auc
from unirec_lab.serve import finetune as ft

WORLD = dict(dim=8, num_topics=8, num_segments=6, num_tokens=40, tokens_per_topic=8, seed=3)


def optimizer(lr: float = 0.01):
    return lambda params: LazyAdam(params, lr=lr)


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    """One scenario whose preference flips at 60% of time: train = the past (before it), val + test after it."""
    torch.set_num_threads(1)
    src = SyntheticScenario("shop", WORLD, num_users=150, num_items=60, rows_per_user=40, label_rate=0.3,
                            signal=4.0, preference_sharing=0.3, popularity_effect=0.0, val_frac=0.15,
                            test_frac=0.25, shift_at=0.6, seed=1)
    dm = MultiScenarioDataModule({"shop": {"source": src}}, cache_dir=tmp_path_factory.mktemp("cache"),
                                 batch_size=256, history_len=8, val_budget=None)
    dm.prepare_data()
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def trained(shifted, tmp_path_factory):
    """A model trained on the past only (the training objective, 6 passes)."""
    from tests.conftest import compose_cfg

    cfg = compose_cfg(tmp_path_factory.mktemp("run"), ["backbone.embedding_dim=16", "backbone.trunk_dims=[32]",
                                                       "head.hidden_dims=[16]"])
    torch.manual_seed(0)
    model = build_model(cfg, shifted.space)
    ft.finetune(model, shifted.splits["train"], optimizer(), ["shop"], epochs=6, batch_size=256, seed=0)
    return model


def events_of(dm, split: str) -> pd.DataFrame:
    df = dm.bundles["shop"].interactions
    return df[df["split"] == split][["user", "item", "label", "ts"]].assign(scenario="shop").astype(
        {"user": "int64", "item": "int64"})


def test_appended_ids_get_mean_rows_and_old_rows_are_unchanged(shifted, trained):
    model = copy.deepcopy(trained)
    space = shifted.space
    before_u = model.backbone.embedding.user_id.weight.detach().clone()
    before_i = model.backbone.embedding.item_id.weight.detach().clone()
    grown = ft.grow(model, space, {"shop": 3}, {"shop": 2})
    emb = model.backbone.embedding
    assert emb.user_id.weight.shape == (space.num_users + 3, before_u.shape[1])
    assert emb.item_id.weight.shape == (space.num_items + 2, before_i.shape[1])
    assert torch.equal(emb.user_id.weight[: space.num_users], before_u)
    assert torch.equal(emb.item_id.weight[: space.num_items], before_i)
    assert torch.allclose(emb.user_id.weight[-1], before_u[1:].mean(0))
    assert emb.item_features.shape[0] == space.num_items + 2 and not emb.item_features[-2:].any()
    assert grown.global_users("shop", np.array([0, 150, 152])).tolist() == [1, 151, 153]
    assert grown.global_items("shop", np.array([60, 61])).tolist() == [61, 62]
    assert grown.item_scenario[-2:].tolist() == [0, 0]
    assert ft.local_counts(grown, "user") == {"shop": 153}
    logits = model({"scenario": torch.zeros(2, dtype=torch.long), "user": torch.tensor([1, 153]),
                    "item": torch.tensor([62, 5]), "history": torch.zeros(2, 8, dtype=torch.long)})
    assert torch.isfinite(logits).all()


def test_mf_bias_tables_grow_too(shifted, tmp_path):
    from tests.conftest import compose_cfg

    model = build_model(compose_cfg(tmp_path, ["model=mf"]), shifted.space)
    ft.grow(model, shifted.space, {"shop": 1}, {})
    assert model.user.weight.shape[0] == model.user_bias.weight.shape[0] == shifted.space.num_users + 1
    assert model.item.weight.shape[0] == shifted.space.num_items


def test_histories_extend_with_new_events_in_time_order(shifted):
    space = shifted.space
    past = pd.DataFrame({"scenario": "shop", "user": [0, 0, 1], "item": [3, 4, 9], "label": [1, 0, 1],
                         "ts": [1, 2, 1]})
    events = pd.DataFrame({"scenario": "shop", "user": [0, 0, 0], "item": [5, 6, 7], "label": [1, 1, 0],
                           "ts": [10, 11, 12]})
    data = ft.event_tensors(space, events, history_len=4, past=past)
    g = space.global_items("shop", np.arange(10)).tolist()
    assert data["history"].tolist() == [[0, 0, 0, g[3]], [0, 0, g[3], g[5]], [0, g[3], g[5], g[6]]]
    assert data["user"].tolist() == [1, 1, 1] and data["label"].tolist() == [1.0, 1.0, 0.0]


@pytest.mark.parametrize("events, message", [
    (pd.DataFrame({"scenario": ["shop"], "user": [0], "item": [1], "label": [1]}), "missing column(s) ['ts']"),
    (pd.DataFrame({"scenario": ["nope"], "user": [0], "item": [1], "label": [1], "ts": [0]}),
     "unknown scenario(s) ['nope']"),
    (pd.DataFrame({"scenario": ["shop"], "user": [0], "item": [1], "label": [3], "ts": [0]}), "label 3"),
    (pd.DataFrame({"scenario": ["shop"], "user": [-1], "item": [1], "label": [1], "ts": [0]}), "'user' must"),
    (pd.DataFrame({"scenario": ["shop"], "user": [999], "item": [1], "label": [1], "ts": [0]}), "grow()"),
])
def test_bad_events_fail_with_one_line(shifted, events, message):
    with pytest.raises(ValueError, match=None) as e:
        ft.event_tensors(shifted.space, events, history_len=4)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_update_on_the_shift_beats_the_static_model(shifted, trained):
    """After the flip the static model ranks backwards; one update on the post-shift feedback (val period)
    must win on the later rows (test period) by a wide margin."""
    test = shifted.splits["test"]
    y = test["label"].numpy()
    static_auc = auc(y, ft.score(trained, test))
    model = copy.deepcopy(trained)
    space, report = ft.update(model, shifted.space, events_of(shifted, "val"), optimizer(), history_len=8,
                              past=events_of(shifted, "train"), epochs=3, batch_size=128, seed=0)
    updated_auc = auc(y, ft.score(model, test))
    assert static_auc < 0.45, static_auc  # the planted shift is real
    assert updated_auc > static_auc + 0.15, (static_auc, updated_auc)
    assert report.steps == 3 * -(-report.rows // 128) and report.last_loss < report.first_loss
    assert report.new_users == {} and space.num_users == shifted.space.num_users


def test_update_is_deterministic_for_a_seed(shifted, trained):
    ev = events_of(shifted, "val")
    ev = pd.concat([ev, ev.head(5).assign(user=150, ts=ev["ts"].max() + 1)])  # a new user too
    outs = []
    for seed in (0, 0, 1):
        model = copy.deepcopy(trained)
        ft.update(model, shifted.space, ev, optimizer(), history_len=8, epochs=1, max_steps=4, batch_size=64,
                  seed=seed, init="normal")
        outs.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], outs[2])


def test_compact_relays_grown_ids_without_changing_scores(tiny_dm, tmp_path):
    """Two scenarios, both grown: compaction gives contiguous offsets again and the same logit per local id."""
    from tests.conftest import compose_cfg

    space = tiny_dm.space
    model = build_model(compose_cfg(tmp_path, ["backbone.embedding_dim=8", "backbone.trunk_dims=[16]",
                                               "head.hidden_dims=[8]"]), space)
    grown = ft.grow(model, space, {"ecommerce": 2, "social": 1}, {"ecommerce": 1, "news": 2}, init="normal")

    def logits(sp):
        rows = []
        for s_idx, s in enumerate(["ecommerce", "social"]):
            n_u, n_i = ft.local_counts(sp, "user")[s], ft.local_counts(sp, "item")[s]
            u, i = np.arange(n_u) % n_u, np.arange(n_u) % n_i
            rows.append({"scenario": torch.full((n_u,), s_idx), "user": torch.from_numpy(sp.global_users(s, u)),
                         "item": torch.from_numpy(sp.global_items(s, i)), "history": torch.zeros(n_u, 8, dtype=torch.long)})
        return [model.eval()(r).detach() for r in rows]

    before = logits(grown)
    flat = ft.compact(model, grown)
    after = logits(flat)
    assert not flat.user_global and flat.user_offset["social"] == space.user_offset["social"] + 2
    assert flat.item_offset["news"] == space.item_offset["news"] + 1
    assert ft.local_counts(flat, "item") == ft.local_counts(grown, "item")
    assert int(flat.item_scenario[flat.item_offset["news"] + 1]) == 3
    for a, b in zip(before, after):
        assert torch.allclose(a, b, atol=1e-6)


def test_grow_pads_text_and_dense_rows_and_refuses_shared_id_spaces():
    """Appended items get zero text / dense rows (no content yet); slices sharing ids cannot grow."""
    import dataclasses

    from tests.unit.test_serve_artifact import _every_field_space
    from unirec_lab.serve.finetune import grow_space

    space = dataclasses.replace(_every_field_space(), id_owner={}, item_offset={"a": 0, "b": 4},
                                user_offset={"a": 0, "b": 6}, num_items=6, num_users=8,
                                item_scenario=torch.tensor([-1, 0, 0, 0, 0, 1]),
                                item_text=torch.randn(6, 4), item_train_count=torch.arange(6),
                                item_train_pos=torch.arange(6), item_dense=torch.zeros(6, 0),
                                user_features=torch.zeros(8, 1, dtype=torch.long), user_train_pos=torch.arange(8),
                                user_dense=torch.rand(8, 1))
    grown = grow_space(space, {"a": 2}, {"b": 3})
    assert grown.item_text.shape == (9, 4) and torch.equal(grown.item_text[:6], space.item_text)
    assert (grown.item_text[6:] == 0).all() and grown.user_dense.shape == (10, 1)
    with pytest.raises(ValueError, match="slices sharing one id space"):
        grow_space(_every_field_space(), {"a": 1}, {})
