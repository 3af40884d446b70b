"""model=unified_seq: one feedback-aware sequence backbone, scenario heads, per-scenario objectives.

On two synthetic scenarios with different objectives (next_item on an implicit one, next_response on a knowledge-
tracing one), through the one build path: each scenario's head gets gradient only from its own rows, and only
from the objectives that name its scenario (next_item scores <state, item> and reads no head at all)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from unirec_lab.engine.build import build, build_module
from unirec_lab.models.backbones.encoders import CausalSelfAttention
from unirec_lab.models.objectives import NextItemObjective, NextResponseObjective
from unirec_lab.train import train

SEQ = ["scenario=[synthetic_ecommerce,synthetic_kt]", "model=unified_seq", "logger=none", "num_threads=1",
       "objectives.next_item.scenarios=[ecommerce]", "objectives.next_response.scenarios=[synthetic_kt]",
       "scenarios.ecommerce.source.num_users=150", "scenarios.ecommerce.source.num_items=120",
       "scenarios.synthetic_kt.source.num_students=150", "scenarios.synthetic_kt.source.responses_per_student=30",
       "data.history_len=8", "data.batch_size=256", "backbone.embedding_dim=16", "backbone.trunk_dims=[16]",
       "head.hidden_dims=[8]", "backbone.history_encoder.dropout=0.0", "trainer.max_epochs=2",
       "selection.scope=per_scenario"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _grads(module, batch, parts=("bce", "next_item", "next_response")) -> dict[int, float]:
    """Gradient norm of each scenario's head after backpropagating the chosen parts of the loss on ``batch``."""
    module.zero_grad(set_to_none=True)
    total = torch.zeros(())
    if "bce" in parts:
        per_s, counts = module.scenario_losses(module.model(batch), batch)
        w = module.loss_weights * (counts > 0)
        total = total + (w * per_s).sum() / w.sum().clamp(min=1e-12)
    for obj in module.objectives:
        if obj.name in parts:
            total = total + obj(module.model, batch)
    total.backward()
    towers = module.model.head.towers
    return {s: sum(float(p.grad.abs().sum()) for p in towers[s].parameters() if p.grad is not None)
            for s in range(len(towers))}


def test_unified_seq_heads_get_gradient_only_from_their_rows_and_objectives(cfg_factory):
    cfg = cfg_factory(SEQ, tiny=False)
    dm, model = build(cfg)
    module = build_module(cfg, model, dm)
    bb = model.backbone
    assert isinstance(bb.history_encoder, CausalSelfAttention) and bb.action_embedding is not None  # item ⊕ feedback
    assert [type(o) for o in module.objectives] == [NextItemObjective, NextResponseObjective]
    shop, kt = dm.scenario_names.index("ecommerce"), dm.scenario_names.index("synthetic_kt")
    tr = dm.splits["train"]
    # rows of both scenarios with some history; the KT rows' histories carry incorrect answers (feedback: all)
    idx = torch.cat([torch.nonzero((tr["scenario"] == s) & (tr["history"][:, -3:] > 0).all(1))[:64, 0]
                     for s in (shop, kt)])
    batch = {k: v[idx] for k, v in tr.items()}
    assert bool((batch["history_action"][batch["scenario"] == kt] == 1).any())
    model.eval()  # deterministic (no dropout); gradients still flow
    only = {s: {k: v[batch["scenario"] == s] for k, v in batch.items()} for s in (shop, kt)}
    g = _grads(module, only[shop])
    assert g[shop] > 0 and g[kt] == 0.0           # the shop's rows reach the shop's head only
    g = _grads(module, only[kt])
    assert g[kt] > 0 and g[shop] == 0.0           # the KT rows reach the KT head only
    g = _grads(module, batch, ("next_item",))
    assert g[shop] == 0.0 and g[kt] == 0.0        # next_item (shop only) scores <state, item>: no head
    g = _grads(module, batch, ("next_response",))
    assert g[kt] > 0 and g[shop] == 0.0           # next_response (KT only) trains the KT head alone
    # and each objective sees its scenario's rows only: on the other scenario's rows it is exactly zero
    assert module.objectives[0](model, only[kt]).item() == 0.0
    assert module.objectives[1](model, only[shop]).item() == 0.0
    assert module.objectives[0](model, only[shop]).item() > 0 and module.objectives[1](model, only[kt]).item() > 0


def test_unified_seq_trains_through_the_one_loop(cfg_factory):
    cfg = cfg_factory(SEQ, tiny=False)
    train(cfg)
    r = json.loads((Path(cfg.paths.output_dir) / "result.json").read_text())
    assert r["model"] == "unified_seq" and set(r["test"]) == {"ecommerce", "synthetic_kt"}
    # per-scenario selection, both objectives recorded in the resolved config
    assert r["config"]["selection"]["scope"] == "per_scenario"
    assert r["config"]["objectives"]["next_response"]["scenarios"] == ["synthetic_kt"]
    # it learned something on both (synthetic data with planted structure; chance = 0.5)
    assert r["test"]["ecommerce"]["auc"] > 0.55 and r["test"]["synthetic_kt"]["auc"] > 0.55, r["test"]
