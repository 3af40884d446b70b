"""Where a training step's time goes: forward, backward, optimizer (median ms over steps), and the share of each.

    python scripts/bench_step.py                                   # the default unified model, synthetic data
    python scripts/bench_step.py --steps 60 -- experiment=swr_movielens head=mlp
    python scripts/bench_step.py --baseline ../main          # before / after: another checkout's code, interleaved

Runs ``RecLitModule.loss`` / ``backward`` / the configured optimizer's ``step`` on the job's own training
batches, one thread unless ``num_threads`` says otherwise, and prints one table row per phase plus the machine
load sampled before and after (the figures are per-step wall times, so a busy machine inflates every phase).
``--baseline DIR`` also runs the same measurement on the package of the checkout DIR (``PYTHONPATH=DIR``, same
config and batches), alternating baseline / this code ``--rounds`` times, and prints both side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# the baseline's own configs (tests/conftest.py composes its conf/): set for the --baseline child
sys.path.insert(0, str(Path(os.environ.get("BENCH_STEP_ROOT", ROOT)) / "tests"))


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
    ap.add_argument("--baseline", help="a checkout whose package is measured too (before / after)")
    ap.add_argument("--rounds", type=int, default=2, help="baseline / this code alternations")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    if args.baseline and not (Path(args.baseline) / "unirec_lab" / "__init__.py").is_file():
        raise SystemExit(f"error: --baseline {args.baseline}: not a checkout of this project (no unirec_lab/ package "
                         "there)")
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
    if args.child:
        print(json.dumps({k: statistics.median(v) * 1e3 for k, v in phase_times(module, batches, args.steps,
                                                                                 args.warmup).items()}))
        return
    name = type(getattr(module.model, "backbone", module.model)).__name__
    print(f"{name}, optimizer {cfg.optimizer._target_}, batch {cfg.data.batch_size}, {args.steps} steps, threads "
          f"{torch.get_num_threads()}")
    runs: dict[str, list[dict[str, float]]] = {"this code": []}
    if args.baseline:
        runs = {f"baseline {args.baseline}": [], "this code": []}
    loads = [os.getloadavg()[0]]
    for _ in range(args.rounds if args.baseline else 1):
        if args.baseline:
            base = str(Path(args.baseline).resolve())
            env = {**os.environ, "PYTHONPATH": base, "BENCH_STEP_ROOT": base}
            cmd = [sys.executable, __file__, "--child", "--steps", str(args.steps), "--warmup", str(args.warmup),
                   *args.overrides]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
            runs[f"baseline {args.baseline}"].append(json.loads(out.strip().splitlines()[-1]))
        runs["this code"].append({k: statistics.median(v) * 1e3 for k, v in
                                  phase_times(module, batches, args.steps, args.warmup).items()})
        loads.append(os.getloadavg()[0])
    print(f"load (1 min) sampled between rounds: {', '.join(f'{x:.2f}' for x in loads)}")
    labels = list(runs)
    print("| phase | " + " | ".join(f"{k}: median ms/step (share)" for k in labels) + " |\n|---|"
          + "---|" * len(labels))
    med = {k: {ph: statistics.median(r[ph] for r in v) for ph in v[0]} for k, v in runs.items()}
    for ph in ("forward", "backward", "optimizer"):
        print(f"| {ph} | " + " | ".join(f"{med[k][ph]:.2f} ({med[k][ph] / sum(med[k].values()):.0%})"
                                      for k in labels) + " |")
    print("| step | " + " | ".join(f"{sum(med[k].values()):.2f} = {cfg.data.batch_size / sum(med[k].values()) * 1e3:,.0f}"
                                   " samples/s" for k in labels) + " |")

if __name__ == "__main__":
    main()
