"""Replay: does updating a trained model on fresh feedback help? Static vs updated (vs retrained) per time window.

    unirec-replay --windows 4 -- scenario=synthetic_social trainer.max_epochs=3     # train, then replay
    unirec-replay --window-seconds 86400 --retrain -- scenario=news scenarios.news.source.test_days=3
    unirec-replay --run outputs/default/<time>                                      # replay a finished run

Trains on the past with ``unirec-train`` (the run recipe; skipped with ``--run``), then walks the run's test period
in windows (``unirec_lab/serve/replay.py`` states the protocol) and writes into ``--out``: ``replay.json`` (every
number), ``replay.md`` / ``replay.csv`` / ``replay.tex`` (the table) and ``replay_<scenario>_<metric>.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from unirec_lab.results.plots import series_png
from unirec_lab.results.tables import csv_table, latex_tabular, markdown_table, tex_escape
from unirec_lab.serve.replay import ReplayError, ReplaySettings, flat_rows, replay, table_cells
from unirec_lab.utils.atomic import atomic_write_bytes, atomic_write_text


def train_past(overrides: list[str], run_dir: Path) -> None:
    """The static model: one ``unirec-train`` job (its guard, its run dir, its ``result.json``)."""
    cmd = [sys.executable, "-m", "unirec_lab.train", f"hydra.run.dir={run_dir}", *overrides]
    print("$ unirec-train " + " ".join(cmd[3:]), flush=True)
    proc = subprocess.run(cmd, env=os.environ.copy())
    if proc.returncode != 0:
        raise SystemExit(f"error: training the static model failed (exit {proc.returncode}); see {run_dir}")


def write_outputs(result: dict, out: Path) -> list[Path]:
    """The table in three formats, the JSON, one plot per scenario and metric."""
    header, rows = table_cells(result)
    flat = flat_rows(result)
    cols = list(dict.fromkeys(k for r in flat for k in r))  # static rows have no difference columns
    files = {
        "replay.md": markdown_table(header, rows, pad=False) + "\n",
        "replay.csv": csv_table(cols, [[r.get(k) for k in cols] for r in flat]),
        "replay.tex": "\n".join(latex_tabular("lllr" + "ll" * len(result["settings"]["metrics"]) + "r",
                                              [[tex_escape(h) for h in header]],
                                              [[tex_escape(c) for c in r] for r in rows])) + "\n",
        "replay.json": json.dumps(result, indent=1, default=float) + "\n",
    }
    written = []
    for name, text in files.items():
        atomic_write_text(out / name, text)
        written.append(out / name)
    for scen in result["scenarios"]:
        rs = [r for r in result["windows"] if r["scenario"] == scen]
        windows = sorted({r["window"] for r in rs})
        for m in result["settings"]["metrics"]:
            series = {a: [(c["value"], c["lo"], c["hi"]) for w in windows for r in rs
                          if r["arm"] == a and r["window"] == w for c in [r["metrics"][m]]]
                      for a in dict.fromkeys(r["arm"] for r in rs)}
            png = series_png([str(w) for w in windows], series, m,
                             f"{scen}: {m} per replay window (95% group-bootstrap CI)")
            path = out / f"replay_{scen}_{m.replace('@', '_at_')}.png"
            atomic_write_bytes(path, png)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=None, help="replay this finished unirec-train run dir instead of training one")
    ap.add_argument("--windows", type=int, default=4, help="equal-row windows over the test period (default 4)")
    ap.add_argument("--window-seconds", type=int, default=None, help="calendar windows instead (86400 = days)")
    ap.add_argument("--epochs", type=int, default=1, help="fine-tuning passes over each revealed window")
    ap.add_argument("--batch-size", type=int, default=1024, help="fine-tuning batch size")
    ap.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate (default: the run's)")
    ap.add_argument("--retrain", action="store_true", help="add the full-retrain arm (one training per window)")
    ap.add_argument("--bootstrap", type=int, default=200, help="group-bootstrap replicates for the CIs (0: none)")
    ap.add_argument("--metrics", nargs="+", default=["auc", "gauc", "ndcg@10"])
    ap.add_argument("--seed", type=int, default=0, help="fine-tuning order / bootstrap seed")
    ap.add_argument("--out", default=None, help="output dir (default outputs/replay/<time>)")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of the training job (after --)")
    args = ap.parse_args(argv)
    settings = ReplaySettings(windows=args.windows, window_seconds=args.window_seconds, epochs=args.epochs,
                              batch_size=args.batch_size, lr=args.lr, retrain=args.retrain, bootstrap=args.bootstrap,
                              metrics=tuple(args.metrics), seed=args.seed)
    try:
        settings.check()
    except ReplayError as e:
        raise SystemExit(f"error: {e}") from None
    root = Path(os.environ.get("UNIREC_ROOT") or ".")
    out = Path(args.out or root / "outputs" / "replay" / time.strftime("%Y-%m-%d_%H-%M-%S")).absolute()
    if args.run and args.overrides:
        raise SystemExit("error: --run replays a finished run; training overrides after -- would be ignored")
    if out.exists() and any(p.name != "train" for p in out.iterdir()):
        raise SystemExit(f"error: --out {out} exists and is not empty; pick a new folder")
    out.mkdir(parents=True, exist_ok=True)
    run_dir = Path(args.run).absolute() if args.run else out / "train"
    if not args.run:
        train_past(args.overrides, run_dir)
    from unirec_lab.utils.console import quiet_third_party

    quiet_third_party()
    try:
        result = replay(run_dir, settings)
    except (ReplayError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    for path in write_outputs(result, out):
        print(f"wrote {path}")
    print("\n" + (out / "replay.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
