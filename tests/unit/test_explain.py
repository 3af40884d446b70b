"""Score explanations: the vector-level model equals the model, and integrated gradients are complete."""

from __future__ import annotations

import functools

import pytest
import torch
from test_zoo import BACKBONES, HEADS, _batch, dm, one_thread  # noqa: F401  (fixtures)

from unirec_lab.explain import integrated_gradients
from unirec_lab.models.backbones.shared import SharedBackbone
from unirec_lab.models.builders import build_mf, build_scenario_as_feature, build_unified

CASES = [(b, "mlp") for b in BACKBONES] + [("din", h) for h in ("mmoe", "ple", "star", "pepnet")]


def _model(dm, backbone: str, head: str, as_feature: bool = False) -> torch.nn.Module:  # noqa: F811
    torch.manual_seed(0)
    bb = functools.partial(SharedBackbone, history_encoder=BACKBONES[backbone], embedding_dim=16, trunk_dims=[32],
                           init_std=0.5)  # large weights: the scores depend strongly on the inputs
    build = build_scenario_as_feature if as_feature else build_unified
    return build(dm.space, bb, HEADS[head]).eval()


@pytest.mark.parametrize(("backbone", "head"), CASES + [("mean", "mlp*")])
def test_attributions_add_up_to_logit_minus_prior(dm, backbone: str, head: str) -> None:  # noqa: F811
    model = _model(dm, backbone, head.rstrip("*"), as_feature=head.endswith("*"))
    batch = _batch(dm, 48)
    with torch.no_grad():
        logit = model(batch)
    att = integrated_gradients(model, batch, steps=512)
    assert torch.allclose(att["logit"], logit, atol=1e-5)  # from_vectors(embed(b)) is the model
    moved = att["logit"] - att["prior"]
    assert moved.abs().max() > 0.02  # the check below is not vacuous
    total = att["profile"] + att["item"] + att["history"].sum(-1)
    tol = 1e-2 * moved.abs().max()
    assert torch.allclose(total, moved, atol=tol) and att["residual"].abs().max() < tol
    # one quadrature step is a plain gradient x input: not complete for these non-linear models
    crude = integrated_gradients(model, batch, steps=1)
    assert crude["residual"].abs().max() > 10 * att["residual"].abs().max()
    pad = batch["history"] == 0
    assert torch.all(att["history"][pad] == 0)  # padding never gets credit
    assert att["history"][~pad].abs().sum() > 0


def test_an_input_the_score_ignores_gets_no_attribution(dm) -> None:  # noqa: F811
    model = _model(dm, "mean", "mlp")
    batch = _batch(dm, 16)
    batch["history"] = torch.zeros_like(batch["history"])  # no history at all
    att = integrated_gradients(model, batch, steps=32)
    assert torch.all(att["history"] == 0)
    # with the item vector zeroed out of the model, the item gets exactly zero credit
    bb = model.backbone
    orig = bb.embed
    bb.embed = lambda b: {**orig(b), "item": torch.zeros_like(orig(b)["item"])}
    try:
        att = integrated_gradients(model, batch, steps=32)
    finally:
        bb.embed = orig
    assert torch.all(att["item"] == 0)


def test_models_without_a_backbone_are_refused(dm) -> None:  # noqa: F811
    mf = build_mf(dm.space, backbone=None, head=None, embedding_dim=8)
    with pytest.raises(ValueError, match="no shared backbone"):
        integrated_gradients(mf, _batch(dm, 4))
