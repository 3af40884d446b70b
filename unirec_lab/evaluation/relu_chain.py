"""Exact pair scores of a model whose score is a ReLU MLP over a per-user linear map of the item, in fp32.

The default unified model (mean history, MLP trunk, MLP towers) scores user ``u`` and item ``i`` as
``L_n(relu(... L_2(relu(A_u i + c_u))))``: the backbone folds its first trunk layer on ``[u, i, u*i, <u,i>]``
into ``A_u``, ``c_u`` (:class:`ReluChain`). Ranking a catalogue is then GEMMs only, and how they are run decides
the time (profiled on Beauty, 22,363 users x 12,101 items, 1.4e4 multiply-adds per pair: the second layer's GEMM
~55%, the first ~30%, the towers ~15%; ReLU, copies and top-k a few %):

- the first layer of ``b`` users is one ``[n, d] x [d, b*H]`` GEMM (not ``b`` thin batched ones), its rows
  ``(item, user)`` pairs that the next layers take as they are;
- items go in chunks of ``block_rows / b`` so a chunk's activations stay in the core's cache;
- bias + ReLU run fused in oneDNN's linear where PyTorch has it (``torch.ops.mkldnn._linear_pointwise``;
  elsewhere ``linear`` then an in-place ReLU);
- user blocks run on ``workers`` threads, each with single-threaded ops: thousands of small GEMMs do not each
  wait for every intra-op thread (what a shared machine punishes).

The result is the same fp32 function as ``score_pairs`` (summation order aside; tested to 1e-5).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class ReluChain:
    """``score(u, i) = layers[-1](relu(... layers[0](relu(a[u] @ items[i] + c[u]))))`` for a block of users:
    ``items`` ``[N, d]``, ``a`` ``[b, H, d]``, ``c`` ``[b, H]``, ``layers`` the ``(weight [out, in], bias
    [out])`` of the following linear layers, a ReLU before each; the last has one output (the logit)."""

    items: torch.Tensor
    a: torch.Tensor
    c: torch.Tensor
    layers: list[tuple[torch.Tensor, torch.Tensor]]

    def users(self, s: int, e: int) -> ReluChain:
        return ReluChain(self.items, self.a[s:e], self.c[s:e], self.layers)


def _fused_linear_relu() -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None:
    op = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None
    if op is None:
        return None
    try:  # present in the op registry is not enough on every build: try it once
        op(torch.ones(2, 3), torch.ones(4, 3), torch.zeros(4), "relu", [], "")
    except (RuntimeError, NotImplementedError):
        return None
    return lambda x, w, b: op(x, w, b, "relu", [], "")


_FUSED = _fused_linear_relu()
_THREADS = threading.Lock()  # the torch thread count is process-wide: one parallel section changes it at a time


def _linear_relu(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if _FUSED is not None and x.device.type == "cpu" and x.dtype == torch.float32:
        return _FUSED(x, w, b)
    return F.linear(x, w, b).relu_()


@torch.no_grad()  # also in the worker threads (grad mode is per thread): model weights require grad
def _block_scores(chain: ReluChain, block_rows: int) -> torch.Tensor:
    """``[b, N]`` scores of one user block, item chunk by item chunk (activations of ``block_rows`` rows)."""
    b, h, d = chain.a.shape
    n = len(chain.items)
    a = chain.a.reshape(b * h, d)
    c = chain.c.reshape(b * h)
    out = torch.empty(b, n, dtype=chain.c.dtype, device=chain.c.device)
    step = max(1, block_rows // b)
    hidden, (w_out, b_out) = chain.layers[:-1], chain.layers[-1]
    for s in range(0, n, step):
        x = _linear_relu(chain.items[s:s + step], a, c)  # [m, b*H]: rows items, columns (user, unit)
        m = len(x)
        x = x.view(m * b, h)
        for w, bias in hidden:
            x = _linear_relu(x, w, bias)
        out[:, s:s + m] = F.linear(x, w_out, b_out).view(m, b).T
    return out


def chain_scores(chain: ReluChain, block_rows: int = 4096, users_per_block: int = 8,
                 workers: int | None = None) -> torch.Tensor:
    """``[b, N]`` fp32 scores of every user of ``chain`` with every item, user blocks on ``workers`` threads
    (default: ``torch.get_num_threads()``; the ops inside run single-threaded meanwhile)."""
    b = len(chain.a)
    workers = max(1, min(workers or torch.get_num_threads(), -(-b // users_per_block)))
    blocks = [(s, min(s + users_per_block, b)) for s in range(0, b, users_per_block)]
    if workers == 1 or chain.a.device.type != "cpu":
        return torch.cat([_block_scores(chain.users(s, e), block_rows) for s, e in blocks])
    with _THREADS:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers) as pool:
                parts = list(pool.map(lambda se: _block_scores(chain.users(*se), block_rows), blocks))
        finally:
            torch.set_num_threads(threads)
    return torch.cat(parts)
