"""Training and evaluation throughput: our Lightning job vs a plain PyTorch loop on the same model and batches.

    python scripts/bench_throughput.py                      # synthetic default, 3 repeats, median
    python scripts/bench_throughput.py scenario=real data.batch_size=4096 --epochs 1 --repeats 1
    python scripts/bench_throughput.py --repeats 3 experiment=swr_movielens head=mlp   # the 1M-row CTR frame

Training: samples/s of (a) a plain loop over the same tensor-sliced batches and (b) ``RecLitModule`` under a
Lightning ``Trainer`` (validation off), and their ratio. The bar: (b) within 10% of (a).

Evaluation: rows/s of the validation and the test split, (a) a plain loop (eval mode, ``no_grad``, forward
every batch, then the job's metrics -- per scenario, pooled if configured, slices on test -- computed once
from the concatenated rows) and (b) the job's own path: validation inside ``Trainer.fit`` (timed from the
loop's start to its end by a callback) and ``Trainer.test`` (the same, checkpoint restore excluded). Same
weights, loaders and metric code on both sides. The bars (issue #13): validation >= 0.9x, test >= 0.8x.
The machine load is printed before and after, as every figure is wall time on a shared machine.
"""

from __future__ import annotations

import argparse
import os
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
    ap.add_argument("--no-eval", action="store_true", help="training only")
    ap.add_argument("--no-train", action="store_true", help="evaluation only")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    cfg = compose_cfg(tmp / "run", args.overrides)
    cfg.paths.cache_dir = os.environ.get("UNIREC_CACHE_DIR", str(ROOT / ".cache"))
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))  # as the job does
    dm = build_datamodule(cfg)
    n_rows = len(dm.splits["train"]["label"])

    def build():
        torch.manual_seed(0)
        return build_module(cfg, build_model(cfg, dm.space), dm)

    def plain() -> float:
        module = build()
        opt = module.configure_optimizers()
        opt = opt["optimizer"] if isinstance(opt, dict) else opt  # (the scheduler steps per epoch: not timed)
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

    def eval_plain(module, split: str) -> tuple[float, float]:
        """Rows/s of a bare evaluation (forward every batch, then the same metrics on the concatenation) and of
        its forward passes alone."""
        from unirec_lab.evaluation.metrics import COLUMNS
        from unirec_lab.evaluation.slices import slice_metrics

        loader = dm.val_dataloader() if split == "val" else dm.test_dataloader()
        ev = module.val_eval if split == "val" else module.test_eval
        module.eval()
        t0 = time.perf_counter()
        parts = []
        with torch.no_grad():
            for batch in loader:
                parts.append((batch, module.model(batch)))
        t_fwd = time.perf_counter() - t0
        data = {k: torch.cat([(b if k != "logit" else {"logit": z})[k].to(dtype) for b, z in parts]).numpy()
                for k, dtype in COLUMNS.items()}
        ev.compute_from(data)
        if split == "test" and module.test_slice_masks is not None:
            slice_metrics(data, module.test_slice_masks, module.scenario_names, ev.metrics)
        return len(data["label"]) / (time.perf_counter() - t0), len(data["label"]) / t_fwd

    def eval_job(module) -> tuple[float, float]:
        """Rows/s of validation inside ``fit`` (1 training batch, then the epoch's validation) and of ``test``."""
        clock = EvalClock()
        trainer = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=1, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             num_sanity_val_steps=0, callbacks=[clock])
        trainer.fit(module, train_dataloaders=dm.train_dataloader(), val_dataloaders=dm.val_dataloader())
        trainer.test(module, dataloaders=dm.test_dataloader(), verbose=False)
        return clock.rows["val"] / clock.seconds["val"], clock.rows["test"] / clock.seconds["test"]

    load0 = os.getloadavg()
    print(f"train rows {n_rows}, epochs {args.epochs}, repeats {args.repeats}, threads {torch.get_num_threads()}")
    if not args.no_train:
        plain()  # warm-up: allocator, thread pools, first-touch of the tensors (discarded)
        res = {"plain loop": [], "lightning": []}
        for _ in range(args.repeats):
            res["plain loop"].append(plain())
            res["lightning"].append(lightning())
        med = {k: statistics.median(v) for k, v in res.items()}
        print("| loop | samples/s (median) | runs |\n|---|---|---|")
        for k, v in res.items():
            print(f"| {k} | {med[k]:,.0f} | {', '.join(f'{x:,.0f}' for x in v)} |")
        print(f"lightning / plain = {med['lightning'] / med['plain loop']:.3f}")
    if args.no_eval:
        print(f"load (1 min) before {load0[0]:.2f}, after {os.getloadavg()[0]:.2f}")
        return
    module = build()
    if cfg.get("slices") is not None:
        from unirec_lab.evaluation.slices import slice_masks

        module.test_slice_masks = slice_masks(dm.splits["test"], dm.space.user_train_pos, dm.space.item_train_pos,
                                              **cfg.slices, item_train_count=dm.space.item_train_count)
    ev = {s: {"plain loop": [], "forward only": [], "job": []} for s in ("val", "test")}
    eval_job(module)  # warm-up; also trains one step, so the weights both sides score are not the init
    for _ in range(args.repeats):
        for split in ("val", "test"):
            full, fwd = eval_plain(module, split)
            ev[split]["plain loop"].append(full)
            ev[split]["forward only"].append(fwd)
        v, t = eval_job(module)
        ev["val"]["job"].append(v)
        ev["test"]["job"].append(t)
    rows = {s: len(dm.splits[s]["label"]) for s in ("val", "test")}
    print("\n| split | rows | plain loop rows/s | job rows/s | job / plain | plain forward only rows/s | "
          "runs plain; job |\n|---|---|---|---|---|---|---|")
    for split, r in ev.items():
        p, j, f = (statistics.median(r[k]) for k in ("plain loop", "job", "forward only"))
        runs = "; ".join(", ".join(f"{x:,.0f}" for x in r[k]) for k in ("plain loop", "job"))
        print(f"| {split} | {rows[split]:,} | {p:,.0f} | {j:,.0f} | {j / p:.3f} | {f:,.0f} | {runs} |")
    print("(medians; the plain loop computes the job's metrics, 'forward only' is its forward passes alone)")
    print(f"load (1 min) before {load0[0]:.2f}, after {os.getloadavg()[0]:.2f}")


class EvalClock(pl.Callback):
    """Wall time and rows of the last validation / test loop, from its start hook to its end hook."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.rows: dict[str, int] = {}
        self._t0 = 0.0

    def _start(self, stage: str) -> None:
        self.rows[stage] = 0
        self._t0 = time.perf_counter()

    def _end(self, stage: str) -> None:
        self.seconds[stage] = time.perf_counter() - self._t0

    def on_validation_start(self, trainer, pl_module) -> None:
        self._start("val")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.rows["val"] += len(batch["label"])

    def on_validation_end(self, trainer, pl_module) -> None:
        self._end("val")

    def on_test_start(self, trainer, pl_module) -> None:
        self._start("test")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.rows["test"] += len(batch["label"])

    def on_test_end(self, trainer, pl_module) -> None:
        self._end("test")


if __name__ == "__main__":
    main()
