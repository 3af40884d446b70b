"""Experiment loggers: CSV (default) and W&B (one run per job, grouped and tagged, always finished)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from unirec_lab.engine.config import flat_config

log = logging.getLogger(__name__)


def build_logger(cfg: DictConfig, run_dir: Path, cache: dict[str, Any], model_label: str,
                 run_name: str | None = None) -> Any:
    """Instantiate ``cfg.logger``. A W&B logger is created once per job and reused by its sub-runs."""
    if cfg.get("logger") is None or not cfg.logger.get("_target_"):
        return False
    target = str(cfg.logger.get("_target_", ""))
    if target.endswith("WandbLogger"):
        if "wandb" not in cache:
            tags = sorted({*cfg.scenarios, model_label, *(cfg.logger.get("extra_tags") or [])})
            kwargs = {k: v for k, v in cfg.logger.items() if k != "extra_tags"}
            Path(kwargs["save_dir"]).mkdir(parents=True, exist_ok=True)
            factory = hydra.utils.instantiate(kwargs, _partial_=True, _convert_="all")
            extra = {"name": run_name} if run_name else {}  # model, backbone, head, parameter count, seed
            cache["wandb"] = factory(tags=tags, config=flat_config(cfg), **extra)
        return cache["wandb"]
    lg = hydra.utils.instantiate(cfg.logger, save_dir=str(run_dir))
    cache[f"csv:{run_dir}"] = lg
    return lg


def log_result_table(logger: Any, record: dict[str, Any]) -> None:
    """The final per-scenario test metrics as a ``wandb.Table`` and in the run summary."""
    if type(logger).__name__ != "WandbLogger":
        return
    import wandb

    metrics = sorted({m for v in record["test"].values() for m in v})
    table = wandb.Table(columns=["model", "scenario", *metrics])
    for scen, vals in record["test"].items():
        table.add_data(record["model"], scen, *[vals.get(m) for m in metrics])
    run = logger.experiment
    run.log({"test/table": table})
    for scen, vals in record["test"].items():
        for m, v in vals.items():
            run.summary[f"test/{scen}/{m}"] = v
    run.summary["num_parameters"] = record["num_parameters"]
    run.summary["train_samples_per_second"] = record["train_samples_per_second"]
    run.summary["description"] = record["description"]


def finish_loggers(cache: dict[str, Any]) -> None:
    """Always close W&B runs (even on failure), so sweeps never leave a run hanging."""
    lg = cache.pop("wandb", None)
    if lg is None:
        return
    try:
        import wandb

        if getattr(lg, "_experiment", None) is not None:
            lg.experiment.finish()
        wandb.finish()
    except Exception as e:  # noqa: BLE001 - finishing must never mask the real error
        log.warning("wandb.finish failed: %s", e)
