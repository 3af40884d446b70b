"""Evaluation runs the fields trunk with BatchNorm folded into the Linear before it: the same function."""

from __future__ import annotations

import torch
from torch import nn

from unirec_lab.models.backbones.fields import run_trunk, trunk_layers


def _trained_trunk(dropout: float = 0.0, affine: bool = True) -> nn.Sequential:
    torch.manual_seed(0)
    trunk = trunk_layers(12, [16, 8], dropout, batch_norm=True)
    for m in trunk.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.3, 3.0)
            if affine:
                m.weight.data.normal_()
                m.bias.data.normal_()
            else:
                m.weight, m.bias = None, None
    return trunk


def test_folded_eval_equals_the_modules_and_training_is_untouched():
    for dropout, affine in ((0.0, True), (0.2, True), (0.0, False)):
        trunk = _trained_trunk(dropout, affine)
        x = torch.randn(64, 12)
        trunk.eval()
        with torch.no_grad():
            torch.testing.assert_close(run_trunk(trunk, x), trunk(x), rtol=1e-5, atol=1e-5)
        # with gradients on (explanations): same values, and the input is not modified in place
        x2 = x.clone().requires_grad_()
        torch.testing.assert_close(run_trunk(trunk, x2), trunk(x), rtol=1e-5, atol=1e-5)
        assert torch.equal(x2.detach(), x)
        trunk.train()
        torch.manual_seed(1)
        a = run_trunk(trunk, x)
        torch.manual_seed(1)
        torch.testing.assert_close(a, trunk(x))  # training: the modules themselves (batch statistics)
