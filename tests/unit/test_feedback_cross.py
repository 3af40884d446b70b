"""``feedback_cross``: a history entry is item + action + W_action item (DKT's (skill, correctness) input)."""

from __future__ import annotations

import functools

import pytest
import torch

from unirec_lab.models.backbones.encoders import RecurrentEncoder
from unirec_lab.models.backbones.shared import SharedBackbone


def _backbone(space, **kw):
    torch.manual_seed(0)
    return SharedBackbone(space, functools.partial(RecurrentEncoder, hidden_dim=8), embedding_dim=4, **kw)


def test_entry_equals_hand_computation(tiny_dm):
    bb = _backbone(tiny_dm.space, feedback_embedding=True, feedback_cross=True)
    with torch.no_grad():
        bb.action_maps.copy_(torch.randn(2, 4, 4))
    hist = torch.tensor([[[1.0, 2.0, 0.0, -1.0], [0.5, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]])
    actions = torch.tensor([[2, 1, 0]])  # positive, negative, padding
    e, w = bb.action_embedding.weight, bb.action_maps
    want = torch.stack([hist[0, 0] + e[2] + hist[0, 0] @ w[1], hist[0, 1] + e[1] + hist[0, 1] @ w[0],
                        torch.zeros(4)]).unsqueeze(0)
    torch.testing.assert_close(bb.with_actions(hist, actions), want)


def test_same_item_different_answer_is_not_a_constant_shift(tiny_dm):
    """Summed encoding: entry(item, correct) - entry(item, wrong) is the same vector for every item; crossed: not."""
    items = torch.tensor([[[1.0, 0.0, 0.0, 0.0]], [[0.0, 3.0, 1.0, 0.0]]])
    pos, neg = torch.full((2, 1), 2), torch.full((2, 1), 1)
    for cross, differ in [(False, False), (True, True)]:
        bb = _backbone(tiny_dm.space, feedback_embedding=True, feedback_cross=cross)
        if cross:
            with torch.no_grad():
                bb.action_maps.copy_(torch.randn(2, 4, 4))
        gap = bb.with_actions(items, pos) - bb.with_actions(items, neg)
        assert torch.allclose(gap[0], gap[1]) is not differ


def test_cross_without_feedback_embedding_is_one_clear_error(tiny_dm):
    with pytest.raises(ValueError, match="feedback_cross=true needs backbone.feedback_embedding=true"):
        _backbone(tiny_dm.space, feedback_cross=True)


def test_maps_start_at_zero_and_get_gradients(tiny_dm):
    bb = _backbone(tiny_dm.space, feedback_embedding=True, feedback_cross=True)
    assert not bb.action_maps.any()
    hist = torch.randn(3, 5, 4)
    actions = torch.randint(1, 3, (3, 5))
    bb.with_actions(hist, actions).pow(2).sum().backward()
    assert bb.action_maps.grad is not None and bb.action_maps.grad.abs().sum() > 0
