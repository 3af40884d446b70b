"""A bank of ``E`` same-shaped MLP experts evaluated together with batched matmuls (no loop over experts)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class ExpertBank(nn.Module):
    """``[B, in] -> [B, E, out]``: ``E`` independent ``Linear (-> BatchNorm) -> ReLU (-> Dropout)`` stacks."""

    def __init__(self, in_dim: int, dims: Sequence[int], num_experts: int, dropout: float = 0.0,
                 batch_norm: bool = False) -> None:
        super().__init__()
        dims = list(dims)
        if num_experts <= 0:
            raise ValueError(f"num_experts={num_experts}, expected a positive integer")
        if not dims or any(d <= 0 for d in dims):
            raise ValueError(f"expert dims must be a non-empty list of positive ints, got {dims}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout}, expected a value in [0, 1)")
        self.num_experts = num_experts
        self.out_dim = dims[-1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        d = in_dim
        for h in dims:
            bound = 1.0 / math.sqrt(d)  # nn.Linear's default init, per expert
            self.weights.append(nn.Parameter(torch.empty(num_experts, d, h).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(num_experts, h).uniform_(-bound, bound)))
            d = h
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # one BatchNorm over the E x h units of a layer = an independent BatchNorm per expert
        self.norms = nn.ModuleList(nn.BatchNorm1d(num_experts * h) for h in dims) if batch_norm else None

    def _norm(self, i: int, z: torch.Tensor) -> torch.Tensor:
        if self.norms is None:
            return z
        b, e, h = z.shape
        return self.norms[i](z.reshape(b, e * h)).view(b, e, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w0, b0 = self.weights[0], self.biases[0]
        E, d_in, d_out = w0.shape
        # first layer: all experts read the same input -> one [in, E*out] matmul
        z = torch.addmm(b0.reshape(-1), x, w0.permute(1, 0, 2).reshape(d_in, E * d_out)).view(-1, E, d_out)
        z = self.dropout(torch.relu(self._norm(0, z)))
        for i, (w, b) in enumerate(zip(list(self.weights)[1:], list(self.biases)[1:]), start=1):
            z = torch.bmm(z.transpose(0, 1), w).transpose(0, 1) + b  # [E, B, i] @ [E, i, o]
            z = self.dropout(torch.relu(self._norm(i, z)))
        return z
