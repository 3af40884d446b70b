"""The run recipe: setup -> fit -> select -> evaluate -> record, the one path every training entry point takes.

``model.mode=joint`` trains one model on all selected scenarios; ``model.mode=separate`` runs the same recipe once
per scenario (own sub run dir, data, early stopping and best epoch, same seed), and the parts merge into one
record of the same shape, so the two compare like for like. A finished part is kept in ``part.json`` (with the
config signature) so a resumed separate run does not retrain it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from unirec_lab.engine.build import build, build_module
from unirec_lab.engine.callbacks import EpochLine, ThroughputMonitor
from unirec_lab.engine.checkpoint_io import RunCheckpointIO
from unirec_lab.engine.checkpoints import check_resumable, run_signature
from unirec_lab.engine.config import check_config, flat_config, resolved_config
from unirec_lab.engine.loggers import build_logger, finish_loggers, log_result_table
from unirec_lab.engine.module import RecLitModule
from unirec_lab.engine.resume import PART_FILE, latest_checkpoint, load_part, part_dirs, prepare_resume
from unirec_lab.engine.selection import SelectionPlan
from unirec_lab.engine.signals import StopOnSignal
from unirec_lab.evaluation.full_ranking import full_ranking_metrics
from unirec_lab.evaluation.metrics import POOLED
from unirec_lab.evaluation.slices import slice_masks
from unirec_lab.models.unified import count_parameters
from unirec_lab.results.record import RESULT_FILE, git_sha, package_versions, write_result
from unirec_lab.results.tables import scenario_metrics_table
from unirec_lab.utils.atomic import atomic_write_json
from unirec_lab.utils.console import interactive
from unirec_lab.utils.cpus import default_threads
from unirec_lab.utils.rundir import RunDirError, clear_stale_failure, is_resume_dir, run_dir_of

log = logging.getLogger("unirec_lab.train")


@dataclass
class Part:
    """What one trained model yields (all scenarios jointly, or one scenario in separate mode)."""

    test: dict[str, Any]
    test_slices: dict[str, Any]
    test_full_ranking: dict[str, Any]
    selection: dict[str, Any]  # the record's form: one pick, or {scenario: pick}
    best_scores: list[float | None]  # one per selected checkpoint
    val_history: list[Any]
    num_parameters: int
    description: str
    uses_backbone: bool  # mf / popularity ignore backbone= and head=
    train_rows: int
    train_seconds: float
    data: dict[str, Any]
    feature_space: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Part:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def is_rank_zero() -> bool:
    return getattr(rank_zero_only, "rank", 0) == 0


def run_label(cfg: DictConfig, uses_backbone: bool, num_parameters: int) -> str:
    """Run name: model, backbone and head (for models that use them), parameter count, seed."""
    parts = [str(cfg.model.name), *([str(cfg.backbone_name), str(cfg.head_name)] if uses_backbone else [])]
    return "-".join([*parts, f"p{num_parameters}", f"s{cfg.seed}"])


class RunRecipe:
    """One job of ``unirec-train``; :meth:`run` returns the selection score (what sweepers such as Optuna
    optimise)."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.keys: list[str] = []
        self.run_dir = run_dir_of(cfg)
        self.loggers: dict[str, Any] = {}
        self.signature: dict[str, str] = {}

    # -- setup -------------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Check the config and any resume before touching data; seed; threads."""
        cfg = self.cfg
        check_config(cfg)
        self.keys = list(cfg.scenarios)
        self.signature = run_signature(flat_config(cfg))
        if is_resume_dir(cfg.get("resume")) and Path(cfg.paths.output_dir).resolve() != self.run_dir.resolve():
            raise RunDirError(f"resume={cfg.resume} and hydra.run.dir={cfg.paths.output_dir} name two different "
                              "run dirs; give resume=<run dir> alone")
        if cfg.get("resume"):
            prepare_resume(self.run_dir, self.keys, cfg.model.mode == "separate", self.signature, cfg.resume)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
        torch.set_num_threads(int(cfg.get("num_threads") or default_threads()))

    # -- the whole run -----------------------------------------------------------------------------------------
    def run(self) -> float:
        t0 = time.perf_counter()
        self.setup()
        try:
            if self.cfg.model.mode == "separate":
                parts = {k: self.separate_part(k, sub) for k, sub in part_dirs(self.run_dir, self.keys).items()}
            else:
                parts = {None: self.fit_select_evaluate(self.keys, self.run_dir)}
            record = self.record(parts, time.perf_counter() - t0)
            if is_rank_zero():
                self.publish(record)
        finally:
            finish_loggers(self.loggers)
        scores = [s for p in parts.values() for s in p.best_scores]
        score = sum(scores) / len(scores) if scores and None not in scores else float("nan")
        return score if math.isfinite(score) else float("nan")

    def separate_part(self, key: str, sub: Path) -> Part:
        """Separate mode: one scenario's model, or its ``part.json`` when a resumed run had finished it."""
        done = load_part(sub, self.signature) if self.cfg.get("resume") else None
        if done is not None:
            return Part.from_dict(done)
        pl.seed_everything(int(self.cfg.seed), workers=True, verbose=False)
        part = self.fit_select_evaluate([key], sub)
        if is_rank_zero():
            atomic_write_json(sub / PART_FILE, {**asdict(part), "signature": self.signature})
        return part

    # -- fit, select, evaluate one model -----------------------------------------------------------------------
    def fit_select_evaluate(self, keys: list[str], run_dir: Path) -> Part:
        cfg = self.cfg
        dm, model = build(cfg, keys)
        plan = SelectionPlan.from_cfg(cfg, keys)
        module = build_module(cfg, model, dm, best_so_far=(plan.metric, plan.mode) if plan.per_scenario else None)
        if cfg.get("slices") is not None:
            module.test_slice_masks = slice_masks(dm.splits["test"], dm.space.user_train_pos,
                                                  dm.space.item_train_pos, **cfg.slices,
                                                  item_train_count=dm.space.item_train_count)
        ckpt_dir = run_dir / "checkpoints"
        best = plan.checkpoints(cfg, keys, ckpt_dir)
        throughput = ThroughputMonitor()
        label = keys[0] if cfg.model.mode == "separate" else ""
        callbacks = [*best.values(), throughput, StopOnSignal(), *self.config_callbacks(plan, ckpt_dir, label)]
        uses_backbone = hasattr(model, "backbone")
        logger = build_logger(cfg, run_dir, self.loggers, model_label=cfg.model.name,
                              run_name=run_label(cfg, uses_backbone, count_parameters(model)))
        bar = cfg.trainer.get("enable_progress_bar")  # null = a progress bar only when a terminal is attached
        # RunCheckpointIO: every checkpoint read or written is atomic, relocatable and has its paths checked
        trainer: pl.Trainer = hydra.utils.instantiate(
            cfg.trainer, callbacks=callbacks, logger=logger, default_root_dir=str(run_dir),
            plugins=[RunCheckpointIO()], enable_progress_bar=interactive() if bar is None else bool(bar))
        resume = latest_checkpoint(run_dir) if cfg.get("resume") else None
        if resume is not None:
            check_resumable(resume, module, module.run_signature)
            log.info("resuming from %s", resume)
        trainer.fit(module, datamodule=dm, ckpt_path=str(resume) if resume else None, weights_only=True)
        # read now: testing a full best checkpoint restores the callbacks' state as of the best epoch
        rows, seconds = throughput.rows, throughput.seconds
        picks = plan.picks(best, trainer, run_dir)
        test, slices, full = self.evaluate(trainer, module, dm, {k: cb.best_model_path for k, cb in best.items()})
        return Part(test=test, test_slices=slices, test_full_ranking=full, selection=plan.record(picks),
                    best_scores=[p.best_score for p in picks.values()], val_history=list(module.val_history),
                    num_parameters=count_parameters(model), description=model.description,
                    uses_backbone=uses_backbone, train_rows=rows, train_seconds=seconds, data=dm.stats(),
                    feature_space=dm.space.describe())

    def config_callbacks(self, plan: SelectionPlan, ckpt_dir: Path, label: str) -> list[pl.Callback]:
        """Every ``callbacks.*`` entry but the best-checkpoint template (the selection plan's), plus
        ``extra_callbacks``; the run supplies what only it knows (checkpoint dir, monitor, label)."""
        out = []
        for name, node in self.cfg.callbacks.items():
            if node is None or name == "model_checkpoint":
                continue
            cls = hydra.utils.get_class(node._target_)
            extra: dict[str, Any] = {}
            if issubclass(cls, ModelCheckpoint):
                extra["dirpath"] = str(ckpt_dir)
            if issubclass(cls, EarlyStopping) and plan.per_scenario:
                extra["monitor"] = plan.monitor
            if issubclass(cls, EpochLine):
                extra.update(monitor=plan.monitor, mode=plan.mode, label=label)
            out.append(hydra.utils.instantiate(node, **extra))
        return out + [hydra.utils.instantiate(cb) for cb in self.cfg.get("extra_callbacks") or []]

    def evaluate(self, trainer: pl.Trainer, module: RecLitModule, dm: Any, ckpt_paths: dict[str | None, str],
                 ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """Test on the selected checkpoint(s): all scenarios on the one (``{None: path}``), or each scenario on
        its own; scenarios sharing a checkpoint share one test pass. Returns (test, slices, full ranking)."""
        by_path: dict[str, list[str] | None] = {}
        for k, path in ckpt_paths.items():
            by_path[path] = None if k is None else [*(by_path.get(path) or []), k]
        test: dict[str, Any] = {}
        slices: dict[str, Any] = {}
        full: dict[str, Any] = {}
        for path, group in by_path.items():
            loader = dm.test_dataloader() if group is None else dm.test_loader(group)
            trainer.test(module, dataloaders=loader, ckpt_path=path, verbose=False, weights_only=True)
            keys = list(dm.scenario_names) if group is None else group
            test.update({k: module.test_results[k] for k in keys})
            if group is None and POOLED in module.test_results:  # one checkpoint for all: its pooled metrics
                test[POOLED] = module.test_results[POOLED]
            slices.update({k: module.test_slice_results[k] for k in keys if k in module.test_slice_results})
            full.update(self.full_ranking(module, dm, keys))
        order = list(dm.scenario_names)
        return ({k: test[k] for k in [*order, POOLED] if k in test}, {k: slices[k] for k in order if k in slices},
                {k: full[k] for k in order if k in full})

    def full_ranking(self, module: RecLitModule, dm: Any, keys: list[str]) -> dict[str, Any]:
        """Full-ranking metrics of the module's current (tested) weights for the ``keys`` the config lists."""
        fr = self.cfg.get("full_ranking") or {}
        return {k: full_ranking_metrics(module.model, dm.splits, dm.scenario_names, k, dm.space.item_scenario_of(k),
                                        ks=list(fr.get("ks") or (10, 20)), max_users=fr.get("max_users"),
                                        seed=int(self.cfg.seed), candidates=fr.get("candidates"))
                for k in keys if k in (fr.get("scenarios") or [])}

    # -- record ------------------------------------------------------------------------------------------------
    def record(self, parts: dict[str | None, Part], wall: float) -> dict[str, Any]:
        """The ``result.json`` content: one part (joint) or the scenarios' parts merged (separate)."""
        cfg, keys = self.cfg, self.keys
        separate = None not in parts
        merged = {name: {k: getattr(p, name)[k] for p in parts.values() for k in getattr(p, name)}
                  for name in ("test", "test_slices", "test_full_ranking", "data")}
        rows = sum(p.train_rows for p in parts.values())
        secs = sum(p.train_seconds for p in parts.values())
        n_params = sum(p.num_parameters for p in parts.values())
        first = next(iter(parts.values()))
        description = (f"per-scenario: {len(keys)} independent models, each {first.description}" if separate
                       else first.description)
        uses_backbone = all(p.uses_backbone for p in parts.values())
        return {
            "status": "completed", "model": cfg.model.name, "mode": cfg.model.mode, "description": description,
            "run_name": run_label(cfg, uses_backbone, n_params), "experiment": cfg.experiment_name,
            "scenarios": keys, "seed": int(cfg.seed),
            "overrides": list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else [],
            "config": resolved_config(cfg), "config_flat": flat_config(cfg), "git_sha": git_sha(),
            "packages": package_versions(),
            "selection": {k: p.selection for k, p in parts.items()} if separate else first.selection,
            "test": {k: merged["test"][k] for k in [*keys, POOLED] if k in merged["test"]},
            "test_slices": {k: merged["test_slices"][k] for k in keys if k in merged["test_slices"]},
            "test_full_ranking": {k: merged["test_full_ranking"][k] for k in keys
                                  if k in merged["test_full_ranking"]},
            "val_history": {k: p.val_history for k, p in parts.items()} if separate else first.val_history,
            "num_parameters": n_params, "wall_seconds": round(wall, 3), "train_rows": rows,
            "train_seconds": round(secs, 3),
            "train_samples_per_second": round(rows / secs, 1) if secs > 0 else None,
            "data": {k: merged["data"][k] for k in keys},
        }

    def publish(self, record: dict[str, Any]) -> None:
        """Write ``result.json`` (atomically), clear a stale failure, log the final table, print the summary."""
        write_result(self.run_dir, record)
        clear_stale_failure(self.run_dir)
        for lg in self.loggers.values():
            log_result_table(lg, record)
        print(scenario_metrics_table(record["model"], record["description"], record["test"]))
        print(f"wall {record['wall_seconds']:.1f}s, train {record['train_samples_per_second']} samples/s, "
              f"{record['num_parameters']} parameters -> {self.run_dir / RESULT_FILE}")
