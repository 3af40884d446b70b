"""Building blocks the Scenario-Wise Rec heads share: banks of parallel linear experts and a batch norm that
tolerates one-row chunks.

A head that routes rows (by scenario or by cluster) hands each module a chunk of the batch; in training a chunk
may hold a single row, where batch statistics are undefined. :class:`RowSafeBatchNorm` then normalises that
chunk with its running statistics (and does not update them), as STAR's partitioned norm does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class RowSafeBatchNorm(nn.BatchNorm1d):
    """``BatchNorm1d`` that uses its running statistics for a one-row training batch instead of failing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] < 2:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


def _uniform(shape: Sequence[int], fan_in: int) -> nn.Parameter:
    bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default init
    return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))


class LinearBank(nn.Module):
    """``E`` independent ``Linear(in, out)``: ``[B, in] -> [B, E, out]`` (shared input, one matmul) or
    ``[B, E, in] -> [B, E, out]`` (expert ``e`` reads slice ``e``)."""

    def __init__(self, in_dim: int, out_dim: int, num: int) -> None:
        super().__init__()
        if num <= 0 or in_dim <= 0 or out_dim <= 0:
            raise ValueError(f"LinearBank(in={in_dim}, out={out_dim}, num={num}): expected positive sizes")
        self.num, self.out_dim = num, out_dim
        self.weight = _uniform((num, in_dim, out_dim), in_dim)
        self.bias = _uniform((num, out_dim), in_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        E, d_in, d_out = self.weight.shape
        if x.dim() == 2:
            w = self.weight.permute(1, 0, 2).reshape(d_in, E * d_out)
            return torch.addmm(self.bias.reshape(-1), x, w).view(-1, E, d_out)
        return torch.einsum("bei,eio->beo", x, self.weight) + self.bias


class NormedExpertBank(nn.Module):
    """``E`` experts, each ``(Linear -> LayerNorm -> ReLU)`` per entry of ``dims``: ``[B, in] -> [B, E, out]``.

    The layer norm normalises each expert's output on its own and has per-expert affine parameters."""

    def __init__(self, in_dim: int, dims: Sequence[int], num: int) -> None:
        super().__init__()
        dims = list(dims)
        if not dims or any(d <= 0 for d in dims):
            raise ValueError(f"expert dims must be a non-empty list of positive ints, got {dims}")
        self.num, self.out_dim = num, dims[-1]
        self.linears = nn.ModuleList()
        self.gammas = nn.ParameterList()
        self.betas = nn.ParameterList()
        d = in_dim
        for h in dims:
            self.linears.append(LinearBank(d, h, num))
            self.gammas.append(nn.Parameter(torch.ones(num, h)))
            self.betas.append(nn.Parameter(torch.zeros(num, h)))
            d = h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x
        for lin, g, b in zip(self.linears, self.gammas, self.betas):
            z = lin(z)
            z = torch.relu(F.layer_norm(z, (z.shape[-1],)) * g + b)
        return z
