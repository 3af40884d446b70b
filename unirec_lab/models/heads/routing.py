"""Run one module per scenario on that scenario's rows only (never every tower on every row)."""

from __future__ import annotations

from collections.abc import Callable

import torch


def route_by_scenario(x: torch.Tensor, scenario: torch.Tensor, num_scenarios: int,
                      fn: Callable[[int, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``out[r] = fn(s, x[rows of s])[r]`` for each scenario ``s`` present in the batch; differentiable."""
    out: torch.Tensor | None = None
    for s in range(num_scenarios):
        idx = torch.nonzero(scenario == s, as_tuple=True)[0]
        if idx.numel() == 0:
            continue
        y = fn(s, x.index_select(0, idx))
        if out is None:
            out = y.new_zeros((x.shape[0], *y.shape[1:]))
        out = out.index_copy(0, idx, y)
    if out is None:
        raise ValueError("empty batch: no rows to route")
    return out
