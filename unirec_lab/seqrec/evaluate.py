"""1-vs-N sampled ranking evaluation, batched.

For each user the model scores ``[positive, negative_1 .. negative_N]`` (column 0 = the ground truth). The
positive's 0-based rank is the number of negatives scoring **at least as high** (ties count against the model, so
a constant scorer gets rank N, not 0). Then, as in S3-Rec's ``get_metric``:

    HR@K = mean(rank < K),  NDCG@K = mean((rank < K) / log2(rank + 2)),  MRR = mean(1 / (rank + 1)).

These equal :func:`unirec_lab.evaluation.metrics.hr_at_k` / ``ndcg_at_k`` / ``mrr`` on the same groups when the positive
is listed after its negatives (the framework breaks ties by row order); tests check that.
"""

from __future__ import annotations

import torch

from unirec_lab.seqrec.data import length_sorted_batches, trim

METRICS = ("hr@1", "hr@5", "ndcg@5", "hr@10", "ndcg@10", "mrr")


def positive_rank(scores: torch.Tensor) -> torch.Tensor:
    """``[B, 1 + N]`` scores, column 0 the positive -> ``[B]`` 0-based rank (ties pessimistic)."""
    return (scores[:, 1:] >= scores[:, :1]).sum(1)


def rank_metrics(ranks: torch.Tensor, metrics: tuple[str, ...] = METRICS) -> dict[str, float]:
    r = ranks.to(torch.float64)
    out: dict[str, float] = {}
    for m in metrics:
        if m == "mrr":
            out[m] = float((1.0 / (r + 1.0)).mean())
        elif m.startswith("hr@"):
            out[m] = float((r < int(m[3:])).to(torch.float64).mean())
        elif m.startswith("ndcg@"):
            k = int(m[5:])
            out[m] = float(((r < k).to(torch.float64) / torch.log2(r + 2.0)).mean())
        else:
            raise ValueError(f"unknown metric {m!r}; valid: hr@K, ndcg@K, mrr")
    return out


@torch.no_grad()
def candidate_ranks(model: torch.nn.Module, inputs: torch.Tensor, lengths: torch.Tensor,
                    candidates: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """``[U]`` rank of the positive for every user: batches of length-sorted users, each cut to its longest
    sequence, scored against their ``[B, 1 + N]`` candidates in one ``bmm``."""
    was_training = model.training
    model.eval()
    ranks = torch.empty(len(inputs), dtype=torch.long)
    try:
        for idx in length_sorted_batches(lengths, batch_size):
            seq = trim(inputs[idx], int(lengths[idx].max()))
            ranks[idx] = positive_rank(model(seq, candidates[idx]))
    finally:
        model.train(was_training)
    return ranks


def evaluate(model: torch.nn.Module, inputs: torch.Tensor, lengths: torch.Tensor, candidates: torch.Tensor,
             batch_size: int = 2048, metrics: tuple[str, ...] = METRICS) -> dict[str, float]:
    return rank_metrics(candidate_ranks(model, inputs, lengths, candidates, batch_size), metrics)
