"""Benchmark the model zoo: every backbone x head (unified wiring) plus the baselines, one short run each.

    .venv/bin/python scripts/bench_zoo.py                       # synthetic default, 1 epoch, all combinations
    .venv/bin/python scripts/bench_zoo.py --threads 1 --epochs 2 -- data.batch_size=2048
    .venv/bin/python scripts/bench_zoo.py --only mean-mlp mean-star mf --repeat 3
    .venv/bin/python scripts/bench_zoo.py --set swr               # the Scenario-Wise Rec heads (mean backbone)

Each row is one ``unirec-train`` job (own process, own run dir, ``result.json``); the table is built from those
files: validation AUC of the selected epoch (``val/mean/auc``), test AUC of that checkpoint, parameters, and
training throughput (rows per second of training steps, validation excluded; see ``ThroughputMonitor``).
Throughput depends on the machine and its load: compare rows of one table, not across machines.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from unirec_lab.results.record import RESULT_FILE, RecordError, RunRecord
from unirec_lab.results.tables import markdown_table

ROOT = Path(__file__).resolve().parents[1]
BACKBONES = ["mean", "din", "sasrec"]
HEADS = ["mlp", "mmoe", "ple", "star", "pepnet"]
# --set swr: the Scenario-Wise Rec heads on the mean backbone, beside three of the zoo's heads as references
SWR_HEADS = ["sarnet", "m2m", "adasparse", "adaptdhm", "epnet", "ppnet", "hamur", "m3oe"]
SWR_REFERENCES = ["mlp", "star", "pepnet"]
BASELINES = [  # (label, model, backbone, head)
    ("per_scenario", "per_scenario", "mean", "mlp"),
    ("scenario_as_feature", "scenario_as_feature", "mean", "mlp"),
    ("mf", "mf", "mean", "mlp"),
    ("popularity", "popularity", "mean", "mlp"),
]


def jobs(which: str = "zoo") -> list[tuple[str, str, str, str]]:
    if which == "swr":
        return [(f"mean-{h}", "unified", "mean", h) for h in SWR_REFERENCES + SWR_HEADS]
    out = [(f"{b}-{h}", "unified", b, h) for b in BACKBONES for h in HEADS]
    return out + BASELINES


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return sum(xs) / len(xs) if xs else float("nan")


def summarise(label: str, rec: RunRecord, wall: float) -> dict[str, Any]:
    sel = rec.selection
    if "monitor" not in sel:  # one selection per scenario (separate models, or selection.scope=per_scenario)
        val_auc = _mean([s["best_score"] for s in sel.values()])
    else:
        val_auc = sel["best_score"]
    return {"run": label, "model": rec.model, "backbone": rec.config["backbone_name"],
            "head": rec.config["head_name"], "params": rec.num_parameters, "val_auc": val_auc,
            "test_auc": _mean([v.get("auc") for v in rec.test.values()]),
            "samples_per_s": rec.train_samples_per_second, "wall_s": round(wall, 1),
            "description": rec.description, "git_sha": rec.git_sha}


def run(label: str, model: str, backbone: str, head: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """``--repeat`` runs of one job; throughput is the best of them (the least disturbed by other load)."""
    reps = [run_once(label, model, backbone, head, args, out / label / f"r{i}" if args.repeat > 1 else out / label)
            for i in range(args.repeat)]
    best = dict(reps[0])
    best["samples_per_s"] = max(r["samples_per_s"] or 0 for r in reps)
    best["wall_s"] = min(r["wall_s"] for r in reps)
    if any(r["val_auc"] != reps[0]["val_auc"] for r in reps[1:]):
        best["run"] += " (val AUC differs across repeats!)"
    return best


def run_once(label: str, model: str, backbone: str, head: str, args: argparse.Namespace,
             run_dir: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "unirec_lab.train", f"hydra.run.dir={run_dir}", f"model={model}",
           f"backbone={backbone}", f"head={head}", f"trainer.max_epochs={args.epochs}", "logger=none",
           f"scenario={args.scenario}", f"seed={args.seed}"]
    if args.threads:
        cmd.append(f"num_threads={args.threads}")
    cmd += args.overrides
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
        raise SystemExit(f"error: {label} failed (exit {proc.returncode}): {' '.join(cmd[2:])}")
    try:
        rec = RunRecord.read(run_dir / RESULT_FILE)
    except RecordError as e:
        raise SystemExit(f"error: {label}: {e}") from None
    return summarise(label, rec, wall)


def table(rows: list[dict[str, Any]]) -> str:
    head = ["run", "model", "backbone", "head", "params", "val/mean/auc", "test/mean/auc", "train samples/s",
            "wall s"]
    cells = [[r["run"], r["model"], r["backbone"], r["head"], f"{r['params']:,}", f"{r['val_auc']:.4f}",
              f"{r['test_auc']:.4f}", f"{r['samples_per_s']:,.0f}" if r["samples_per_s"] else "n/a", str(r["wall_s"])]
             for r in rows]
    return markdown_table(head, cells, pad=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="synthetic")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads per job (default: torch's)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per job; reports the best throughput")
    ap.add_argument("--set", dest="which", choices=["zoo", "swr"], default="zoo",
                    help="zoo: every backbone x head + baselines; swr: the Scenario-Wise Rec heads (mean backbone)")
    ap.add_argument("--only", nargs="+", default=None, help="run labels to keep (e.g. mean-mlp mf)")
    ap.add_argument("--out", default=None, help="output dir (default outputs/bench_zoo/<time>)")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides passed to every job (after --)")
    args = ap.parse_args(argv)
    if args.repeat < 1 or args.epochs < 1:
        raise SystemExit(f"error: --repeat {args.repeat} / --epochs {args.epochs}: expected >= 1")
    out = Path(args.out or ROOT / "outputs" / "bench_zoo" / time.strftime("%Y-%m-%d_%H-%M-%S"))
    todo = [j for j in jobs(args.which) if args.only is None or j[0] in args.only]
    if not todo:
        raise SystemExit(f"error: --only {args.only} matches none of {[j[0] for j in jobs(args.which)]}")
    rows = []
    for label, model, backbone, head in todo:
        rows.append(run(label, model, backbone, head, args, out))
        r = rows[-1]
        print(f"{label:22s} val/mean/auc {r['val_auc']:.4f}  {r['samples_per_s'] or 0:>10,.0f} samples/s  "
              f"{r['params']:>9,} params  {r['wall_s']:.1f}s", flush=True)
    md = table(rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.md").write_text(md + "\n")
    (out / "bench.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"\n## Model zoo, scenario={args.scenario}, {args.epochs} epoch(s), threads={args.threads or 'default'}, "
          f"best throughput of {args.repeat} run(s), git {str(rows[0].get('git_sha'))[:10]}\n")
    print(md)
    print(f"\n-> {out / 'bench.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
