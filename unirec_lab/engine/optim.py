"""``LazyAdam``: Adam that updates only the embedding rows a batch touched.

Recommendation models are mostly embedding tables (real data: >10M rows' worth of parameters) while a batch
touches a few thousand rows. Dense Adam rewrites every row's moments every step (~1 s/step here for 10M
parameters); with sparse gradients (``nn.Embedding(sparse=True)``) this optimizer updates the touched rows
only (as TensorFlow's LazyAdam / ``torch.optim.SparseAdam``) and runs a fused (foreach) Adam on dense
parameters. One optimizer for both, so it plugs into Lightning like ``torch.optim.Adam``.

Weight decay is decoupled (AdamW style) and, for sparse parameters, applied to touched rows only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch


class LazyAdam(torch.optim.Optimizer):
    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        if not lr > 0:
            raise ValueError(f"optimizer.lr={lr}, expected a positive number")
        if not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"optimizer.betas={betas}, expected values in [0, 1)")
        if weight_decay < 0:
            raise ValueError(f"optimizer.weight_decay={weight_decay}, expected >= 0")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def _state(self, p: torch.Tensor) -> dict:
        st = self.state[p]
        if not st:
            st["step"] = torch.zeros((), dtype=torch.float64)
            st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return st

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            dense_p, dense_g, dense_m, dense_v, dense_steps = [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self._state(p)
                st["step"] += 1
                if p.grad.is_sparse:
                    self._sparse_update(p, p.grad, st, lr, b1, b2, eps, wd)
                else:
                    dense_p.append(p)
                    dense_g.append(p.grad)
                    dense_m.append(st["exp_avg"])
                    dense_v.append(st["exp_avg_sq"])
                    dense_steps.append(float(st["step"]))
            if dense_p:
                self._dense_update(dense_p, dense_g, dense_m, dense_v, dense_steps, lr, b1, b2, eps, wd)
        return loss

    @staticmethod
    def _dense_update(ps, gs, ms, vs, steps, lr, b1, b2, eps, wd) -> None:
        if wd:
            torch._foreach_mul_(ps, 1 - lr * wd)
        torch._foreach_mul_(ms, b1)
        torch._foreach_add_(ms, gs, alpha=1 - b1)
        torch._foreach_mul_(vs, b2)
        torch._foreach_addcmul_(vs, gs, gs, value=1 - b2)
        # parameters of one group normally share a step count; bias corrections are scalars per tensor
        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, [math.sqrt(1 - b2 ** s) for s in steps])
        torch._foreach_add_(denom, eps)
        step_sizes = [-lr / (1 - b1 ** s) for s in steps]
        for p, m, d, a in zip(ps, ms, denom, step_sizes):
            p.addcdiv_(m, d, value=a)

    @staticmethod
    def _sparse_update(p, grad, st, lr, b1, b2, eps, wd) -> None:
        grad = grad.coalesce()
        idx, vals = grad.indices()[0], grad.values()
        if idx.numel() == 0:
            return
        s = float(st["step"])
        m, v = st["exp_avg"], st["exp_avg_sq"]
        m_rows = m.index_select(0, idx).mul_(b1).add_(vals, alpha=1 - b1)
        v_rows = v.index_select(0, idx).mul_(b2).addcmul_(vals, vals, value=1 - b2)
        m.index_copy_(0, idx, m_rows)
        v.index_copy_(0, idx, v_rows)
        denom = v_rows.sqrt().div_(math.sqrt(1 - b2 ** s)).add_(eps)
        update = m_rows.div_(denom).mul_(-lr / (1 - b1 ** s))
        if wd:
            update.add_(p.index_select(0, idx), alpha=-lr * wd)
        p.index_add_(0, idx, update)
