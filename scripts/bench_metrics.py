"""Our exact grouped metrics against torchmetrics' equivalents on a realistic evaluation: speed and agreement.

    .venv/bin/python scripts/bench_metrics.py --rows 2300000 --repeat 3 [--ties]

The evaluation (seeded): 65% of the rows in 1-vs-99 candidate groups of 100 (the e-commerce protocol), the rest
in impression groups of 2..150 rows with ~5% clicks (news); logits are noisy scores (``--ties`` rounds them to
0.01, so many rows tie). As after a DDP gather, 1% of the rows arrive twice (sampler padding) and are counted once
by row id. Prints rows/s per metric for ours and torchmetrics (best of ``--repeat``), whether the values agree,
and where they differ by definition. Also times scipy's ``rankdata`` against our home-made tie-averaged ranks.
The machine is shared: read the numbers as lower bounds on the speed.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from scipy.stats import rankdata
from torchmetrics.classification import BinaryAUROC
from torchmetrics.retrieval import RetrievalAUROC, RetrievalHitRate, RetrievalMRR, RetrievalNormalizedDCG

from unirec_lab.evaluation import metrics as ours


def make_eval(rows: int, seed: int, ties: bool) -> dict[str, np.ndarray]:
    """Gathered evaluation rows in arrival order (row ids repeated where a rank padded its share)."""
    rng = np.random.default_rng(seed)
    n_cand = int(rows * 0.65) // 100
    cand_group = np.repeat(np.arange(n_cand), 100)
    cand_label = (np.arange(n_cand * 100) % 100 == 0).astype(np.float32)
    rest = rows - len(cand_group)
    sizes = rng.integers(2, 151, size=rest // 2 + 1)
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), rest) + 1]
    sizes[-1] -= sizes.sum() - rest
    imp_group = n_cand + np.repeat(np.arange(len(sizes)), sizes)
    imp_label = (rng.random(rest) < 0.05).astype(np.float32)
    label = np.concatenate([cand_label, imp_label])
    group = np.concatenate([cand_group, imp_group]).astype(np.int64)
    logit = (rng.normal(size=rows) + 1.5 * label).astype(np.float32)
    if ties:
        logit = np.round(logit, 2)
    row = np.arange(rows, dtype=np.int64)
    pad = rng.choice(rows, size=rows // 100, replace=False)  # rows a second rank repeats
    order = rng.permutation(rows + len(pad))
    cat = {"row": np.concatenate([row, pad]), "label": np.concatenate([label, label[pad]]),
           "group": np.concatenate([group, group[pad]]), "logit": np.concatenate([logit, logit[pad]])}
    return {k: v[order] for k, v in cat.items()}


def dedupe(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each row id once, in row order (what ``ScenarioEvaluator.gathered`` does)."""
    _, first = np.unique(data["row"], return_index=True)
    return {k: v[first] for k, v in data.items()}


def best_time(fn: Callable[[], float], repeat: int) -> tuple[float, float]:
    """(value, best wall seconds over ``repeat`` calls)."""
    best, val = float("inf"), float("nan")
    for _ in range(repeat):
        t0 = time.perf_counter()
        val = float(fn())
        best = min(best, time.perf_counter() - t0)
    return val, best


def tm_value(metric, preds: torch.Tensor, target: torch.Tensor, indexes: torch.Tensor | None = None) -> float:
    """A fresh torchmetrics object's update + compute (as one epoch would use it)."""
    if indexes is None:
        metric.update(preds, target)
    else:
        metric.update(preds, target, indexes=indexes)
    return float(metric.compute())


def home_made_ranks(x: np.ndarray) -> np.ndarray:
    """The tie-averaged ranking we had before scipy's ``rankdata`` (kept here only to time the choice)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    new = np.concatenate([[True], xs[1:] != xs[:-1]])
    starts = np.flatnonzero(new)
    avg = (starts + np.concatenate([starts[1:], [len(xs)]]) + 1) / 2.0
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = avg[np.cumsum(new) - 1]
    return ranks


def lexsort_group_ranks(z: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The within-group average ranks we had before (one lexsort of (group, score)), to time the choice."""
    order = np.lexsort((z, g))
    gs, zs = g[order], z[order]
    new_g = np.concatenate([[True], gs[1:] != gs[:-1]])
    new_run = new_g | np.concatenate([[True], zs[1:] != zs[:-1]])
    run_start = np.flatnonzero(new_run)
    run_end = np.concatenate([run_start[1:], [len(gs)]])
    g_start = np.maximum.accumulate(np.where(new_g, np.arange(len(gs)), 0))[run_start]
    ranks = np.empty(len(z), dtype=np.float64)
    ranks[order] = ((run_start + run_end + 1) / 2.0 - g_start)[np.cumsum(new_run) - 1]
    return ranks


def group_aucs(y: np.ndarray, z: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-group AUC (NaN for single-class groups) and positives, from our within-group ranks."""
    gid = np.unique(g, return_inverse=True)[1]
    size = np.bincount(gid).astype(np.float64)
    ranks = ours._ranks_within_groups(z, gid, size)
    pos = y > 0.5
    n_pos = np.bincount(gid, weights=pos, minlength=len(size))
    rank_sum = np.bincount(gid, weights=ranks * pos, minlength=len(size))
    with np.errstate(invalid="ignore", divide="ignore"):
        g_auc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * (size - n_pos))
    return g_auc, n_pos


def gauc_torchmetrics_rule(y: np.ndarray, z: np.ndarray, g: np.ndarray) -> float:
    """RetrievalAUROC's definition on our per-group AUCs: groups with a positive, weight 1, all-positive = 0."""
    g_auc, n_pos = group_aucs(y, z, g)
    return float(np.mean(np.nan_to_num(g_auc[n_pos > 0], nan=0.0)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=2_300_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ties", action="store_true", help="round logits to 0.01 (many tied scores)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    raw = make_eval(args.rows, args.seed, args.ties)
    _, t_dedupe = best_time(lambda: len(dedupe(raw)["row"]), args.repeat)
    d = dedupe(raw)
    y, z, g = d["label"], d["logit"].astype(np.float64), d["group"]
    n = len(y)
    p = torch.from_numpy(1.0 / (1.0 + np.exp(-z)))  # probabilities in float64: no ties added by float32 sigmoid
    t, idx = torch.from_numpy(y > 0.5), torch.from_numpy(g)
    print(f"{len(raw['row']):,} gathered rows -> {n:,} after de-duplication by row id "
          f"({n / t_dedupe:,.0f} rows/s); {len(np.unique(g)):,} groups; ties={args.ties}; threads={args.threads}")
    cases = [
        ("AUC", lambda: ours.auc(y, z), lambda: tm_value(BinaryAUROC(thresholds=None), p, t)),
        ("GAUC", lambda: ours.gauc(y, z, g),
         lambda: tm_value(RetrievalAUROC(empty_target_action="skip"), p, t, idx)),
        ("NDCG@10", lambda: ours.ndcg_at_k(y, z, g, 10),
         lambda: tm_value(RetrievalNormalizedDCG(top_k=10, empty_target_action="skip"), p, t, idx)),
        ("HR@10", lambda: ours.hr_at_k(y, z, g, 10),
         lambda: tm_value(RetrievalHitRate(top_k=10, empty_target_action="skip"), p, t, idx)),
        ("MRR", lambda: ours.mrr(y, z, g),
         lambda: tm_value(RetrievalMRR(empty_target_action="skip"), p, t, idx)),
    ]
    print(f"{'metric':8} {'ours rows/s':>13} {'torchmetrics rows/s':>20} {'speed-up':>9} {'ours':>10} "
          f"{'torchmetrics':>12}  agree")
    for name, f_ours, f_tm in cases:
        v_o, s_o = best_time(f_ours, args.repeat)
        v_t, s_t = best_time(f_tm, max(1, args.repeat // 3))
        agree = abs(v_o - v_t) < 1e-6
        print(f"{name:8} {n / s_o:13,.0f} {n / s_t:20,.0f} {s_t / s_o:8.1f}x {v_o:10.6f} {v_t:12.6f}  {agree}")
    print("GAUC by definition: ours weights each group by its size and skips single-class groups; "
          "RetrievalAUROC averages groups with a positive with weight 1 and scores all-positive groups 0; "
          f"our per-group AUCs under that rule: {gauc_torchmetrics_rule(y, z, g):.6f}.")
    print("Ties: AUC both average tied ranks; torchmetrics' retrieval metrics order ties by an unstable sort, "
          "ours by row id, so with --ties NDCG/HR/MRR may differ. torchmetrics cannot de-duplicate by row id.")
    _, t_home = best_time(lambda: home_made_ranks(z)[0], args.repeat)
    _, t_scipy = best_time(lambda: rankdata(z)[0], args.repeat)
    print(f"tie-averaged ranks of {n:,} scores: home-made argsort {n / t_home:,.0f} rows/s, "
          f"scipy.stats.rankdata {n / t_scipy:,.0f} rows/s (same: {np.array_equal(home_made_ranks(z), rankdata(z))})")
    gid = np.unique(g, return_inverse=True)[1]
    size = np.bincount(gid).astype(np.float64)
    _, t_lex = best_time(lambda: lexsort_group_ranks(z, g)[0], args.repeat)
    _, t_rd = best_time(lambda: ours._ranks_within_groups(z, gid, size)[0], args.repeat)
    same = np.allclose(lexsort_group_ranks(z, g), ours._ranks_within_groups(z, gid, size), rtol=0, atol=1e-9)
    print(f"GAUC's within-group ranks: one lexsort {n / t_lex:,.0f} rows/s, rankdata of a (group, score) key "
          f"{n / t_rd:,.0f} rows/s (same: {same})")


if __name__ == "__main__":
    main()
