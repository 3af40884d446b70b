"""Batches as index slices over in-memory tensors: no per-row ``__getitem__``, no collate, no workers.

Training order is a function of (seed, epoch) only, so a resumed run sees the same batches as an
uninterrupted one. ``length_buckets=N`` groups rows of similar history span into the same training batch (the
epoch's order cut into chunks of ``N`` batches, sorted by span inside each chunk, batch order shuffled again)
and cuts each batch's left-padded histories to its longest span: a sequence encoder then costs what the real
entries cost, not ``history_len`` (exact: encoders right-align positions and mask padding). Under DDP each rank takes a disjoint, contiguous share of the epoch's order; evaluation
shards are disjoint and unpadded, so no row is counted twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

Batch = dict[str, torch.Tensor]
HISTORY_KEYS = ("history", "history_action")  # left-padded [n, K] columns, cut to the batch's span


def history_span(history: torch.Tensor) -> torch.Tensor:
    """``[n]`` number of columns from a row's first real history entry (0 = padding) to the end."""
    K = history.shape[1]
    real = history > 0
    return torch.where(real.any(1), K - real.to(torch.int8).argmax(1), torch.zeros((), dtype=torch.long))


def length_bucketed(order: torch.Tensor, span: torch.Tensor, batch_size: int, chunk_batches: int,
                    generator: torch.Generator) -> list[torch.Tensor]:
    """``order`` cut into chunks of ``chunk_batches * batch_size`` rows, each sorted by ``span`` (stable), split
    into batches whose order is shuffled. Every row of ``order`` appears once; one sort, no per-chunk loop."""
    chunk = chunk_batches * batch_size
    key = torch.arange(len(order)) // chunk * (int(span.max()) + 1 if len(span) else 1) + span[order]
    batches = list(torch.split(order[torch.argsort(key, stable=True)], batch_size))
    return [batches[j] for j in torch.randperm(len(batches), generator=generator).tolist()]


def cut_history(batch: Batch) -> Batch:
    """The batch with its history columns cut to the longest span among its rows (at least one column)."""
    hist = batch.get("history")
    if hist is None or hist.dim() != 2 or hist.shape[1] <= 1:
        return batch
    k = max(int(history_span(hist).max()), 1)
    K = hist.shape[1]
    return {key: v[:, K - k:] if key in HISTORY_KEYS else v for key, v in batch.items()}


class IndexedRows:
    """A per-row column kept once per distinct value: row ``r`` is ``table[index[r]]``. Beauty's 1-vs-99 rows
    share one behaviour history per user instead of copying it to each candidate (~20x less memory).

    Indexing it (``col[i:j]``, ``col[idx]``, ``col[mask]``, ``col[r]``) gathers real tensors, so a batch sliced
    from a split is plain tensors; :meth:`select` keeps a subset shared; a ``torch`` function given it (e.g.
    ``torch.cat``) sees the materialised column."""

    def __init__(self, table: torch.Tensor, index: torch.Tensor) -> None:
        self.table, self.index = table, index

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.index), *self.table.shape[1:]))

    @property
    def dtype(self) -> torch.dtype:
        return self.table.dtype

    def __getitem__(self, idx: object) -> torch.Tensor:
        if isinstance(idx, tuple):  # (rows, columns...) as on a tensor
            rows = self.index[idx[0]]
            return self.table[rows][idx[1:] if rows.dim() == 0 else (slice(None), *idx[1:])]
        return self.table[self.index[idx]]

    def select(self, idx: object) -> IndexedRows:
        """The rows ``idx`` (index, mask or slice), still sharing the table."""
        return IndexedRows(self.table, self.index[idx])

    def materialize(self) -> torch.Tensor:
        return self.table[self.index]

    def numpy(self) -> np.ndarray:
        return self.materialize().numpy()

    def __getattr__(self, name: str) -> object:  # any other tensor method, on the materialised column
        if name.startswith("__") or name in ("table", "index"):
            raise AttributeError(name)
        return getattr(self.materialize(), name)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN206 (torch protocol)
        def real(x: object) -> object:
            if isinstance(x, IndexedRows):
                return x.materialize()
            if isinstance(x, (list, tuple)):
                return type(x)(real(v) for v in x)
            return x
        return func(*real(args), **{k: real(v) for k, v in (kwargs or {}).items()})


def _operator(name: str) -> Callable[..., torch.Tensor]:
    def op(self: IndexedRows, *args: object) -> torch.Tensor:
        return getattr(self.materialize(), name)(*args)
    op.__name__ = name
    return op


for _name in ("gt", "lt", "ge", "le", "eq", "ne", "add", "radd", "sub", "rsub", "mul", "rmul", "truediv", "neg",
              "and", "or", "invert"):  # operators as on a tensor (whole-split uses, e.g. model(dm.splits["train"]))
    setattr(IndexedRows, f"__{_name}__", _operator(f"__{_name}__"))
IndexedRows.__hash__ = object.__hash__  # identity, as a tensor's


def take_rows(data: dict[str, torch.Tensor | IndexedRows], idx: object) -> dict[str, torch.Tensor | IndexedRows]:
    """The rows ``idx`` of a split, shared columns kept shared (for subsets that are then batched)."""
    return {k: v.select(idx) if isinstance(v, IndexedRows) else v[idx] for k, v in data.items()}


def mixed_epoch_order(scenario: torch.Tensor, num_scenarios: int, alpha: float,
                      generator: torch.Generator) -> torch.Tensor:
    """Row indices for one epoch: scenario ``s`` contributes ``N * n_s^alpha / sum n^alpha`` rows, shuffled.

    ``alpha=1`` is a plain shuffle of all rows; ``alpha=0`` gives every scenario the same number of rows
    (small scenarios are repeated, large ones subsampled).
    """
    n = len(scenario)
    if alpha == 1.0 or num_scenarios == 1:
        return torch.randperm(n, generator=generator)
    sizes = torch.bincount(scenario, minlength=num_scenarios).double()
    present = sizes > 0
    share = torch.where(present, sizes.clamp(min=1) ** alpha, torch.zeros_like(sizes))
    quota = torch.round(n * share / share.sum()).long()
    order = torch.argsort(scenario, stable=True)
    starts = torch.cumsum(sizes.long(), 0) - sizes.long()
    parts = []
    for s in torch.nonzero(present).flatten().tolist():
        size = int(sizes[s])
        reps = -(-int(quota[s]) // size)
        local = torch.cat([torch.randperm(size, generator=generator) for _ in range(max(reps, 1))])[: int(quota[s])]
        parts.append(order[starts[s] + local])
    idx = torch.cat(parts)
    return idx[torch.randperm(len(idx), generator=generator)]


class TensorBatches:
    """An iterable of batches sliced from a dict of equally long tensors."""

    def __init__(self, tensors: Batch, batch_size: int, shuffle: bool, seed: int = 0,
                 epoch_fn: Callable[[], int] | None = None, num_scenarios: int = 1, mix_alpha: float = 1.0,
                 rank: int = 0, world_size: int = 1, length_buckets: int = 0) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size={batch_size}, expected a positive integer")
        if isinstance(length_buckets, bool) or not isinstance(length_buckets, int) or length_buckets < 0:
            raise ValueError(f"data.length_buckets={length_buckets!r}, expected an integer >= 0 (batches per "
                             "length-sorted chunk; 0 = off)")
        self.tensors = tensors
        self.n = len(next(iter(tensors.values())))
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch_fn = epoch_fn or (lambda: 0)
        self.num_scenarios = num_scenarios
        self.mix_alpha = mix_alpha
        self.rank, self.world_size = rank, world_size
        self.length_buckets = length_buckets if shuffle and "history" in tensors else 0
        self.span = history_span(tensors["history"]) if self.length_buckets else None

    def _order(self) -> torch.Tensor:
        if not self.shuffle:
            per = -(-self.n // self.world_size)  # contiguous, disjoint, unpadded shards
            return torch.arange(self.rank * per, min(self.n, (self.rank + 1) * per))
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch_fn())
        order = mixed_epoch_order(self.tensors["scenario"], self.num_scenarios, self.mix_alpha, g)
        if self.world_size > 1:  # equal-length shards so every rank runs the same number of steps
            per = len(order) // self.world_size
            order = order[self.rank * per:(self.rank + 1) * per]
        return order

    def __len__(self) -> int:
        if not self.shuffle:
            return -(-len(self._order()) // self.batch_size)
        n = self.n if self.mix_alpha == 1.0 or self.num_scenarios == 1 else len(self._order()) * self.world_size
        return -(-(n // self.world_size) // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        order = self._order()
        if not self.shuffle and len(order) and bool((order[1:] - order[:-1] == 1).all()):
            lo, hi = int(order[0]), int(order[-1]) + 1
            for i in range(lo, hi, self.batch_size):  # pure slices: views, no copies
                yield {k: v[i: min(i + self.batch_size, hi)] for k, v in self.tensors.items()}
            return
        if self.length_buckets and self.span is not None:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch_fn() + 7)
            for idx in length_bucketed(order, self.span, self.batch_size, self.length_buckets, g):
                yield cut_history({k: v[idx] for k, v in self.tensors.items()})
            return
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            yield {k: v[idx] for k, v in self.tensors.items()}
