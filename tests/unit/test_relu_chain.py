"""The ReLU chain engine of exact catalogue scoring: equal to a float64 evaluation of the same function, the
same with parallel workers as with one (and the torch thread count restored), and the module patterns it takes."""

from __future__ import annotations

import torch
from torch import nn

from unirec_lab.evaluation.relu_chain import ReluChain, chain_scores
from unirec_lab.models.mlp import mlp, relu_linears


def _chain(b=11, n=53, d=6, dims=(10, 7, 5, 1), seed=0) -> ReluChain:
    g = torch.Generator().manual_seed(seed)
    layers = [(torch.randn(o, i, generator=g), torch.randn(o, generator=g)) for i, o in zip(dims[:-1], dims[1:])]
    return ReluChain(torch.randn(n, d, generator=g), torch.randn(b, dims[0], d, generator=g),
                     torch.randn(b, dims[0], generator=g), layers)


def _float64(chain: ReluChain) -> torch.Tensor:
    x = torch.relu(torch.einsum("bhd,nd->bnh", chain.a.double(), chain.items.double()) + chain.c.double()[:, None])
    for j, (w, bias) in enumerate(chain.layers):
        x = x @ w.double().T + bias.double()
        x = torch.relu(x) if j + 1 < len(chain.layers) else x
    return x.squeeze(-1)


def test_chain_scores_equal_the_function_in_float64():
    chain = _chain()
    ref = _float64(chain)
    for rows, per_block in [(7, 3), (100, 4), (10_000, 64)]:  # item chunks of 2..all, user blocks of 3..all
        got = chain_scores(chain, block_rows=rows, users_per_block=per_block, workers=1)
        assert got.shape == ref.shape and ref.std() > 1.0  # not vacuous
        torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-4)


def test_parallel_workers_equal_one_worker_and_restore_threads():
    chain = _chain(b=23)
    for w, _ in chain.layers:
        w.requires_grad_(True)  # model weights: the workers (their own grad mode) must not build a graph
    threads = torch.get_num_threads()
    one = chain_scores(chain, block_rows=20, users_per_block=2, workers=1)
    two = chain_scores(chain, block_rows=20, users_per_block=2, workers=2)
    torch.testing.assert_close(two, one, rtol=0, atol=1e-6)
    assert not two.requires_grad and not one.requires_grad
    assert torch.get_num_threads() == threads


def test_relu_linears_takes_relu_linear_pairs_only():
    tower = mlp(4, [3, 2], dropout=0.5, out_dim=1)  # Linear ReLU Dropout Linear ReLU Dropout Linear
    got = relu_linears([nn.ReLU(), *tower])
    assert got is not None and [m.out_features for m in got] == [3, 2, 1]
    assert relu_linears(list(tower)) is None  # starts with a Linear: the first layer is not folded
    assert relu_linears([nn.ReLU(), *mlp(4, [3], batch_norm=True, out_dim=1)]) is None
    assert relu_linears([nn.ReLU(), *mlp(4, [3], activation=nn.GELU, out_dim=1)]) is None
