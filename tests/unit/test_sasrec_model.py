"""model=sasrec: SASRec as a per-scenario model of the framework (dot-product score, next-item objective)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from unirec_lab.engine.build import build, build_module
from unirec_lab.models.backbones.encoders import MeanPooling
from unirec_lab.models.backbones.shared import SharedBackbone
from unirec_lab.models.baselines.sasrec import SASRec
from unirec_lab.train import train

SMALL = ["model=sasrec", "scenario=synthetic_ecommerce", "logger=none", "num_threads=1", "data.history_len=8",
         "data.batch_size=128", "backbone.embedding_dim=16", "scenarios.ecommerce.source.num_users=120",
         "scenarios.ecommerce.source.num_items=90", "scenarios.ecommerce.source.rows_per_user=12"]


def test_sasrec_trains_one_step_on_a_synthetic_scenario(cfg_factory):
    cfg = cfg_factory([*SMALL, "trainer.max_epochs=1", "+trainer.limit_train_batches=1"], tiny=False)
    train(cfg)
    rec = json.loads((Path(cfg.paths.output_dir) / "result.json").read_text())
    assert rec["model"] == "sasrec" and rec["mode"] == "separate"
    assert rec["description"].startswith("per-scenario: 1 independent models, each SASRec: <CausalSelfAttention(")
    assert 0.0 <= rec["test"]["ecommerce"]["auc"] <= 1.0


def test_sasrec_score_is_the_dot_product_that_next_item_trains(cfg_factory):
    cfg = cfg_factory(SMALL, tiny=False)
    dm, model = build(cfg)
    module = build_module(cfg, model, dm)
    assert [type(o).__name__ for o in module.objectives] == ["NextItemObjective"] and module.pointwise
    bb = model.backbone
    assert not bb.embedding.use_user_id  # no user id: a user is its history (and its fields, if any)
    batch = {k: v[:64] for k, v in dm.splits["test"].items()}
    model.eval()
    with torch.no_grad():
        logits = model(batch)
        seq = bb.sequence_states(batch)
        state = seq["profile"] + seq["states"][:, -1]  # user fields (no id) + state after the latest entry
        item = bb.embedding.item_vectors(batch["item"])
        torch.testing.assert_close(logits, (state * item).sum(-1))
        # catalogue protocol: the same scores for every (user row, candidate) pair
        pairs = model.score_pairs(model.user_side(batch), model.item_side(batch["item"][:5]))
        torch.testing.assert_close(pairs, (state @ bb.embedding.item_vectors(batch["item"][:5]).T))
    # one optimizer step on the objectives alone changes the weights
    off = cfg_factory([*SMALL, "model.pointwise_loss=false"], tiny=False)
    lone = build_module(off, model, dm)
    assert not lone.pointwise
    model.train()
    opt = lone.configure_optimizers()
    before = bb.history_encoder.position.weight.detach().clone()
    loss = lone.loss({k: v[:128] for k, v in dm.splits["train"].items()})[0]
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and loss.item() > 0
    assert not torch.equal(before, bb.history_encoder.position.weight)


def test_sasrec_config_errors_are_one_line(cfg_factory):
    cfg = cfg_factory([*SMALL, "model.pointwise_loss=false", "~objectives.next_item"], tiny=False)
    dm, model = build(cfg)
    with pytest.raises(ValueError, match=r"^model.pointwise_loss=false needs at least one sequence objective"):
        build_module(cfg, model, dm)
    with pytest.raises(ValueError, match=r"^model=sasrec needs a sequence history encoder \(backbone=sasrec\), "
                                         r"got MeanPooling"):
        SASRec(SharedBackbone(dm.space, MeanPooling))
