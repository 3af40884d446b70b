"""Training throughput: our Lightning loop vs a plain PyTorch loop on the same model, data and batches.

    python scripts/bench_throughput.py                      # synthetic default, 3 repeats, median
    python scripts/bench_throughput.py scenario=real data.batch_size=4096 --epochs 1 --repeats 1

Prints samples/s of (a) a plain loop over the same tensor-sliced batches and (b) ``RecLitModule`` under a
Lightning ``Trainer`` (validation off), and their ratio. The bar: (b) within 10% of (a).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
warnings.filterwarnings("ignore")


def main() -> None:
    from unirec_lab.engine.build import build_datamodule, build_model, build_module

    from conftest import compose_cfg

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    cfg = compose_cfg(tmp / "run", args.overrides)
    cfg.paths.cache_dir = str(ROOT / ".cache")
    dm = build_datamodule(cfg)
    n_rows = len(dm.splits["train"]["label"])

    def build():
        torch.manual_seed(0)
        return build_module(cfg, build_model(cfg, dm.space), dm)

    def plain() -> float:
        module = build()
        opt = module.configure_optimizers()
        t0 = time.perf_counter()
        for _ in range(args.epochs):
            for batch in dm.train_dataloader():
                loss = module.loss(batch)[0]
                opt.zero_grad()
                loss.backward()
                opt.step()
        return n_rows * args.epochs / (time.perf_counter() - t0)

    def lightning() -> float:
        module = build()
        trainer = pl.Trainer(accelerator="cpu", max_epochs=args.epochs, limit_val_batches=0, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             num_sanity_val_steps=0)
        t0 = time.perf_counter()
        trainer.fit(module, train_dataloaders=dm.train_dataloader())
        return n_rows * args.epochs / (time.perf_counter() - t0)

    plain()  # warm-up: allocator, thread pools, first-touch of the tensors (discarded)
    res = {"plain loop": [], "lightning": []}
    for _ in range(args.repeats):
        res["plain loop"].append(plain())
        res["lightning"].append(lightning())
    med = {k: statistics.median(v) for k, v in res.items()}
    print(f"train rows {n_rows}, epochs {args.epochs}, repeats {args.repeats}, threads {torch.get_num_threads()}")
    print("| loop | samples/s (median) | runs |\n|---|---|---|")
    for k, v in res.items():
        print(f"| {k} | {med[k]:,.0f} | {', '.join(f'{x:,.0f}' for x in v)} |")
    print(f"lightning / plain = {med['lightning'] / med['plain loop']:.3f}")


if __name__ == "__main__":
    main()
