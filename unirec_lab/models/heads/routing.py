"""Run one module per scenario on that scenario's rows only (never every tower on every row).

:class:`ScenarioPartition` sorts a batch's rows by scenario once (one ``argsort`` and one host sync for the
group sizes), hands each scenario its contiguous chunk, and puts the results back in row order. The Python
loop is over the scenarios present in the batch (a handful), never over rows. Because a scenario's module
only ever sees its own chunk, its parameters get gradient from its own rows only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch


class ScenarioPartition:
    """The rows of a batch grouped by scenario: ``split`` tensors into per-scenario chunks, ``merge`` back."""

    def __init__(self, scenario: torch.Tensor, num_scenarios: int) -> None:
        if scenario.dim() != 1:
            raise ValueError(f"scenario must be a [B] tensor of indices, got shape {tuple(scenario.shape)}")
        if scenario.numel() == 0:
            raise ValueError("empty batch: no rows to route")
        counts = torch.bincount(scenario, minlength=num_scenarios)
        if counts.numel() > num_scenarios:
            raise ValueError(f"scenario index {int(scenario.max())} out of range for {num_scenarios} scenario(s)")
        self.num_scenarios = num_scenarios
        self._scenario = scenario
        self._order: torch.Tensor | None = None
        self.sizes: list[int] = counts.tolist()
        self.present: list[int] = [s for s, n in enumerate(self.sizes) if n > 0]
        self._inverse: torch.Tensor | None = None
        self.identity = len(self.present) == 1  # one scenario: rows are already in order

    @property
    def order(self) -> torch.Tensor:
        """Row order that groups the rows by scenario (sorted only when needed: one scenario needs none)."""
        if self._order is None:
            self._order = torch.argsort(self._scenario, stable=True)
        return self._order

    @property
    def inverse(self) -> torch.Tensor:
        if self._inverse is None:
            inv = torch.empty_like(self.order)
            inv[self.order] = torch.arange(len(self.order), device=self.order.device)
            self._inverse = inv
        return self._inverse

    def split(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Chunks of ``x`` (rows = batch rows), one per *present* scenario, in ``self.present`` order."""
        if self.identity:
            return [x]
        sizes = [n for n in self.sizes if n > 0]
        return list(x.index_select(0, self.order).split(sizes))

    def merge(self, chunks: Sequence[torch.Tensor]) -> torch.Tensor:
        """Inverse of :meth:`split`: per-scenario chunks back into batch row order."""
        if self.identity:
            return chunks[0]
        return torch.cat(list(chunks)).index_select(0, self.inverse)

    def chunks(self, *xs: torch.Tensor) -> Iterator[tuple[int, tuple[torch.Tensor, ...]]]:
        """``(s, (x1_s, x2_s, ...))`` for each present scenario."""
        parts = [self.split(x) for x in xs]
        for i, s in enumerate(self.present):
            yield s, tuple(p[i] for p in parts)

    def map(self, fn: Callable[..., torch.Tensor], *xs: torch.Tensor) -> torch.Tensor:
        """``out[rows of s] = fn(s, *[x[rows of s] for x in xs])``; differentiable."""
        return self.merge([fn(s, *chunk) for s, chunk in self.chunks(*xs)])
