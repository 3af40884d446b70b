"""The main job: train the unified model and the per-scenario baseline, print the per-scenario comparison.

    unirec-compare                                   # synthetic default, seed 42
    unirec-compare --seeds 1 2 3 -- trainer.max_epochs=5 scenario=[news,education]

A thin wrapper: one ``unirec-train -m model=<models> seed=<seeds>`` multirun (one interpreter, one run dir and
``result.json`` per job, Hydra's launcher), then the tables are built from those files, so what is printed is
exactly what was recorded; with several seeds the report's mean ± std and paired p-values follow.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from unirec_lab.results.record import RESULT_FILE, RecordError, RunRecord
from unirec_lab.results.tables import comparison_table, markdown_table


def run_sweep(models: list[str], seeds: list[int], overrides: list[str], out: Path) -> None:
    """All jobs as one Hydra multirun; a failed job fails the comparison (its failure.json says why)."""
    cmd = [sys.executable, "-m", "unirec_lab.train", "-m", f"model={','.join(models)}",
           f"seed={','.join(map(str, seeds))}", f"hydra.sweep.dir={out}", "hydra.sweep.subdir=${model.name}-s${seed}",
           *overrides]
    print("$ unirec-train " + " ".join(cmd[3:]), flush=True)
    proc = subprocess.run(cmd, env=os.environ.copy())
    if proc.returncode != 0:
        raise SystemExit(f"error: the sweep failed (exit {proc.returncode}); see {out}")


def _collect(out: Path, models: list[str], seeds: list[int]) -> dict[int, dict[str, RunRecord]]:
    per_seed: dict[int, dict[str, RunRecord]] = {}
    missing = []
    for seed in seeds:
        for m in models:
            path = out / f"{m}-s{seed}" / RESULT_FILE
            if not path.is_file():
                missing.append(str(path.parent))
                continue
            try:
                per_seed.setdefault(seed, {})[m] = RunRecord.read(path)
            except RecordError as e:
                raise SystemExit(f"error: {e}") from None
    if missing:
        raise SystemExit(f"error: no {RESULT_FILE} in {', '.join(missing)} (see failure.json there)")
    return per_seed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["unified", "per_scenario"],
                    help="model configs to compare (conf/model/*)")
    ap.add_argument("--baseline", default="per_scenario")
    ap.add_argument("--seeds", nargs="+", type=int, default=[42])
    ap.add_argument("--out", default=None, help="output dir (default outputs/compare/<time>)")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides passed to every job (after --)")
    args = ap.parse_args(argv)
    root = Path(os.environ.get("UNIREC_ROOT") or ".")
    out = Path(args.out or root / "outputs" / "compare" / time.strftime("%Y-%m-%d_%H-%M-%S")).absolute()
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"error: --out {out} exists and is not empty; pick a new folder")
    t0 = time.perf_counter()
    run_sweep(args.models, args.seeds, args.overrides, out)
    per_seed = _collect(out, args.models, args.seeds)
    wall = time.perf_counter() - t0
    for seed, results in per_seed.items():
        print(f"\n## Test metrics, seed {seed} (best checkpoint by validation; Δ = AUC gain over "
              f"{args.baseline})\n")
        print(comparison_table({m: r.test for m, r in results.items()}, baseline=args.baseline))
    summary = [[m, r.num_parameters, r.train_samples_per_second, r.wall_seconds, r.description]
               for m, r in per_seed[args.seeds[0]].items()]
    print("\n" + markdown_table(["model", "parameters", "train samples/s", "wall s", "description"], summary))
    if len(args.seeds) > 1 and args.baseline in args.models:
        from unirec_lab.cli.report import main as report

        print(f"\n## Over seeds {', '.join(map(str, args.seeds))}\n", flush=True)
        report([str(out), "--baseline", args.baseline])
    print(f"\ntotal wall time {wall:.1f}s; results under {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
