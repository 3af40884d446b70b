"""The one way a composed config becomes data and a model: training, explanations, benchmarks and tests all call
:func:`build` (and :func:`build_module` for the LightningModule), so they cannot drift apart."""

from __future__ import annotations

from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from unirec_lab.engine.checkpoints import run_signature
from unirec_lab.engine.config import ConfigError, flat_config
from unirec_lab.engine.module import RecLitModule
from unirec_lab.utils.memory import embedding_bytes, ensure_fits


def build_datamodule(cfg: DictConfig, keys: list[str] | None = None) -> Any:
    """The prepared and set-up data module of ``keys`` (default: every scenario of the config)."""
    keys = list(cfg.scenarios) if keys is None else keys
    scenarios = {k: {"source": hydra.utils.instantiate(cfg.scenarios[k].source),
                     "loss_weight": float(cfg.scenarios[k].get("loss_weight", 1.0)),
                     "history": dict(cfg.scenarios[k].get("history") or {})} for k in keys}
    dm = hydra.utils.instantiate(cfg.data, scenarios=scenarios)
    dm.prepare_data()
    dm.setup()
    return dm


def build_model(cfg: DictConfig, space: Any) -> torch.nn.Module:
    """The model the config wires (``model.builder``) over the data's feature space, after a memory check."""
    check_embedding_memory(cfg, space)
    builder = hydra.utils.instantiate(cfg.model.builder)
    try:
        return builder(space=space, backbone=hydra.utils.instantiate(cfg.backbone),
                       head=hydra.utils.instantiate(cfg.head))
    except TypeError as e:  # a config key the class does not take: the user's overrides, not a bug in our code
        if "unexpected keyword argument" not in str(e):
            raise
        raise ConfigError(f"{e}: a key of model.builder / backbone / head that this class does not take (check "
                          "the overrides; model=sasrec and model=unified_seq set their own backbone)") from None


def build(cfg: DictConfig, keys: list[str] | None = None) -> tuple[Any, torch.nn.Module]:
    """``(datamodule, model)`` for ``keys`` scenarios of a composed config."""
    dm = build_datamodule(cfg, keys)
    return dm, build_model(cfg, dm.space)


def build_module(cfg: DictConfig, model: torch.nn.Module, dm: Any, best_so_far: tuple[str, str] | None = None,
                 ) -> RecLitModule:
    """The LightningModule around ``model``: optimizer, per-scenario loss weights, metrics, config signature."""
    objectives = build_objectives(cfg, dm.space)
    for objective in objectives:
        objective.check(model)
        if getattr(objective, "norm", None) == "epoch":  # next_item: targets per training batch, counted once
            objective.calibrate(dm.splits["train"], len(dm.train_dataloader()))
    sched = cfg.get("scheduler")
    module = RecLitModule(model, hydra.utils.instantiate(cfg.optimizer), list(dm.scenario_names), dm.loss_weights,
                          metrics=list(cfg.metrics), best_so_far=best_so_far, objectives=objectives,
                          scheduler=hydra.utils.instantiate(sched) if sched else None,
                          pooled_metrics=bool(cfg.get("pooled_metrics", False)),
                          pointwise=bool(cfg.model.get("pointwise_loss", True)))
    module.run_signature = run_signature(flat_config(cfg))
    return module


def build_objectives(cfg: DictConfig, space: Any) -> list[Any]:
    """The configured sequence objectives over ``space``. An objective's ``scenarios`` must be selected ones (a typo
    fails here); with ``model.mode=separate`` each model gets the objectives of its own scenario only."""
    out = []
    for name, node in (cfg.get("objectives") or {}).items():
        factory = hydra.utils.instantiate(node)
        wanted = node.get("scenarios")
        if wanted is None:
            out.append(factory(space=space))
            continue
        unknown = sorted(set(wanted) - set(cfg.scenarios))
        if unknown:
            raise ConfigError(f"objectives.{name}.scenarios={unknown}: not among the selected scenarios "
                              f"{list(cfg.scenarios)}")
        here = [s for s in wanted if s in space.scenarios]
        if here:
            out.append(factory(space=space, scenarios=here))
    return out


def check_embedding_memory(cfg: DictConfig, space: Any) -> None:
    """Refuse embedding tables (all rows x embedding_dim, with gradients and Adam state) that cannot fit."""
    dim = cfg.backbone.get("embedding_dim")
    if dim is None:
        return
    rows = int(space.num_users) + int(space.num_items) + sum(int(v) for v in space.tables.values())
    ensure_fits(embedding_bytes(rows, int(dim)), "backbone.embedding_dim", dim,
                f"the embedding tables ({rows} rows x embedding_dim x 4 bytes x 4 for gradients and Adam state)")
