"""Where a training step's time goes: forward, backward, optimizer (median ms over steps), and the share of each.

    python scripts/bench_step.py                                   # the default unified model, synthetic data
    python scripts/bench_step.py --steps 60 -- experiment=swr_movielens head=mlp

Runs ``RecLitModule.loss`` / ``backward`` / the configured optimizer's ``step`` on the job's own training
batches, one thread unless ``num_threads`` says otherwise, and prints one table row per phase plus the machine
load sampled before and after (the figures are per-step wall times, so a busy machine inflates every phase).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def phase_times(module, batches, steps: int, warmup: int) -> dict[str, list[float]]:
    """Per-step seconds of forward (loss), backward and optimizer step, after ``warmup`` steps."""
    opt = module.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    out: dict[str, list[float]] = {"forward": [], "backward": [], "optimizer": []}
    module.train()
    for i in range(steps + warmup):
        batch = batches[i % len(batches)]
        t0 = time.perf_counter()
        loss = module.loss(batch)[0]
        t1 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if i >= warmup:
            for k, a, b in (("forward", t0, t1), ("backward", t1, t2), ("optimizer", t2, t3)):
                out[k].append(b - a)
    return out


def main() -> None:
    from unirec_lab.engine.build import build_datamodule, build_model, build_module

    from conftest import compose_cfg

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    cfg = compose_cfg(Path(tempfile.mkdtemp()) / "run", args.overrides)
    cfg.paths.cache_dir = os.environ.get("UNIREC_CACHE_DIR", str(ROOT / ".cache"))
    torch.set_num_threads(int(cfg.get("num_threads") or 1))
    dm = build_datamodule(cfg)
    torch.manual_seed(0)
    module = build_module(cfg, build_model(cfg, dm.space), dm)
    batches = []
    for b in dm.train_dataloader():
        batches.append(b)
        if len(batches) >= args.steps + args.warmup:
            break
    load0 = os.getloadavg()[0]
    res = phase_times(module, batches, args.steps, args.warmup)
    med = {k: statistics.median(v) * 1e3 for k, v in res.items()}
    total = sum(med.values())
    print(f"{type(module.model.backbone).__name__ if hasattr(module.model, 'backbone') else type(module.model).__name__}"
          f", optimizer {cfg.optimizer._target_}, batch {cfg.data.batch_size}, {args.steps} steps, threads "
          f"{torch.get_num_threads()}, load {load0:.2f} -> {os.getloadavg()[0]:.2f}")
    print("| phase | median ms/step | share |\n|---|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v:.2f} | {v / total:.0%} |")
    print(f"| step | {total:.2f} | {cfg.data.batch_size / total * 1e3:,.0f} samples/s |")


if __name__ == "__main__":
    main()
