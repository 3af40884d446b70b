"""Time the first prepare and the cached re-run of the four default real scenarios into a temp cache.

    .venv/bin/python scripts/prepare_benchmark.py [--raw-dir DIR] [--scenario real] [--keep]

Two measurements:
1. per scenario, in this process: first build (parse + split + negatives + write) and cached re-run, the
   latter with the in-memory sha256 cache cleared so it costs what a fresh process pays (hashing raw files);
2. end to end: ``python -m unirec_lab.cli.prepare scenario=real`` run twice as subprocesses (Hydra start-up
   included), the way a user runs it.
Targets: first prepare of all four < 120 s, cached re-run < 5 s.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

from unirec_lab.cli.stats import bundle_row, stats_table  # noqa: E402
from unirec_lab.data.prepare import prepare_bundle  # noqa: E402
from unirec_lab.data.scenarios import raw  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--raw-dir", type=Path, default=raw.default_raw_dir())
    ap.add_argument("--scenario", default="real", help="scenario selection (conf/scenario), default: real")
    ap.add_argument("--keep", action="store_true", help="keep the temp cache and print its path")
    args = ap.parse_args()
    cache = Path(tempfile.mkdtemp(prefix="unirec_prepare_bench_"))
    try:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("prepare", overrides=[f"scenario={args.scenario}", f"paths.raw_dir={args.raw_dir}",
                                                f"paths.root_dir={ROOT}", f"cache_dir={cache / 'inproc'}"])
        rows, timing = [], []
        for key in cfg.scenarios:
            src = instantiate(cfg.scenarios[key].source)
            raw.clear_sha_cache()
            t0 = time.perf_counter()
            path = prepare_bundle(src, cfg.cache_dir)
            first = time.perf_counter() - t0
            raw.clear_sha_cache()
            t0 = time.perf_counter()
            prepare_bundle(instantiate(cfg.scenarios[key].source), cfg.cache_dir)
            cached = time.perf_counter() - t0
            rows.append(bundle_row(path, seconds=first, cached=False))
            timing.append((key, first, cached))
        print(stats_table(rows))
        print()
        print("| scenario | first prepare s | cached re-run s |")
        print("|---|---:|---:|")
        for key, first, cached in timing:
            print(f"| {key} | {first:.2f} | {cached:.3f} |")
        print(f"| **total** | {sum(t[1] for t in timing):.2f} | {sum(t[2] for t in timing):.3f} |")

        cmd = [sys.executable, "-m", "unirec_lab.cli.prepare", f"scenario={args.scenario}",
               f"paths.raw_dir={args.raw_dir}", f"cache_dir={cache / 'cli'}", "hydra.run.dir=" + str(cache / "run")]
        walls = []
        for _ in range(2):
            t0 = time.perf_counter()
            res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            walls.append(time.perf_counter() - t0)
            if res.returncode != 0:
                print(res.stdout, res.stderr, file=sys.stderr)
                return res.returncode
        print()
        print("| end to end (`python -m unirec_lab.cli.prepare`, new process) | wall s |")
        print("|---|---:|")
        print(f"| first prepare | {walls[0]:.2f} |")
        print(f"| cached re-run | {walls[1]:.2f} |")
        ok = walls[0] < 120 and walls[1] < 5
        print(f"\ntargets (first < 120 s, cached < 5 s): {'met' if ok else 'NOT met'}")
        return 0 if ok else 1
    finally:
        if args.keep:
            print(f"cache kept at {cache}")
        else:
            shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
