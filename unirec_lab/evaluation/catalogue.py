"""Top-K over a whole item catalogue: full-ranking evaluation now, a ``/recommend`` endpoint later.

A model that offers the catalogue protocol is scored without repeating any input row:

- ``item_side(items) -> dict`` of tensors with leading dim ``N``: computed **once per model version** (the
  ranker re-computes it only when a parameter or buffer changed in place, i.e. after a step or a load);
- ``user_side(batch) -> dict``: one state per user row (user vector, or profile + history), once per user;
- ``score_pairs(user, item) -> [b, C]``: exact logits of every user with every candidate, where ``item``
  tensors are ``[C, ...]`` (the same candidates for all users) or ``[b, C, ...]`` (per-user candidates).

A model that also offers ``relu_chain(user, item) -> dict | None`` (the default unified model: its pair score is
a ReLU MLP over a per-user linear map of the item) is scored by :mod:`~unirec_lab.evaluation.relu_chain` in
the exact path: cache-sized GEMM blocks, fused bias + ReLU, user blocks on parallel single-threaded workers
(``chain=False``: ``score_pairs`` instead, the previous path that the benchmark compares against).

A model without it (``forward(batch)`` only) is scored the old way, on repeated rows; so is any model when
``cached=False`` (the reference path that tests and benchmarks compare against).

``candidates=C`` turns on an optional retrieval stage for models that also offer ``retrieval_keys(item) ->
[N, f]``: each user's exact scores on a fixed seeded sample of ``fit_items`` items are fitted as a linear
function of the keys (least squares weighted by ``exp(z-score)`` of the score, so the fit is best where the
top of the ranking is: measured to keep far more of the exact top-K than an unweighted fit at the same
``C``), the fit ranks the whole catalogue with one matmul, and only its top ``C`` are scored exactly and
re-ranked. It is approximate (a true top-K item the fit ranks below ``C`` is lost):
``scripts/bench_full_ranking.py`` measures the recall it costs. ``candidates=None`` (default) is exact.
"""

from __future__ import annotations

from itertools import chain as chained

import numpy as np
import torch
from torch import nn

from unirec_lab.evaluation.relu_chain import ReluChain, chain_scores

Batch = dict[str, torch.Tensor]
State = dict[str, torch.Tensor]
PROTOCOL = ("user_side", "item_side", "score_pairs")


def _take(state: State, idx: torch.Tensor) -> State:
    return {k: v[idx] for k, v in state.items()}


class CatalogueRanker:
    """Scores and top-K of user rows against ``items`` (global ids) for one model; caches the item side."""

    def __init__(self, model: nn.Module, items: torch.Tensor, candidates: int | None = None,
                 block_rows: int = 262_144, fit_items: int = 256, cached: bool = True, seed: int = 0,
                 chain: bool = True) -> None:
        if items.dim() != 1 or items.numel() == 0 or items.is_floating_point():
            raise ValueError(f"catalogue items: expected a non-empty 1-D tensor of item ids, got shape "
                             f"{tuple(items.shape)} dtype {items.dtype}")
        if candidates is not None and (isinstance(candidates, bool) or int(candidates) < 1):
            raise ValueError(f"full ranking candidates={candidates!r}: expected a positive integer or null (exact)")
        if block_rows < 1 or fit_items < 1:
            raise ValueError(f"catalogue block_rows={block_rows}, fit_items={fit_items}: expected positive integers")
        self.model, self.items = model, items
        self.block_rows, self.seed = int(block_rows), seed
        self.cached = cached and all(callable(getattr(model, m, None)) for m in PROTOCOL)
        self.chain = self.cached and chain and callable(getattr(model, "relu_chain", None))
        retrieval = self.cached and callable(getattr(model, "retrieval_keys", None))
        self.candidates = int(candidates) if retrieval and candidates is not None else None
        if self.candidates is not None and self.candidates >= len(items):
            self.candidates = None  # every item is a candidate: the exact path is the same and cheaper
        self.fit_items = min(int(fit_items), len(items))
        self._version: tuple[int, ...] | None = None
        self._item_state: State = {}
        self._fit: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # sample, design, keys

    # -- the item side, once per model version ------------------------------------------------------------------
    def _model_version(self) -> tuple[int, ...]:
        tensors = chained(self.model.parameters(), self.model.buffers())
        return (id(self.model), *(t._version for t in tensors))

    def item_state(self) -> State:
        """The model's item side for the catalogue, recomputed only when the model changed since the last call."""
        version = self._model_version()
        if version != self._version:
            self._item_state = self.model.item_side(self.items)
            self._fit = None
            if self.candidates is not None:
                keys = self.model.retrieval_keys(self._item_state).float()
                rng = np.random.default_rng(self.seed)
                sample = torch.from_numpy(np.sort(rng.choice(len(self.items), self.fit_items, replace=False)))
                self._fit = (sample, torch.cat([keys[sample], torch.ones(len(sample), 1)], dim=1).double(), keys)
            self._version = version
        return self._item_state

    # -- scores --------------------------------------------------------------------------------------------------
    def _forward_scores(self, rows: Batch) -> torch.Tensor:
        """The reference path: every (user row, item) pair as one input row of ``model(batch)``."""
        b, n = len(rows["user"]), len(self.items)
        per = max(1, self.block_rows // n)  # users per forward pass: rows stay bounded
        out = []
        for s in range(0, b, per):
            part = {k: v[s:s + per] for k, v in rows.items()}
            m = len(part["user"])
            batch = {k: v.repeat_interleave(n, dim=0) for k, v in part.items()}
            batch["item"] = self.items.repeat(m)
            out.append(self.model(batch).float().reshape(m, n))
        return torch.cat(out)

    def _pair_scores(self, user: State, item: State, b: int, c: int, per_user: bool) -> torch.Tensor:
        """``score_pairs`` in candidate blocks of at most ``block_rows`` pairs (memory and cache)."""
        blk = max(1, self.block_rows // b)
        if blk >= c:
            return self.model.score_pairs(user, item).float()
        out = torch.empty(b, c)
        for s in range(0, c, blk):
            part = {k: (v[:, s:s + blk] if per_user else v[s:s + blk]) for k, v in item.items()}
            out[:, s:s + blk] = self.model.score_pairs(user, part).float()
        return out

    @torch.no_grad()
    def scores(self, rows: Batch) -> torch.Tensor:
        """``[b, N]`` exact logits of each user row (its user, history, scenario) with every catalogue item."""
        with _eval_mode(self.model):
            if not self.cached:
                return self._forward_scores(rows)
            item = self.item_state()
            user = self.model.user_side(rows)
            found = self.model.relu_chain(user, item) if self.chain else None
            if found is not None:
                return chain_scores(ReluChain(**found))
            return self._pair_scores(user, item, len(rows["user"]), len(self.items), False)

    @torch.no_grad()
    def topk(self, rows: Batch, k: int, exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scores [b, k'], positions [b, k'])`` of each row's best items (``k' = min(k, N)``), ``positions``
        indexing ``items``; ``exclude`` (``[b, N]`` bool) items score ``-inf`` (e.g. earlier positives)."""
        if k < 1:
            raise ValueError(f"catalogue top-k k={k}: expected a positive integer")
        k = min(int(k), len(self.items))
        if self.candidates is None:
            scores = self.scores(rows)
            if exclude is not None:
                scores = scores.masked_fill(exclude, -torch.inf)
            return torch.topk(scores, k, dim=1)
        with _eval_mode(self.model):
            return self._retrieve_then_rerank(rows, k, exclude)

    def _retrieve_then_rerank(self, rows: Batch, k: int, exclude: torch.Tensor | None) -> tuple[torch.Tensor,
                                                                                                 torch.Tensor]:
        item = self.item_state()
        assert self._fit is not None and self.candidates is not None
        sample, design, keys = self._fit
        user = self.model.user_side(rows)
        b = len(rows["user"])
        coef = _weighted_fit(design, self._pair_scores(user, _take(item, sample), b, len(sample), False))
        approx = coef[:, :-1] @ keys.T  # the constant term does not change a user's ranking
        if exclude is not None:
            approx = approx.masked_fill(exclude, -torch.inf)
        c = max(self.candidates, k)
        first = torch.topk(approx, c, dim=1)
        exact = self._pair_scores(user, _take(item, first.indices), b, c, True)
        exact = exact.masked_fill(torch.isneginf(first.values), -torch.inf)  # excluded stay excluded
        top = torch.topk(exact, k, dim=1)
        return top.values, first.indices.gather(1, top.indices)


def _weighted_fit(design: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``[b, f + 1]`` per-user coefficients of ``y [b, S] ~ design [S, f + 1]``, each sample weighted by
    ``exp(z-score of its score)`` (a tiny ridge keeps the normal equations solvable)."""
    y = y.double()
    z = (y - y.mean(1, keepdim=True)) / y.std(1, keepdim=True).clamp(min=1e-12)
    w = torch.exp(z.clamp(max=20.0))  # [b, S]
    xtw = design.T.unsqueeze(0) * w.unsqueeze(1)  # [b, f + 1, S]
    gram = xtw @ design
    ridge = 1e-6 * gram.diagonal(dim1=1, dim2=2).mean(1).clamp(min=1e-12)
    gram = gram + ridge[:, None, None] * torch.eye(design.shape[1], dtype=gram.dtype)
    return torch.linalg.solve(gram, xtw @ y.unsqueeze(-1)).squeeze(-1).float()


class _eval_mode:
    """``model.eval()`` inside the block, the previous mode restored after (also on error)."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.was_training = model, model.training

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def rank_catalogue(model: nn.Module, rows: Batch, items: torch.Tensor, k: int,
                   exclude: torch.Tensor | None = None, candidates: int | None = None) -> tuple[torch.Tensor,
                                                                                              torch.Tensor]:
    """``(item ids [b, k], scores [b, k])``: each user row's top ``k`` of the catalogue ``items`` (one call; a
    server keeps a :class:`CatalogueRanker` so the item side is computed once per model version)."""
    values, pos = CatalogueRanker(model, items, candidates=candidates).topk(rows, k, exclude)
    return items[pos], values
