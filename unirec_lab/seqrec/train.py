"""Train SASRec on one S3-Rec Amazon dataset, select the epoch on validation, test it, write ``result.json``.

    python -m unirec_lab.seqrec.train dataset=Beauty seed=1
    python -m unirec_lab.seqrec.train dataset=Toys_and_Games seed=2 train.max_epochs=50 hydra.run.dir=runs/toys_s2
    python -m unirec_lab.seqrec.train --cfg job          # the composed config (conf/seqrec.yaml)

Plain PyTorch loop (no Lightning): the data are tensors in memory and a batch is an index slice, cut to its
longest sequence (length-bucketed batches, see :func:`~unirec_lab.seqrec.data.bucket_batches`). Each epoch
scores the validation candidates; the best epoch by ``selection.monitor`` is kept in memory (and saved as
``best.pt``); training stops after ``train.patience`` epochs without improvement, at ``train.max_epochs`` or at
``train.max_minutes``; the test set is scored once, with the best epoch's weights.
"""

from __future__ import annotations

import copy
import io
import logging
import math
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from unirec_lab.engine.config import resolved_config
from unirec_lab.engine.guard import run_guarded
from unirec_lab.results.record import git_sha, package_versions, write_result
from unirec_lab.results.tables import markdown_table
from unirec_lab.seqrec.data import NegativeSampler, SeqData, bucket_batches, load_s3rec, trim
from unirec_lab.seqrec.evaluate import METRICS, evaluate
from unirec_lab.seqrec.model import SASRec
from unirec_lab.utils.atomic import atomic_write_bytes

log = logging.getLogger("unirec_lab.seqrec")


def build_model(data: SeqData, model_cfg: dict[str, Any]) -> SASRec:
    return SASRec(data.num_items, max_len=data.max_len, **model_cfg)


def fit(data: SeqData, model_cfg: dict[str, Any], train_cfg: dict[str, Any], seed: int, monitor: str = "ndcg@10",
        metrics: tuple[str, ...] = METRICS, checkpoint: Path | None = None) -> dict[str, Any]:
    """Train, early-stop on validation ``monitor`` (higher is better), test the best epoch. Returns the record
    fields (test / val metrics, selection, history, throughput)."""
    if monitor not in metrics:
        raise ValueError(f"selection.monitor={monitor!r} is not among the metrics {list(metrics)}")
    tc = {"batch_size": 256, "lr": 1e-3, "betas": (0.9, 0.999), "weight_decay": 0.0, "max_epochs": 200,
          "patience": 10, "min_delta": 0.0, "bucket_chunk": 8, "eval_batch_size": 2048, "max_minutes": None,
          "loss_norm": "epoch", **train_cfg}
    unknown = set(train_cfg) - {"batch_size", "lr", "betas", "weight_decay", "max_epochs", "patience", "min_delta",
                                "bucket_chunk", "eval_batch_size", "max_minutes", "loss_norm"}
    if unknown:
        raise ValueError(f"unknown train options {sorted(unknown)}")
    if tc["loss_norm"] not in ("batch", "epoch"):
        raise ValueError(f"train.loss_norm={tc['loss_norm']!r}, expected 'batch' or 'epoch'")
    if int(tc["batch_size"]) < 1 or float(tc["lr"]) <= 0 or int(tc["max_epochs"]) < 1 or int(tc["patience"]) < 1:
        raise ValueError(f"need batch_size >= 1, lr > 0, max_epochs >= 1, patience >= 1 (got {tc})")
    torch.manual_seed(seed)
    model = build_model(data, model_cfg)
    opt = torch.optim.Adam(model.parameters(), lr=float(tc["lr"]), betas=tuple(tc["betas"]),
                           weight_decay=float(tc["weight_decay"]))
    gen = torch.Generator().manual_seed(int(seed))
    sampler = NegativeSampler(data.train_keys, data.num_items, gen)
    rows = torch.nonzero(data.train_len > 0).squeeze(1)  # users with at least one training target
    lengths = data.train_len[rows]
    ev_bs = int(tc["eval_batch_size"])
    budget = float(tc["max_minutes"]) * 60 if tc["max_minutes"] else math.inf
    # "batch": mean over the batch's own targets; "epoch": sum over the batch's targets / the mean number of
    # targets per batch, so every target weighs the same whatever the lengths of its batch-mates
    per_batch = float(lengths.sum()) / max(math.ceil(len(rows) / int(tc["batch_size"])), 1)

    best_score, best_epoch, best_state, best_val = -math.inf, -1, None, {}
    history: list[dict[str, Any]] = []
    train_seconds = eval_seconds = 0.0
    sequences = targets = 0
    stop_reason, bad = "max_epochs", 0
    t_start = time.perf_counter()
    for epoch in range(int(tc["max_epochs"])):
        model.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), dtype=torch.float64)
        n_batches = 0
        for b in bucket_batches(lengths, int(tc["batch_size"]), gen, int(tc["bucket_chunk"])):
            idx = rows[b]
            k = int(lengths[b].max())
            seq, pos = trim(data.train_input[idx], k), trim(data.train_target[idx], k)
            neg = sampler.sample(idx, (seq.shape[1],))
            if tc["loss_norm"] == "epoch":
                loss = model.loss(seq, pos, neg, reduction="sum") / per_batch
            else:
                loss = model.loss(seq, pos, neg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
            n_batches += 1
        epoch_loss = float(loss_sum) / max(n_batches, 1)
        if not math.isfinite(epoch_loss):
            raise FloatingPointError(f"non-finite training loss at epoch {epoch} ({epoch_loss})")
        dt = time.perf_counter() - t0
        train_seconds += dt
        sequences += len(rows)
        targets += int(lengths.sum())
        t1 = time.perf_counter()
        val = evaluate(model, data.val_input, data.val_len, data.val_candidates, ev_bs, metrics)
        eval_seconds += time.perf_counter() - t1
        history.append({"epoch": epoch, "loss": round(epoch_loss, 5), "train_seconds": round(dt, 2),
                        **{k: round(v, 5) for k, v in val.items()}})
        improved = val[monitor] > best_score + float(tc["min_delta"])
        log.info("epoch %d loss %.4f (%.1fs) val %s%s", epoch, epoch_loss, dt,
                 " ".join(f"{k} {v:.4f}" for k, v in val.items()), " *" if improved else "")
        if improved:
            best_score, best_epoch, best_val, bad = val[monitor], epoch, val, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if bad >= int(tc["patience"]):
                stop_reason = "patience"
                break
        if time.perf_counter() - t_start > budget:
            stop_reason = "max_minutes"
            break
    assert best_state is not None
    model.load_state_dict(best_state)
    if checkpoint is not None:
        buf = io.BytesIO()
        torch.save({"state_dict": best_state, "epoch": best_epoch, "model_cfg": dict(model_cfg),
                    "num_items": data.num_items, "max_len": data.max_len}, buf)
        atomic_write_bytes(checkpoint, buf.getvalue())
    t2 = time.perf_counter()
    test = evaluate(model, data.test_input, data.test_len, data.test_candidates, ev_bs, metrics)
    eval_seconds += time.perf_counter() - t2
    return {
        "test": test, "val": best_val,
        "selection": {"monitor": f"val/{data.name}/{monitor}", "mode": "max", "best_epoch": best_epoch,
                      "best_score": best_score, "epochs_run": len(history), "stop_reason": stop_reason,
                      "stopped_early": stop_reason == "patience", "patience": int(tc["patience"]),
                      "max_epochs": int(tc["max_epochs"]),
                      "best_checkpoint": checkpoint.name if checkpoint is not None else None},
        "val_history": history,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "description": model.description,
        "train_seconds": train_seconds, "eval_seconds": eval_seconds,
        "train_sequences": sequences, "train_targets": targets,
        "model": model,
    }


def run(cfg: DictConfig) -> float:
    t0 = time.perf_counter()
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    d = cfg.data
    data = load_s3rec(cfg.dataset, cfg.get("raw_dir"), max_len=int(d.max_len), eval_negatives=int(d.eval_negatives),
                      eval_seed=int(d.eval_seed), max_users=d.get("max_users"))
    log.info("%s: %s", data.name, data.stats)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    train_cfg = OmegaConf.to_container(cfg.train, resolve=True)
    metrics = tuple(cfg.metrics)
    out = fit(data, model_cfg, train_cfg, int(cfg.seed), str(cfg.selection.monitor), metrics,
              checkpoint=run_dir / "best.pt")
    out.pop("model")
    wall = time.perf_counter() - t0
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    test = {data.name: {**{k: round(v, 6) for k, v in out["test"].items()}, "rows": data.num_users}}
    record = {
        "status": "completed",
        "model": "sasrec",
        "mode": "single",
        "description": out["description"],
        "run_name": f"sasrec-{data.name}-s{cfg.seed}",
        "experiment": cfg.experiment_name,
        "scenarios": [data.name],
        "seed": int(cfg.seed),
        "overrides": overrides,
        "config": resolved_config(cfg),
        "git_sha": git_sha(),
        "packages": package_versions(),
        "selection": out["selection"],
        "val": {data.name: {k: round(v, 6) for k, v in out["val"].items()}},
        "test": test,
        "val_history": out["val_history"],
        "num_parameters": out["num_parameters"],
        "wall_seconds": round(wall, 3),
        "train_seconds": round(out["train_seconds"], 3),
        "eval_seconds": round(out["eval_seconds"], 3),
        "train_rows": out["train_sequences"],
        "train_targets": out["train_targets"],
        "train_samples_per_second": round(out["train_sequences"] / out["train_seconds"], 1),
        "train_targets_per_second": round(out["train_targets"] / out["train_seconds"], 1),
        "seconds_per_epoch": round(out["train_seconds"] / max(out["selection"]["epochs_run"], 1), 3),
        "data": {data.name: data.stats},
    }
    write_result(run_dir, record)
    print(markdown_table(["dataset", *out["test"]], [[data.name, *out["test"].values()]]))
    print(f"best epoch {out['selection']['best_epoch']} of {out['selection']['epochs_run']} "
          f"({out['selection']['stop_reason']}); wall {wall:.1f}s, {record['seconds_per_epoch']}s/epoch, "
          f"{record['train_samples_per_second']} sequences/s -> {run_dir / 'result.json'}")
    return float(out["selection"]["best_score"])


@hydra.main(version_base="1.3", config_path="pkg://unirec_lab.conf", config_name="seqrec")
def main(cfg: DictConfig) -> float:
    return run_guarded(run, cfg)


if __name__ == "__main__":
    main()
