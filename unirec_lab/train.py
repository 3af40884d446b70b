"""Train, select by validation, test the best checkpoint, write ``result.json``.

    unirec-train                                   # unified model on the four synthetic scenarios
    unirec-train model=per_scenario                # same architecture, one independent model per scenario
    unirec-train scenario=[synthetic_news,synthetic_social] trainer.max_epochs=3 seed=7
    unirec-train -m seed=1,2,3 model=unified,per_scenario

``model.mode=joint`` trains one model on all selected scenarios; ``model.mode=separate`` trains the same
architecture once per scenario (own data, own early stopping and best epoch) inside one job, so its
``result.json`` has the same shape as the unified one and compares like for like.

``selection.scope=per_scenario`` gives a joint model the same per-scenario model selection: one weights-only
checkpoint per scenario (best ``val/<scenario>/<metric>``), each scenario tested on its own, and early stopping
on ``val/best_so_far/<metric>`` (stops when no scenario improved for ``patience`` epochs). ``selection`` in
``result.json`` is then ``{scenario: {...}}`` as in separate mode.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from unirec_lab.evaluation.full_ranking import full_ranking_metrics
from unirec_lab.evaluation.slices import slice_masks
from unirec_lab.lit.checkpoint_io import RunCheckpointIO
from unirec_lab.lit.checkpoints import check_resumable, run_signature
from unirec_lab.lit.module import RecLitModule
from unirec_lab.lit.resume import PART_FILE, latest_checkpoint, load_part, part_dirs, prepare_resume
from unirec_lab.models.unified import count_parameters
from unirec_lab.results.record import git_sha, package_versions, write_result
from unirec_lab.results.tables import markdown_table
from unirec_lab.utils.atomic import atomic_write_json
from unirec_lab.utils.callbacks import ThroughputMonitor
from unirec_lab.utils.config import check_config, flat_config, resolved_config, selection_metric
from unirec_lab.utils.console import EpochLine, interactive, quiet_third_party
from unirec_lab.utils.guard import run_guarded
from unirec_lab.utils.loggers import build_logger, finish_loggers
from unirec_lab.utils.memory import embedding_bytes, ensure_fits
from unirec_lab.utils.rundir import RunDirError, clear_stale_failure, is_resume_dir, run_dir_of
from unirec_lab.utils.signals import StopOnSignal, signals_interrupt

log = logging.getLogger("unirec_lab.train")


def _best_epoch(ckpt_path: str) -> int | None:
    name = Path(ckpt_path).stem  # best-epoch007
    digits = name.rsplit("epoch", 1)[-1]
    return int(digits) if digits.isdigit() else None


def fit_and_test(cfg: DictConfig, keys: list[str], run_dir: Path, loggers: dict[str, Any]) -> dict[str, Any]:
    """Train one model on ``keys`` scenarios in ``run_dir``; return its test metrics and bookkeeping."""
    scenarios = {k: {"source": hydra.utils.instantiate(cfg.scenarios[k].source),
                     "loss_weight": float(cfg.scenarios[k].get("loss_weight", 1.0))} for k in keys}
    dm = hydra.utils.instantiate(cfg.data, scenarios=scenarios)
    dm.prepare_data()
    dm.setup()
    check_embedding_memory(cfg, dm.space)
    build = hydra.utils.instantiate(cfg.model.builder)
    model = build(space=dm.space, backbone=hydra.utils.instantiate(cfg.backbone),
                  head=hydra.utils.instantiate(cfg.head))
    per_scenario = cfg.selection.get("scope", "global") == "per_scenario" and len(keys) > 1
    metric = selection_metric(cfg) if per_scenario else None
    mode = str(cfg.callbacks.model_checkpoint.get("mode", "max"))
    module = RecLitModule(model, hydra.utils.instantiate(cfg.optimizer), keys, dm.loss_weights,
                          metrics=list(cfg.metrics), best_so_far=(metric, mode) if metric else None)
    module.run_signature = run_signature(flat_config(cfg))
    if cfg.get("slices") is not None:
        module.test_slice_masks = slice_masks(dm.splits["test"], dm.space.user_train_pos, dm.space.item_train_pos,
                                              **cfg.slices)
    ckpt_dir = run_dir / "checkpoints"
    # the best checkpoint(s) test uses: one for all scenarios, or (per-scenario selection) one per scenario
    scenario_ckpts = {k: hydra.utils.instantiate(cfg.callbacks.model_checkpoint, dirpath=str(ckpt_dir),
                                                 monitor=f"val/{k}/{metric}", filename=f"best-{k}-epoch{{epoch:03d}}",
                                                 save_weights_only=True) for k in (keys if metric else [])}
    checkpoint = None if scenario_ckpts else hydra.utils.instantiate(cfg.callbacks.model_checkpoint,
                                                                     dirpath=str(ckpt_dir))
    monitor = f"val/best_so_far/{metric}" if metric else str(cfg.selection.monitor)
    label = keys[0] if cfg.model.mode == "separate" else ""
    callbacks: list[pl.Callback] = [*scenario_ckpts.values(), *([checkpoint] if checkpoint else []),
                                    ThroughputMonitor(), StopOnSignal(), EpochLine(monitor, mode, label=label)]
    if cfg.callbacks.get("latest_checkpoint") is not None:
        callbacks.append(hydra.utils.instantiate(cfg.callbacks.latest_checkpoint, dirpath=str(ckpt_dir)))
    if cfg.callbacks.get("early_stopping") is not None:
        extra = {"monitor": f"val/best_so_far/{metric}"} if metric else {}
        callbacks.append(hydra.utils.instantiate(cfg.callbacks.early_stopping, **extra))
    for cb in cfg.get("extra_callbacks") or []:
        callbacks.append(hydra.utils.instantiate(cb))
    uses_backbone = hasattr(model, "backbone")
    logger = build_logger(cfg, run_dir, loggers, model_label=cfg.model.name,
                          run_name=run_label(cfg, uses_backbone, count_parameters(model)))
    bar = cfg.trainer.get("enable_progress_bar")  # null = a progress bar only when a terminal is attached
    # RunCheckpointIO: every checkpoint read or written is atomic, relocatable and has its paths checked
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=logger,
                                                  default_root_dir=str(run_dir), plugins=[RunCheckpointIO()],
                                                  enable_progress_bar=interactive() if bar is None else bool(bar))
    resume = latest_checkpoint(run_dir) if cfg.get("resume") else None
    if resume is not None:
        check_resumable(resume, module, module.run_signature)
        log.info("resuming from %s", resume)
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=str(resume) if resume else None, weights_only=True)
    fit_seconds = time.perf_counter() - t0
    val_history = list(module.val_history)
    tput = next(cb for cb in callbacks if isinstance(cb, ThroughputMonitor))
    # read now: testing a full best checkpoint restores the callbacks' state as of the best epoch
    train_rows, train_seconds = tput.rows, tput.seconds
    if checkpoint is None:
        test, test_slices, selection, full = evaluate_per_scenario(cfg, trainer, module, dm, scenario_ckpts, run_dir)
    else:
        selection = _selection(checkpoint, trainer, run_dir)
        trainer.test(module, datamodule=dm, ckpt_path=checkpoint.best_model_path, verbose=False, weights_only=True)
        test = module.test_results
        test_slices = module.test_slice_results
        full = full_ranking(cfg, module, dm, keys)
    return {
        "test": test,
        "test_slices": test_slices,
        "test_full_ranking": full,
        "selection": selection,
        "val_history": val_history,
        "num_parameters": count_parameters(model),
        "description": model.description,
        "uses_backbone": uses_backbone,  # mf / popularity ignore backbone= and head=
        "fit_seconds": fit_seconds,
        "train_rows": train_rows,
        "train_seconds": train_seconds,
        "data": dm.stats(),
        "feature_space": dm.space.describe(),
    }


def check_embedding_memory(cfg: DictConfig, space: Any) -> None:
    """Refuse embedding tables (all rows x embedding_dim, with gradients and Adam state) that cannot fit."""
    dim = cfg.backbone.get("embedding_dim")
    if dim is None:
        return
    rows = int(space.num_users) + int(space.num_items) + sum(int(v) for v in space.tables.values())
    ensure_fits(embedding_bytes(rows, int(dim)), "backbone.embedding_dim", dim,
                f"the embedding tables ({rows} rows x embedding_dim x 4 bytes x 4 for gradients and Adam state)")


def run_label(cfg: DictConfig, uses_backbone: bool, num_parameters: int) -> str:
    """Run name: model, backbone and head (for models that use them), parameter count, seed."""
    parts = [str(cfg.model.name), *([str(cfg.backbone_name), str(cfg.head_name)] if uses_backbone else [])]
    return "-".join([*parts, f"p{num_parameters}", f"s{cfg.seed}"])


def _selection(ckpt: Any, trainer: pl.Trainer, run_dir: Path) -> dict[str, Any]:
    if not ckpt.best_model_path:
        raise RuntimeError(f"no checkpoint was selected by {ckpt.monitor!r} (did validation run?)")
    return {"monitor": ckpt.monitor, "mode": ckpt.mode, "best_epoch": _best_epoch(ckpt.best_model_path),
            "best_score": float(ckpt.best_model_score) if ckpt.best_model_score is not None else None,
            "best_checkpoint": os.path.relpath(ckpt.best_model_path, run_dir),
            "epochs_run": trainer.current_epoch, "stopped_early": trainer.should_stop}


def full_ranking(cfg: DictConfig, module: RecLitModule, dm: Any, keys: list[str]) -> dict[str, Any]:
    """Full-ranking test metrics of the module's current (tested) weights for ``keys`` that the config lists."""
    fr = cfg.get("full_ranking") or {}
    return {k: full_ranking_metrics(module.model, dm.splits, dm.scenario_names, k, dm.space.item_scenario,
                                    ks=list(fr.get("ks") or (10, 20)), max_users=fr.get("max_users"),
                                    seed=int(cfg.seed))
            for k in keys if k in (fr.get("scenarios") or [])}


def evaluate_per_scenario(cfg: DictConfig, trainer: pl.Trainer, module: RecLitModule, dm: Any, ckpts: dict[str, Any],
                      run_dir: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Test each scenario on its own best checkpoint; scenarios sharing a checkpoint share one test pass.
    Returns (test metrics, test slice metrics, selection, full-ranking metrics), each keyed by scenario."""
    selection = {k: _selection(cb, trainer, run_dir) for k, cb in ckpts.items()}
    by_path: dict[str, list[str]] = {}
    for k, cb in ckpts.items():
        by_path.setdefault(cb.best_model_path, []).append(k)
    test: dict[str, Any] = {}
    slices: dict[str, Any] = {}
    full: dict[str, Any] = {}
    try:
        for path, group in by_path.items():
            dm.test_scenarios = group
            trainer.test(module, datamodule=dm, ckpt_path=path, verbose=False, weights_only=True)
            test.update({k: module.test_results[k] for k in group})
            slices.update({k: module.test_slice_results[k] for k in group if k in module.test_slice_results})
            full.update(full_ranking(cfg, module, dm, group))
    finally:
        dm.test_scenarios = None
    return {k: test[k] for k in ckpts}, {k: slices[k] for k in ckpts if k in slices}, selection, full


def train(cfg: DictConfig) -> float:
    """Run one job; return the selection metric of the best checkpoint (for sweepers such as Optuna).
    SIGTERM / SIGINT stop it at a safe point (:mod:`unirec_lab.utils.signals`)."""
    with signals_interrupt():
        return _train(cfg)


def _train(cfg: DictConfig) -> float:
    check_config(cfg)
    run_dir = run_dir_of(cfg)
    signature = run_signature(flat_config(cfg))
    if is_resume_dir(cfg.get("resume")) and Path(cfg.paths.output_dir).resolve() != run_dir.resolve():
        raise RunDirError(f"resume={cfg.resume} and hydra.run.dir={cfg.paths.output_dir} name two different run "
                          "dirs; give resume=<run dir> alone")
    if cfg.get("resume"):
        prepare_resume(run_dir, list(cfg.scenarios), cfg.model.mode == "separate", signature, cfg.resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    torch.set_num_threads(int(cfg.get("num_threads") or torch.get_num_threads()))
    keys = list(cfg.scenarios)
    loggers: dict[str, Any] = {}
    try:
        if cfg.model.mode == "separate":
            parts = {}
            for k, sub in part_dirs(run_dir, keys).items():
                done = load_part(sub, signature) if cfg.get("resume") else None  # finished before the crash
                if done is not None:
                    parts[k] = done
                    continue
                pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
                parts[k] = fit_and_test(cfg, [k], sub, loggers)
                if is_rank_zero():
                    atomic_write_json(sub / PART_FILE, {**parts[k], "signature": signature})
            test = {k: parts[k]["test"][k] for k in keys}
            test_slices = {k: parts[k]["test_slices"][k] for k in keys if k in parts[k].get("test_slices", {})}
            full = {k: parts[k]["test_full_ranking"][k] for k in keys if k in parts[k].get("test_full_ranking", {})}
            selection = {k: p["selection"] for k, p in parts.items()}
            n_params = sum(p["num_parameters"] for p in parts.values())
            description = f"per-scenario: {len(keys)} independent models, each " + parts[keys[0]]["description"]
            rows = sum(p["train_rows"] for p in parts.values())
            secs = sum(p["train_seconds"] for p in parts.values())
            data = {k: p["data"][k] for k, p in parts.items()}
            val_history = {k: p["val_history"] for k, p in parts.items()}
            uses_backbone = all(p.get("uses_backbone", True) for p in parts.values())
            best_score = float(sum(p["selection"]["best_score"] for p in parts.values()) / len(parts))
        else:
            part = fit_and_test(cfg, keys, run_dir, loggers)
            test, test_slices, selection = part["test"], part["test_slices"], part["selection"]
            full = part["test_full_ranking"]
            n_params, description = part["num_parameters"], part["description"]
            rows, secs, data, val_history = part["train_rows"], part["train_seconds"], part["data"], part["val_history"]
            uses_backbone = part["uses_backbone"]
            sel = part["selection"]
            best_score = (sel["best_score"] if "monitor" in sel  # else per-scenario selection
                          else float(sum(v["best_score"] for v in sel.values()) / len(sel)))
        wall = time.perf_counter() - t0
        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
        record = {
            "status": "completed",
            "model": cfg.model.name,
            "mode": cfg.model.mode,
            "description": description,
            "run_name": run_label(cfg, uses_backbone, n_params),
            "experiment": cfg.experiment_name,
            "scenarios": keys,
            "seed": int(cfg.seed),
            "overrides": overrides,
            "config": resolved_config(cfg),
            "config_flat": flat_config(cfg),
            "git_sha": git_sha(),
            "packages": package_versions(),
            "selection": selection,
            "test": test,
            "test_slices": test_slices,
            "test_full_ranking": full,
            "val_history": val_history,
            "num_parameters": n_params,
            "wall_seconds": round(wall, 3),
            "train_rows": rows,
            "train_seconds": round(secs, 3),
            "train_samples_per_second": round(rows / secs, 1) if secs > 0 else None,
            "data": data,
        }
        if is_rank_zero():
            write_result(run_dir, record)
            clear_stale_failure(run_dir)
            for lg in loggers.values():
                log_final(lg, record)
            print(result_table(record))
            print(f"wall {wall:.1f}s, train {record['train_samples_per_second']} samples/s, "
                  f"{n_params} parameters -> {run_dir / 'result.json'}")
    finally:
        finish_loggers(loggers)
    return best_score if best_score is not None and math.isfinite(best_score) else float("nan")


def log_final(logger: Any, record: dict[str, Any]) -> None:
    """Per-scenario test metrics as a W&B table + summary (no-op for other loggers)."""
    from unirec_lab.utils.loggers import log_result_table

    log_result_table(logger, record)


def result_table(record: dict[str, Any]) -> str:
    metrics = [m for m in next(iter(record["test"].values())) if m != "rows"]
    rows = [[s, *[v.get(m, float("nan")) for m in metrics], v.get("rows", "")] for s, v in record["test"].items()]
    return f"test metrics — {record['model']} ({record['description']})\n" + markdown_table(
        ["scenario", *metrics, "rows"], rows)


def is_rank_zero() -> bool:
    return getattr(rank_zero_only, "rank", 0) == 0


@hydra.main(version_base="1.3", config_path="pkg://unirec_lab.conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """CLI entry: bad input ends with one line and exit code 2; in a multirun a failed job is recorded
    (``failure.json``) and the sweep goes on."""
    quiet_third_party()
    return run_guarded(train, cfg)


if __name__ == "__main__":
    main()
