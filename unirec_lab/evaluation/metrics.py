"""Per-scenario evaluation metrics, exact and vectorised.

- ``auc``: ROC AUC by the rank-sum (Mann-Whitney) formula with average ranks for ties (scipy ``rankdata``;
  = sklearn).
- ``logloss``: mean binary cross-entropy computed from logits (stable; = sklearn's ``log_loss`` on sigmoids).
- ``gauc``: AUC per group, weighted by group size; groups with a single class are skipped.
- ``ndcg@K``, ``hr@K``, ``mrr``: ranking within each group (impression, user, or 1-vs-N candidate set) by
  score, ties broken by row order; groups without a positive are skipped. Gain is the binary label,
  discount ``1/log2(rank+1)``; ``hr@K`` = 1 if a positive is in the top K; ``mrr`` = 1 / rank of the first
  positive.

:class:`ScenarioEvaluator` keeps one epoch's predictions (bounded by the evaluation set, reset every epoch),
gathers them across ranks and counts every row once by its global row id, so DDP padding cannot skew it.
``scripts/bench_metrics.py`` times these against torchmetrics' equivalents (README, "Metrics").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
from scipy.stats import rankdata
from torchmetrics.utilities.distributed import gather_all_tensors

METRIC_PATTERN = re.compile(r"^(auc|logloss|gauc|mrr|ndcg@\d+|hr@\d+)$")
VALID_METRICS = "auc, logloss, gauc, mrr, ndcg@K, hr@K (K a positive integer)"


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    labels = np.asarray(labels) > 0.5
    n_pos = labels.sum()
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(np.asarray(scores, dtype=np.float64))
    return float((r[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def logloss(labels: np.ndarray, logits: np.ndarray) -> float:
    y = np.asarray(labels, dtype=np.float64)
    z = np.asarray(logits, dtype=np.float64)
    # log(1 + exp(-|z|)) + max(z, 0) - y z  ==  -[y log s(z) + (1-y) log(1-s(z))]
    return float(np.mean(np.logaddexp(0.0, -np.abs(z)) + np.maximum(z, 0.0) - y * z))


def _group_sort(groups: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order rows by (group, score desc, row); return order, group start offsets, group sizes."""
    order = np.lexsort((np.arange(len(scores)), -scores, groups))
    g = groups[order]
    new = np.concatenate([[True], g[1:] != g[:-1]])
    starts = np.flatnonzero(new)
    sizes = np.diff(np.concatenate([starts, [len(g)]]))
    return order, starts, sizes


def _ranks_within_groups(scores: np.ndarray, gid: np.ndarray, size: np.ndarray) -> np.ndarray:
    """1-based average ranks of ``scores`` within their group (``gid`` dense, ``size`` rows per group): one
    ``rankdata`` of the (group, dense score rank) key, shifted by the rows of the groups before."""
    key = gid * (len(scores) + 1) + rankdata(scores, method="dense").astype(np.int64)
    return rankdata(key) - (np.cumsum(size) - size)[gid]


def gauc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> float:
    y = np.asarray(labels) > 0.5
    s = np.asarray(scores, dtype=np.float64)
    if len(y) == 0 or np.isnan(s).any():  # a NaN score has no rank
        return float("nan")
    gid = np.unique(np.asarray(groups), return_inverse=True)[1].reshape(-1)
    size = np.bincount(gid).astype(np.float64)
    ranks = _ranks_within_groups(s, gid, size)
    n_pos = np.bincount(gid, weights=y, minlength=len(size))
    n_neg = size - n_pos
    rank_sum = np.bincount(gid, weights=ranks * y, minlength=len(size))
    ok = (n_pos > 0) & (n_neg > 0)
    if not ok.any():
        return float("nan")
    g_auc = (rank_sum[ok] - n_pos[ok] * (n_pos[ok] + 1) / 2.0) / (n_pos[ok] * n_neg[ok])
    return float(np.sum(g_auc * size[ok]) / np.sum(size[ok]))


def _ranked(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray):
    y = (np.asarray(labels) > 0.5).astype(np.float64)
    order, starts, sizes = _group_sort(np.asarray(groups), np.asarray(scores, dtype=np.float64))
    gid = np.repeat(np.arange(len(starts)), sizes)
    pos_in_group = np.arange(len(order)) - np.repeat(starts, sizes)  # 0-based rank
    return y[order], gid, pos_in_group, len(starts)


Ranked = tuple[np.ndarray, np.ndarray, np.ndarray, int]  # what _ranked returns: shared by the ranking metrics


def ndcg_at_k(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, k: int,
              ranked: Ranked | None = None) -> float:
    """``ranked``: :func:`_ranked` of the same arrays, when the caller computes several ranking metrics."""
    ys, gid, rank, n_groups = ranked or _ranked(labels, scores, groups)
    if n_groups == 0:
        return float("nan")
    disc = 1.0 / np.log2(rank + 2.0)
    top = rank < k
    dcg = np.bincount(gid, weights=ys * disc * top, minlength=n_groups)
    n_pos = np.bincount(gid, weights=ys, minlength=n_groups)
    # ideal: all positives first -> sum_{r < min(n_pos, k)} 1/log2(r+2)
    cum = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))])
    idcg = cum[np.minimum(n_pos, k).astype(np.int64)]
    ok = n_pos > 0
    return float(np.mean(dcg[ok] / idcg[ok])) if ok.any() else float("nan")


def hr_at_k(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, k: int,
            ranked: Ranked | None = None) -> float:
    ys, gid, rank, n_groups = ranked or _ranked(labels, scores, groups)
    hit = np.bincount(gid, weights=ys * (rank < k), minlength=n_groups) > 0
    ok = np.bincount(gid, weights=ys, minlength=n_groups) > 0
    return float(hit[ok].mean()) if ok.any() else float("nan")


def mrr(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, ranked: Ranked | None = None) -> float:
    ys, gid, rank, n_groups = ranked or _ranked(labels, scores, groups)
    first = np.full(n_groups, np.inf)
    np.minimum.at(first, gid[ys > 0], rank[ys > 0])
    ok = np.isfinite(first)
    return float(np.mean(1.0 / (first[ok] + 1.0))) if ok.any() else float("nan")


MetricFn = Callable[[np.ndarray, np.ndarray, np.ndarray], float]


def metric_fn(name: str) -> MetricFn:
    """``(labels, logits, groups) -> value`` for a metric name; unknown names fail listing the valid ones."""
    if not METRIC_PATTERN.match(name):
        raise ValueError(f"unknown metric {name!r}; valid: {VALID_METRICS}")
    if name == "auc":
        return lambda y, z, g: auc(y, z)
    if name == "logloss":
        return lambda y, z, g: logloss(y, z)
    if name == "gauc":
        return gauc
    if name == "mrr":
        return mrr
    kind, k = name.split("@")
    if int(k) <= 0:
        raise ValueError(f"unknown metric {name!r}; valid: {VALID_METRICS}")
    fn = ndcg_at_k if kind == "ndcg" else hr_at_k
    return lambda y, z, g, ranked=None: fn(y, z, g, int(k), ranked)


def is_ranking(name: str) -> bool:
    """mrr / ndcg@K / hr@K: they share one within-group sort (:func:`metric_values` computes it once)."""
    return name == "mrr" or name.startswith(("ndcg@", "hr@"))


def metric_values(fns: dict[str, MetricFn], y: np.ndarray, z: np.ndarray, g: np.ndarray) -> dict[str, float]:
    """Every metric of ``fns`` on one set of rows; the ranking metrics share one group sort (a 1-vs-99
    validation of 2M rows sorts once, not once per metric)."""
    ranked = _ranked(y, z, g) if any(is_ranking(k) for k in fns) else None
    return {k: fn(y, z, g, ranked) if is_ranking(k) else fn(y, z, g) for k, fn in fns.items()}


# the columns one evaluation row keeps, with fixed dtypes so every DDP rank gathers alike (even an empty one)
COLUMNS = {"row": torch.int64, "scenario": torch.int64, "label": torch.float32, "group": torch.int64,
           "logit": torch.float32}


POOLED = "all"  # the key of the pooled metrics (every scenario's rows together)


class ScenarioEvaluator:
    """Collects one evaluation epoch and computes ``{scenario: {metric: value}}``."""

    def __init__(self, scenarios: Sequence[str], metrics: Sequence[str], pooled: bool = False) -> None:
        """``pooled``: also ``{POOLED: metrics over every row of every scenario}`` (SWR's "total" AUC)."""
        if not metrics:
            raise ValueError("metrics is empty; valid: " + VALID_METRICS)
        if pooled and POOLED in scenarios:
            raise ValueError(f"pooled metrics are reported as {POOLED!r}, which is also a scenario name; "
                             "rename that scenario")
        self.pooled = pooled
        self.scenarios = list(scenarios)
        self.metrics = {m: metric_fn(m) for m in metrics}
        self.reset()

    def reset(self) -> None:
        self._parts: list[dict[str, torch.Tensor]] = []

    def update(self, batch: dict[str, torch.Tensor], logits: torch.Tensor) -> None:
        cols = {**batch, "logit": logits}
        self._parts.append({k: cols[k].detach().to("cpu", dtype) for k, dtype in COLUMNS.items()})

    def gathered(self) -> dict[str, np.ndarray]:
        """This epoch's rows from every rank, each global row once, in row order.

        Under DDP, torchmetrics' ``gather_all_tensors`` collects every rank's rows (lengths may differ); rows a
        ``DistributedSampler`` padded in twice share a row id and are kept once."""
        local = {k: torch.cat([p[k] for p in self._parts]) if self._parts else torch.zeros(0, dtype=dtype)
                 for k, dtype in COLUMNS.items()}
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            on = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
            local = {k: torch.cat([t.cpu() for t in gather_all_tensors(v.to(on))]) for k, v in local.items()}
        row = local["row"].numpy()
        if len(row) < 2 or bool(np.all(row[1:] > row[:-1])):  # one process, in order: no sort, no copies
            return {k: v.numpy() for k, v in local.items()}
        _, first = np.unique(row, return_index=True)
        return {k: v.numpy()[first] for k, v in local.items()}

    def compute_from(self, data: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
        """Metrics of gathered rows (:meth:`gathered`), per scenario; slices reuse the same gather."""
        out: dict[str, dict[str, float]] = {}
        for s_idx, name in enumerate(self.scenarios):
            m = data["scenario"] == s_idx
            if not m.any():
                continue
            y, z, g = data["label"][m], data["logit"][m].astype(np.float64), data["group"][m]
            out[name] = metric_values(self.metrics, y, z, g)
            out[name]["rows"] = int(m.sum())
        if self.pooled and len(data["label"]):
            y, z, g = data["label"], data["logit"].astype(np.float64), data["group"]
            out[POOLED] = metric_values(self.metrics, y, z, g)
            out[POOLED]["rows"] = int(len(y))
        return out
