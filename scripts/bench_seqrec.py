"""Throughput of one SASRec training epoch (and one validation pass) on an S3-Rec dataset.

    .venv/bin/python scripts/bench_seqrec.py --dataset Beauty --threads 1 2 --repeat 3

Compares length-bucketed batches (users sorted by length within chunks of 8 or 64 batches, each batch cut to
its longest sequence; unirec_lab.seqrec.train uses 8) with plain random batches padded to max_len=50. Prints the median over ``--repeat`` epochs per setting. The
machine is shared: run it when idle, or read the numbers as upper bounds on the time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from unirec_lab.seqrec.data import NegativeSampler, bucket_batches, load_s3rec, trim
from unirec_lab.seqrec.evaluate import evaluate
from unirec_lab.seqrec.model import SASRec


def epoch(model, opt, data, sampler, gen, chunk: int, batch_size: int) -> float:
    rows = torch.nonzero(data.train_len > 0).squeeze(1)
    lengths = data.train_len[rows]
    model.train()
    t0 = time.perf_counter()
    for b in bucket_batches(lengths, batch_size, gen, chunk):
        idx = rows[b]
        k = int(lengths[b].max()) if chunk else data.max_len
        seq, pos = trim(data.train_input[idx], k), trim(data.train_target[idx], k)
        loss = model.loss(seq, pos, sampler.sample(idx, (seq.shape[1],)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="Beauty")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=256)
    a = p.parse_args()
    data = load_s3rec(a.dataset)
    n_seq = int((data.train_len > 0).sum())
    print(f"{data.name}: {n_seq} training sequences, {data.num_train_targets} targets, batch {a.batch_size}")
    print("| threads | batches | s/epoch (median) | sequences/s | targets/s | validation pass s |")
    print("|---|---|---|---|---|---|")
    for threads in a.threads:
        torch.set_num_threads(threads)
        for chunk, label in ((8, "bucketed, chunks of 8 (default)"), (64, "bucketed, chunks of 64"),
                             (0, "random, padded to 50")):
            torch.manual_seed(0)
            model = SASRec(data.num_items)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            gen = torch.Generator().manual_seed(0)
            sampler = NegativeSampler(data.train_keys, data.num_items, gen)
            times = [epoch(model, opt, data, sampler, gen, chunk, a.batch_size) for _ in range(a.repeat)]
            t0 = time.perf_counter()
            evaluate(model, data.val_input, data.val_len, data.val_candidates)
            ev = time.perf_counter() - t0
            med = statistics.median(times)
            print(f"| {threads} | {label} | {med:.2f} | {n_seq / med:.0f} | {data.num_train_targets / med:.0f} | "
                  f"{ev:.2f} |", flush=True)


if __name__ == "__main__":
    main()
