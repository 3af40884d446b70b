"""Replay evaluation: does updating a trained model on fresh feedback help? (``unirec-replay``)

Protocol. A run trained on the past (``unirec-train``: the run recipe, best checkpoint by validation) is the
*static* model. Each scenario's test period is cut into windows by time (``windows`` of equal row counts, or
calendar buckets of ``window_seconds``, e.g. days). Window 0 is only revealed; every later window ``w`` is scored
by three arms before its labels are revealed:
- **static**: the trained model, never changed;
- **updated**: the static model fine-tuned (``serve/finetune.py``, warm start, ``epochs`` passes) after every
  window on that window's rows, carried forward (so it has seen every revealed window);
- **retrained** (``retrain=True``; costly): a fresh model trained from scratch (same config and seed) on train +
  val + every revealed window, for as many epochs as the static run selected.
All arms score the same rows with the same features and histories (the data module's test rows: a row's history
already holds every earlier revealed positive), so only the weights differ. Metrics per window and pooled over
the scored windows, with paired group-bootstrap 95% intervals of each arm and of its difference to static
(``evaluation/bootstrap.py``), and the seconds each update / retrain took.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from unirec_lab.engine.build import build, build_model
from unirec_lab.engine.checkpoints import read_checkpoint
from unirec_lab.engine.selection import tested_checkpoint
from unirec_lab.evaluation.bootstrap import paired_bootstrap
from unirec_lab.evaluation.metrics import metric_fn
from unirec_lab.features import SPLITS
from unirec_lab.results.record import RESULT_FILE, RunRecord
from unirec_lab.serve.finetune import finetune, score

log = logging.getLogger(__name__)
ARMS = ("static", "updated", "retrained")


class ReplayError(ValueError):
    """The run or a replay setting cannot be replayed; the message names the file / flag and why."""


@dataclass(frozen=True)
class ReplaySettings:
    windows: int = 4
    window_seconds: int | None = None
    epochs: int = 1
    batch_size: int = 1024
    lr: float | None = None  # fine-tuning learning rate; None: the run's optimizer.lr
    retrain: bool = False
    bootstrap: int = 200
    metrics: tuple[str, ...] = ("auc", "gauc", "ndcg@10")
    seed: int = 0

    def check(self) -> None:
        if self.window_seconds is None and self.windows < 2:
            raise ReplayError(f"--windows {self.windows}: expected >= 2 (window 0 is only revealed)")
        if self.window_seconds is not None and self.window_seconds < 1:
            raise ReplayError(f"--window-seconds {self.window_seconds}: expected a positive number of seconds")
        if self.lr is not None and not self.lr > 0:
            raise ReplayError(f"--lr {self.lr}: expected a positive learning rate")
        for m in self.metrics:
            try:
                metric_fn(m)
            except ValueError as e:
                raise ReplayError(f"--metrics: {e}") from None
        if self.epochs < 1 or self.batch_size < 1 or self.bootstrap < 0:
            raise ReplayError(f"--epochs {self.epochs} / --batch-size {self.batch_size} / --bootstrap "
                              f"{self.bootstrap}: expected >= 1 / >= 1 / >= 0")


def load_trained(run_dir: Path) -> tuple[DictConfig, Any, torch.nn.Module, RunRecord]:
    """(config, set-up datamodule, model with the tested weights, record) of a finished joint run."""
    path = run_dir / RESULT_FILE
    if not path.is_file():
        raise ReplayError(f"{path}: not found (is {run_dir} a finished unirec-train run dir?)")
    record = RunRecord.read(path)
    if record.mode != "joint" or not isinstance(record.config, dict):
        raise ReplayError(f"{path}: mode {record.mode!r}; replay needs a joint model (model.mode=joint) with its "
                          "resolved config")
    scope = ((record.config.get("selection") or {}).get("scope", "global"))
    if scope != "global" and len(record.scenarios) > 1:
        raise ReplayError(f"{path}: selection.scope={scope}; replay needs one checkpoint (selection.scope=global)")
    ckpt, keys = tested_checkpoint(record, run_dir, record.scenarios[0])
    if ckpt is None or not ckpt.is_file():
        raise ReplayError(f"{path}: its tested checkpoint {ckpt} is missing")
    state = read_checkpoint(ckpt)["state_dict"]
    cfg = OmegaConf.create(record.config)
    cfg.data.val_budget = None  # the retrained arm learns from the whole validation period
    dm, model = build(cfg, keys)
    model.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
    return cfg, dm, model.eval(), record


def split_ts(dm: Any, split: str) -> np.ndarray:
    """Each row's timestamp of ``split``, aligned with ``dm.splits[split]`` (scenarios in order, bundle order)."""
    parts = []
    for b in dm.bundles.values():
        df = b.interactions
        parts.append(df.loc[df["split"] == split, "ts"].to_numpy(np.int64))
    ts = np.concatenate(parts)
    if len(ts) != len(dm.splits[split]["label"]):
        raise ReplayError(f"split {split!r}: {len(ts)} timestamps for {len(dm.splits[split]['label'])} rows "
                          "(a validation subset? replay reads the full test split only)")
    return ts


def assign_windows(ts: np.ndarray, scenario: np.ndarray, settings: ReplaySettings) -> np.ndarray:
    """Window index of every row, per scenario by its own clock: equal row counts by time (rows with one
    timestamp stay together) or calendar buckets of ``window_seconds``."""
    out = np.full(len(ts), -1, dtype=np.int64)
    for s in np.unique(scenario):
        m = scenario == s
        t = ts[m]
        if settings.window_seconds is not None:
            b = t // settings.window_seconds
            out[m] = np.unique(b, return_inverse=True)[1]
        else:
            edges = np.quantile(t, np.linspace(0, 1, settings.windows + 1)[1:-1])
            out[m] = np.searchsorted(edges, t, side="right")
    return out


def _rows(data: dict[str, torch.Tensor], mask: np.ndarray) -> dict[str, torch.Tensor]:
    idx = torch.from_numpy(np.flatnonzero(mask))
    return {k: v[idx] for k, v in data.items()}


def _concat(parts: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    out = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    out["row"] = torch.arange(len(out["label"]))
    return out


def retrain(cfg: DictConfig, dm: Any, data: dict[str, torch.Tensor], epochs: int) -> torch.nn.Module:
    """A fresh model of the run's config and seed, trained ``epochs`` passes on ``data`` with the training
    objective (no validation: the epoch count is the one the static run selected)."""
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    model = build_model(cfg, dm.space)
    finetune(model, data, hydra.utils.instantiate(cfg.optimizer), dm.scenario_names, dm.loss_weights,
             epochs=epochs, batch_size=int(cfg.data.batch_size), seed=int(cfg.seed))
    return model


def replay(run_dir: Path, settings: ReplaySettings) -> dict[str, Any]:
    """Walk the run's test period; returns ``{"windows": [...], "overall": [...], "settings": ...}`` rows."""
    settings.check()
    cfg, dm, static, record = load_trained(run_dir)
    torch.set_num_threads(int(cfg.get("num_threads") or 1))
    test = dm.splits["test"]
    ts = split_ts(dm, "test")
    scen = test["scenario"].numpy()
    win = assign_windows(ts, scen, settings)
    n_win = int(win.max()) + 1
    if n_win < 2:
        raise ReplayError(f"{run_dir}: the test period holds {n_win} window(s); need >= 2 (fewer --window-seconds)")
    sel = record.selection or {}
    best_epoch = sel.get("best_epoch") if isinstance(sel, dict) else None
    retrain_epochs = int(best_epoch) + 1 if isinstance(best_epoch, int) else int(cfg.trainer.max_epochs)
    optimizer = hydra.utils.instantiate(cfg.optimizer, **({} if settings.lr is None else {"lr": settings.lr}))
    updated = copy.deepcopy(static)
    past = [dm.splits["train"], dm.splits["val"]]
    logits = {a: np.full(len(ts), np.nan) for a in ARMS}
    cost: dict[str, dict[int, float]] = {"updated": {}, "retrained": {}}
    for w in range(n_win):
        cur = win == w
        if w > 0:
            rows = _rows(test, cur)
            logits["static"][cur] = score(static, rows)
            logits["updated"][cur] = score(updated, rows)
            if settings.retrain:
                t0 = time.perf_counter()
                model = retrain(cfg, dm, _concat(past), retrain_epochs)
                cost["retrained"][w] = time.perf_counter() - t0
                logits["retrained"][cur] = score(model, rows)
        if w < n_win - 1:  # reveal window w: the updated arm learns from it
            revealed = _rows(test, cur)
            past.append(revealed)
            t0 = time.perf_counter()
            finetune(updated, revealed, optimizer, dm.scenario_names, dm.loss_weights, epochs=settings.epochs,
                     batch_size=settings.batch_size, seed=settings.seed + w)
            cost["updated"][w + 1] = time.perf_counter() - t0
    arms = [a for a in ARMS if a != "retrained" or settings.retrain]
    labels, groups = test["label"].numpy(), test["group"].numpy()
    out_w, out_all = [], []
    for s_idx, name in enumerate(dm.scenario_names):
        in_s = scen == s_idx
        for w in [*range(1, n_win), None]:
            m = in_s & ((win >= 1) if w is None else (win == w))
            if not m.any() or len(np.unique(labels[m])) < 2:
                continue
            res = paired_bootstrap(labels[m], {a: logits[a][m] for a in arms}, groups[m], settings.metrics,
                                   reference="static", replicates=settings.bootstrap, seed=settings.seed)
            base = {"scenario": name, "window": "all" if w is None else w, "rows": int(m.sum()),
                    "from_ts": int(ts[m].min()), "to_ts": int(ts[m].max())}
            for a in arms:
                secs = (sum(cost[a].values()) if w is None else cost[a].get(w)) if a in cost else None
                row = {**base, "arm": a, "seconds": secs, "metrics": res[a]}
                (out_all if w is None else out_w).append(row)
    return {"windows": out_w, "overall": out_all, "run_dir": str(run_dir), "scenarios": dm.scenario_names,
            "num_windows": n_win, "retrain_epochs": retrain_epochs if settings.retrain else None,
            "settings": {**settings.__dict__, "metrics": list(settings.metrics)},
            "split_rows": {s: int(len(dm.splits[s]["label"])) for s in SPLITS}}


def flat_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat dict per (scenario, window, arm): metric, CI bounds and the difference to static with its CI."""
    out = []
    for r in [*result["windows"], *result["overall"]]:
        row = {k: r[k] for k in ("scenario", "window", "arm", "rows", "from_ts", "to_ts", "seconds")}
        for m, c in r["metrics"].items():
            row.update({m: c["value"], f"{m}_lo": c["lo"], f"{m}_hi": c["hi"]})
            if "delta" in c:
                row.update({f"d_{m}": c["delta"], f"d_{m}_lo": c["delta_lo"], f"d_{m}_hi": c["delta_hi"]})
        out.append(row)
    return out


def _ci(v: float, lo: float, hi: float, sign: bool = False) -> str:
    f = "{:+.4f}" if sign else "{:.4f}"
    g = "{:+.3f}" if sign else "{:.3f}"
    return f.format(v) + (f" [{g.format(lo)}, {g.format(hi)}]" if np.isfinite(lo) else "")


def table_cells(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the replay table for the one renderer (``results/tables.py``): per metric the arm's
    value [95% CI] and its difference to static [paired 95% CI]; the update / retrain seconds."""
    metrics = result["settings"]["metrics"]
    header = ["scenario", "window", "arm", "rows"]
    for m in metrics:
        header += [f"{m} [95% CI]", f"Δ{m} vs static [95% CI]"]
    header.append("update / retrain s")
    rows = []
    for r in flat_rows(result):
        cells = [r["scenario"], str(r["window"]), r["arm"], str(r["rows"])]
        for m in metrics:
            cells.append(_ci(r[m], r[f"{m}_lo"], r[f"{m}_hi"]))
            cells.append(_ci(r[f"d_{m}"], r[f"d_{m}_lo"], r[f"d_{m}_hi"], sign=True) if f"d_{m}" in r else "")
        cells.append("" if r["seconds"] is None else f"{r['seconds']:.2f}")
        rows.append(cells)
    return header, rows
