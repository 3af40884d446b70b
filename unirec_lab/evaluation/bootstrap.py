"""Group (cluster) bootstrap confidence intervals for ranking metrics, paired across models.

Rows of one group (a user, an impression) are not independent, so the unit resampled is the group: each replicate
draws groups with replacement and keeps all their rows (a group drawn twice counts as two groups). The same draws
score every model, so the interval of a *difference* between two models is paired (much tighter than two
separate intervals). Percentile intervals; the draws are seeded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from unirec_lab.evaluation.metrics import metric_fn


def _resample(order: np.ndarray, starts: np.ndarray, lens: np.ndarray, pick: np.ndarray,
              ) -> tuple[np.ndarray, np.ndarray]:
    """Row indices and fresh group ids of the groups ``pick`` (indices into ``starts`` / ``lens``)."""
    n = lens[pick]
    ends = np.cumsum(n)
    within = np.arange(int(ends[-1]) if len(ends) else 0) - np.repeat(ends - n, n)
    return order[np.repeat(starts[pick], n) + within], np.repeat(np.arange(len(pick)), n)


def paired_bootstrap(labels: np.ndarray, scores: Mapping[str, np.ndarray], groups: np.ndarray,
                     metrics: Sequence[str], reference: str | None = None, replicates: int = 200,
                     level: float = 0.95, seed: int = 0) -> dict[str, dict[str, dict[str, float]]]:
    """``{model: {metric: {value, lo, hi[, delta, delta_lo, delta_hi]}}}``: the metric on all rows, its
    percentile interval over ``replicates`` group resamples and, for models other than ``reference``, the
    difference to ``reference`` with its paired interval. ``replicates=0``: values only (NaN bounds)."""
    if replicates < 0 or not 0 < level < 1:
        raise ValueError(f"bootstrap replicates={replicates}, level={level}: expected >= 0 and in (0, 1)")
    fns = {m: metric_fn(m) for m in metrics}
    labels = np.asarray(labels, dtype=np.float64)
    groups = np.asarray(groups)
    uniq, gid = np.unique(groups, return_inverse=True)
    order = np.argsort(gid, kind="stable")
    lens = np.bincount(gid, minlength=len(uniq))
    starts = np.cumsum(lens) - lens
    names = list(scores)
    point = {k: {m: fn(labels, np.asarray(scores[k], dtype=np.float64), groups) for m, fn in fns.items()}
             for k in names}
    reps = {k: {m: np.full(replicates, np.nan) for m in fns} for k in names}
    rng = np.random.default_rng(seed)
    for r in range(replicates):
        rows, g = _resample(order, starts, lens, rng.integers(0, len(uniq), len(uniq)))
        for k in names:
            z = np.asarray(scores[k], dtype=np.float64)[rows]
            for m, fn in fns.items():
                reps[k][m][r] = fn(labels[rows], z, g)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]

    def bounds(x: np.ndarray) -> tuple[float, float]:
        x = x[np.isfinite(x)]
        return (float("nan"), float("nan")) if not len(x) else tuple(float(v) for v in np.percentile(x, q))

    out: dict[str, dict[str, dict[str, float]]] = {}
    for k in names:
        out[k] = {}
        for m in fns:
            lo, hi = bounds(reps[k][m])
            cell = {"value": float(point[k][m]), "lo": lo, "hi": hi}
            if reference is not None and k != reference:
                dlo, dhi = bounds(reps[k][m] - reps[reference][m])
                cell.update(delta=float(point[k][m] - point[reference][m]), delta_lo=dlo, delta_hi=dhi)
            out[k][m] = cell
    return out
