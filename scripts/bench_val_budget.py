"""Per-epoch cost: one training epoch vs validation on every row vs the ``data.val_budget`` subsets.

    UNIREC_RAW_DIR=../shared/data python scripts/bench_val_budget.py scenario=real num_threads=1
    python scripts/bench_val_budget.py --budgets 1,2 --repeats 1       # synthetic default, quick look

Builds the data once with full validation, draws each budget's subset with the datamodule's own
``subset_mask`` (same seed, same groups), trains one epoch under a Lightning ``Trainer`` (validation off), then
runs ``trainer.validate`` (forward + exact metrics) on the full split and on each subset. Prints seconds per
repeat and their median, the load average, and the trained model's validation AUC / nDCG@10 per scenario on
each (how far the subset's numbers sit from the full ones).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
warnings.filterwarnings("ignore")
logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)


def _trainer(**kw) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, **kw)


def main() -> None:
    from unirec_lab.data.batching import TensorBatches
    from unirec_lab.data.val_subset import subset_mask
    from unirec_lab.engine.build import build_datamodule, build_model, build_module

    from conftest import compose_cfg

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budgets", default="1,2,4", help="comma-separated data.val_budget values to time")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    budgets = [float(b) for b in args.budgets.split(",")]
    cfg = compose_cfg(Path(tempfile.mkdtemp()) / "run", [*args.overrides, "data.val_budget=null"])
    cfg.paths.cache_dir = str(ROOT / ".cache")
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    dm = build_datamodule(cfg)
    names = dm.scenario_names
    full = dm.splits["val"]
    train_rows = torch.bincount(dm.splits["train"]["scenario"], minlength=len(names)).numpy()
    vals = {"full": full}
    for b in budgets:
        keep, _ = subset_mask({k: v.numpy() for k, v in full.items()}, names, train_rows, b, int(cfg.data.val_subset_seed))
        vals[f"budget {b:g}"] = {k: v[torch.from_numpy(keep)] for k, v in full.items()}

    secs: dict[str, list[float]] = {"train epoch": [], **{k: [] for k in vals}}
    loads, metrics = [], {}
    for rep in range(args.repeats):
        torch.manual_seed(rep)
        module = build_module(cfg, build_model(cfg, dm.space), dm)
        loads.append(os.getloadavg()[0])
        t0 = time.perf_counter()
        _trainer(limit_val_batches=0).fit(module, train_dataloaders=dm.train_dataloader())
        secs["train epoch"].append(time.perf_counter() - t0)
        for k, data in vals.items():
            t0 = time.perf_counter()
            _trainer().validate(module, dataloaders=TensorBatches(data, dm.eval_batch_size, shuffle=False),
                                verbose=False)
            secs[k].append(time.perf_counter() - t0)
            metrics[k] = module.val_history[-1]["metrics"]
        print(f"repeat {rep + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in secs.items())
              + f" (load {loads[-1]:.2f})", flush=True)  # partial results survive an interrupted run
    loads.append(os.getloadavg()[0])

    print(f"threads {torch.get_num_threads()}, repeats {args.repeats}, load avg (1 min) at each start / end: "
          f"{', '.join(f'{x:.2f}' for x in loads)}")
    rows = {"train epoch": len(dm.splits["train"]["label"]), **{k: len(v["label"]) for k, v in vals.items()}}
    print("| pass | rows | seconds (median) | runs | / train epoch |\n|---|---|---|---|---|")
    tr = statistics.median(secs["train epoch"])
    for k, v in secs.items():
        med = statistics.median(v)
        print(f"| {k} | {rows[k]:,} | {med:.1f} | {', '.join(f'{x:.1f}' for x in v)} | {med / tr:.2f} |")
    print("\nvalidation metrics of the last repeat's model (full vs subsets):")
    print("| scenario | metric | " + " | ".join(vals) + " |\n|---|---|" + "---|" * len(vals))
    for s in names:
        for m in ("auc", "ndcg@10"):
            row = [metrics[k][s].get(m, float("nan")) for k in vals]
            print(f"| {s} | {m} | " + " | ".join(f"{x:.4f}" if np.isfinite(x) else "nan" for x in row) + " |")


if __name__ == "__main__":
    main()
