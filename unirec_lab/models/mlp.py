"""A plain MLP block used by trunks and towers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from torch import nn


def mlp(in_dim: int, dims: Sequence[int], dropout: float = 0.0, out_dim: int | None = None,
        activation: type[nn.Module] = nn.ReLU, batch_norm: bool = False) -> nn.Sequential:
    """``Linear -> [BatchNorm] -> act -> dropout`` per hidden dim, then an optional linear output layer
    (``batch_norm``: the form of the CTR libraries' MLPs, e.g. Scenario-Wise Rec's)."""
    if any(d <= 0 for d in dims):
        raise ValueError(f"hidden dims must be positive, got {list(dims)}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout={dropout}, expected a value in [0, 1)")
    layers: list[nn.Module] = []
    d = in_dim
    for h in dims:
        layers += [nn.Linear(d, h), *([nn.BatchNorm1d(h)] if batch_norm else []), activation()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        d = h
    if out_dim is not None:
        layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


def relu_linears(modules: Iterable[nn.Module]) -> list[nn.Linear] | None:
    """The linear layers of a ``ReLU, Linear, ReLU, Linear, ...`` sequence (eval-mode ``Dropout`` skipped), or
    ``None`` when it is anything else (BatchNorm, another activation): catalogue scoring then takes the generic
    path. A chain of these is all GEMMs (``evaluation/relu_chain.py``)."""
    layers = [m for m in modules if not isinstance(m, nn.Dropout)]
    if len(layers) % 2 or not all(isinstance(m, nn.ReLU) for m in layers[::2]) \
            or not all(isinstance(m, nn.Linear) for m in layers[1::2]):
        return None
    return list(layers[1::2])
