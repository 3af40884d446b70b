"""The main job: train the unified model and the per-scenario baseline, print the per-scenario comparison.

    unirec-compare                                   # synthetic default, seed 42
    unirec-compare --seeds 1 2 3 -- trainer.max_epochs=5 scenario=[news,education]

Each model is one ``unirec-train`` job (its own process, run dir and ``result.json``); the table is built from
those files, so what is printed is exactly what was recorded.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from unirec_lab.results.record import RESULT_FILE, RecordError, read_record
from unirec_lab.results.tables import comparison_table, markdown_table


def run_job(overrides: list[str], run_dir: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "unirec_lab.train", f"hydra.run.dir={run_dir}", *overrides]
    print("$ " + " ".join(cmd[1:]), flush=True)
    proc = subprocess.run(cmd, env=os.environ.copy())
    if proc.returncode != 0:
        raise SystemExit(f"error: training job failed (exit {proc.returncode}): {' '.join(overrides)}")
    try:
        return read_record(run_dir / RESULT_FILE)
    except RecordError as e:
        raise SystemExit(f"error: {e}") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["unified", "per_scenario"],
                    help="model configs to compare (conf/model/*); the last-named baseline is per_scenario")
    ap.add_argument("--baseline", default="per_scenario")
    ap.add_argument("--seeds", nargs="+", type=int, default=[42])
    ap.add_argument("--out", default=None, help="output dir (default outputs/compare/<time>)")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides passed to every job (after --)")
    args = ap.parse_args(argv)
    out = Path(args.out or Path("outputs") / "compare" / time.strftime("%Y-%m-%d_%H-%M-%S"))
    t0 = time.perf_counter()
    per_seed: dict[int, dict[str, dict[str, Any]]] = {}
    for seed in args.seeds:
        per_seed[seed] = {m: run_job([f"model={m}", f"seed={seed}", *args.overrides], out / f"{m}-s{seed}")
                          for m in args.models}
    wall = time.perf_counter() - t0
    for seed, results in per_seed.items():
        print(f"\n## Test metrics, seed {seed} (best checkpoint by val/mean/auc; Δ = AUC gain over "
              f"{args.baseline})\n")
        print(comparison_table(results, baseline=args.baseline))
    summary = [[m, r["num_parameters"], r["train_samples_per_second"], r["wall_seconds"],
                r["description"]] for m, r in per_seed[args.seeds[0]].items()]
    print("\n" + markdown_table(["model", "parameters", "train samples/s", "wall s", "description"], summary))
    print(f"\ntotal wall time {wall:.1f}s; results under {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
