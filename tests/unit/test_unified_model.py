"""The unified model: learns, routes each row to its own scenario head, keeps padding at zero."""

from __future__ import annotations

import functools

import pytest
import torch

from unirec_lab.engine.module import RecLitModule
from unirec_lab.engine.optim import LazyAdam
from unirec_lab.models.backbones.encoders import MeanPooling
from unirec_lab.models.backbones.shared import SharedBackbone
from unirec_lab.models.builders import build_unified
from unirec_lab.models.heads.mlp import MLPTowers


def make_model(space, dim=16):
    torch.manual_seed(0)
    backbone = functools.partial(SharedBackbone, history_encoder=MeanPooling, embedding_dim=dim, trunk_dims=[32])
    head = functools.partial(MLPTowers, hidden_dims=[16])
    return build_unified(space, backbone, head)


def first_batch(dm, n=256):
    tr = dm.splits["train"]
    idx = torch.randperm(len(tr["label"]), generator=torch.Generator().manual_seed(0))[:n]
    return {k: v[idx] for k, v in tr.items()}


def test_overfits_a_tiny_batch(tiny_dm):
    model = make_model(tiny_dm.space)
    module = RecLitModule(model, functools.partial(LazyAdam, lr=1e-2), tiny_dm.scenario_names)
    batch = first_batch(tiny_dm, 128)
    opt = LazyAdam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(300):
        per_s, counts = module.scenario_losses(model(batch), batch)
        loss = (per_s * (counts > 0)).sum()
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 * first
    with torch.no_grad():
        pred = (model(batch) > 0).float()
    assert (pred == batch["label"]).float().mean() > 0.98


def test_each_head_sees_only_its_own_rows(tiny_dm):
    model = make_model(tiny_dm.space)
    batch = first_batch(tiny_dm)
    only0 = {k: v[batch["scenario"] == 0] for k, v in batch.items()}
    model.zero_grad()
    model(only0).sum().backward()
    towers = model.head.towers
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in towers[0].parameters())
    for s in range(1, len(towers)):
        assert all(p.grad is None or p.grad.abs().sum() == 0 for p in towers[s].parameters())
    # perturbing scenario 1's tower changes only scenario 1's logits
    with torch.no_grad():
        before = model(batch)
        for p in towers[1].parameters():
            p.add_(torch.randn_like(p))
        after = model(batch)
    changed = (before - after).abs() > 1e-7
    assert torch.equal(changed, batch["scenario"] == 1)


def test_padding_vectors_are_zero_and_history_padding_is_ignored(tiny_dm):
    model = make_model(tiny_dm.space)
    emb = model.backbone.embedding
    assert emb.item_vectors(torch.zeros(3, dtype=torch.long)).abs().sum() == 0
    batch = first_batch(tiny_dm, 32)
    batch["history"][:, :2] = 0  # more padding on the left changes nothing if those slots were padding
    b2 = {k: v.clone() for k, v in batch.items()}
    with torch.no_grad():
        out = model(batch)
        b2["history"] = torch.cat([torch.zeros(32, 3, dtype=torch.long), b2["history"][:, 2:]], 1)[:, :8]
        b2["history"][:, :3] = 0
        b2["history"][:, 3:] = batch["history"][:, 3:]
        batch["history"][:, 2] = 0
    assert torch.allclose(model(batch), model(b2), atol=1e-6)
    assert torch.isfinite(out).all()


def test_mixed_batch_equals_per_scenario_batches_in_eval(tiny_dm):
    """With no batch-dependent layers, a row's logit does not depend on the other rows of its batch."""
    model = make_model(tiny_dm.space).eval()
    batch = first_batch(tiny_dm)
    with torch.no_grad():
        mixed = model(batch)
        for s in range(4):
            m = batch["scenario"] == s
            alone = model({k: v[m] for k, v in batch.items()})
            assert torch.allclose(mixed[m], alone, atol=1e-6)


def test_eval_shortcut_for_shared_histories_is_exact(tiny_dm):
    """Consecutive rows sharing user+history are computed once in eval; the result must not change."""
    from unirec_lab.models.backbones.encoders import CausalSelfAttention, TargetAttention

    va = tiny_dm.splits["val"]
    batch = {k: v[:400] for k, v in va.items()}
    assert ((batch["user"][1:] == batch["user"][:-1]) & (batch["history"][1:] == batch["history"][:-1]).all(1)).any()
    perm = torch.randperm(400, generator=torch.Generator().manual_seed(0))
    inv = torch.argsort(perm)
    for enc in (MeanPooling, functools.partial(TargetAttention, attention_dims=[8]),
                functools.partial(CausalSelfAttention, max_len=8, num_layers=1, num_heads=1)):
        torch.manual_seed(0)
        backbone = functools.partial(SharedBackbone, history_encoder=enc, embedding_dim=16, trunk_dims=[32])
        model = build_unified(tiny_dm.space, backbone, functools.partial(MLPTowers, hidden_dims=[8])).eval()
        with torch.no_grad():
            fast = model(batch)
            slow = model({k: v[perm] for k, v in batch.items()})[inv]  # shuffled: no consecutive duplicates
        assert torch.allclose(fast, slow, atol=1e-5), enc


def test_best_so_far_is_the_mean_of_each_scenarios_best_epoch(tiny_dm):
    names = tiny_dm.scenario_names
    module = RecLitModule(make_model(tiny_dm.space), functools.partial(LazyAdam, lr=1e-2), names,
                          best_so_far=("auc", "max"))
    per_epoch = [[0.6, 0.7, 0.5, 0.9], [0.65, 0.6, 0.55, float("nan")], [0.62, 0.8, 0.4, 0.7]]
    module.val_history = [{"epoch": e, "metrics": {s: {"auc": v} for s, v in zip(names, vals)}}
                          for e, vals in enumerate(per_epoch)]
    assert module.best_so_far_value() == pytest.approx((0.65 + 0.8 + 0.55 + 0.9) / 4)
    module.best_so_far = ("auc", "min")
    assert module.best_so_far_value() == pytest.approx((0.6 + 0.6 + 0.4 + 0.7) / 4)
    with pytest.raises(ValueError, match="best_so_far"):
        RecLitModule(make_model(tiny_dm.space), LazyAdam, names, best_so_far=("hr@3", "max"))
