"""Training-step time of the default unified model idle and beside a competing PyTorch job, per thread count.

    python scripts/bench_contention.py                 # threads 1, 2 and the default (half the usable cores)
    python scripts/bench_contention.py --steps 60 -- scenario=[synthetic_news]

The competitor is a second process doing 2-thread matrix products for the duration of the measurement (another
user's job, a sweep's second job, a browser...). Each cell is the median step time over ``--steps`` steps after
``--warmup`` steps; the ratio is competing / idle. Bounded: every competitor is killed when its cell ends.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

COMPETITOR = ("import time, torch\ntorch.set_num_threads(2)\na = torch.randn(384, 384)\n"
              "end = time.time() + {secs}\nwhile time.time() < end:\n    a @ a\n")


def step_times(module, batches, steps: int, warmup: int) -> list[float]:
    opt = module.configure_optimizers()
    out = []
    for i, batch in enumerate(batches):
        if i >= steps + warmup:
            break
        t0 = time.perf_counter()
        loss = module.loss(batch)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= warmup:
            out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    from unirec_lab.engine.build import build_datamodule, build_model, build_module
    from unirec_lab.utils.cpus import default_threads, usable_cores

    from conftest import compose_cfg

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    cfg = compose_cfg(Path(tempfile.mkdtemp()) / "run", args.overrides)
    cfg.paths.cache_dir = str(ROOT / ".cache")
    dm = build_datamodule(cfg)
    torch.manual_seed(0)
    module = build_module(cfg, build_model(cfg, dm.space), dm)
    batches = list(dm.train_dataloader())
    print(f"usable cores {usable_cores()}, default threads {default_threads()}, load before {os.getloadavg()[0]:.2f}, "
          f"{args.steps} steps of batch {cfg.data.batch_size}")
    print("| threads | idle ms/step | with a 2-thread competitor ms/step | slowdown |\n|---|---|---|---|")
    for threads in sorted({1, 2, default_threads()}):
        torch.set_num_threads(threads)
        idle = statistics.median(step_times(module, batches, args.steps, args.warmup)) * 1e3
        comp = subprocess.Popen([sys.executable, "-c", COMPETITOR.format(secs=120)])
        try:
            time.sleep(1.0)  # the competitor is running
            busy = statistics.median(step_times(module, batches, args.steps, args.warmup)) * 1e3
        finally:
            comp.kill()
            comp.wait()
        label = f"{threads}{' (default)' if threads == default_threads() else ''}"
        print(f"| {label} | {idle:.1f} | {busy:.1f} | {busy / idle:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
