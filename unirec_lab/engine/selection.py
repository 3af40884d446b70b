"""Model selection as a typed plan: which checkpoint(s) a run keeps and tests, and what it records about them.

``scope: global`` keeps one best checkpoint (``selection.monitor``) for every scenario; ``scope: per_scenario``
(joint models with several scenarios) keeps one weights-only checkpoint per scenario (best
``val/<scenario>/<metric>``) and stops early on ``val/best_so_far/<metric>``. The best epoch is recorded by the
checkpoint callback when it saves, never parsed back out of a file name.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint

from unirec_lab.engine.config import selection_metric


class SelectionCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that also remembers the epoch of its best checkpoint (saved with its state)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.best_epoch: int | None = None

    @property
    def state_key(self) -> str:  # the stock class's key, so checkpoints of either class resume alike
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    # Lightning saves at the end of the training epoch or of validation (whichever its schedule says): track both
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        before = self.best_model_path
        super().on_train_epoch_end(trainer, pl_module)
        self._track(trainer, before)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        before = self.best_model_path
        super().on_validation_end(trainer, pl_module)
        self._track(trainer, before)

    def _track(self, trainer: pl.Trainer, before: str) -> None:
        if self.best_model_path and self.best_model_path != before:
            self.best_epoch = trainer.current_epoch

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        epoch = state_dict.get("best_epoch")
        self.best_epoch = int(epoch) if isinstance(epoch, int) else None


@dataclass(frozen=True)
class Pick:
    """One selected checkpoint, as ``result.json`` records it (``selection`` or ``selection.<scenario>``)."""

    monitor: str
    mode: str
    best_epoch: int | None
    best_score: float | None
    best_checkpoint: str  # relative to the run dir
    epochs_run: int
    stopped_early: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SelectionPlan:
    """What to select on: ``metric`` is set for per-scenario selection (``val/<scenario>/<metric>``)."""

    scope: str
    mode: str
    monitor: str  # the early-stopping / epoch-line monitor
    metric: str | None = None

    @classmethod
    def from_cfg(cls, cfg: DictConfig, keys: list[str]) -> SelectionPlan:
        mode = str(cfg.callbacks.model_checkpoint.get("mode", "max"))
        if cfg.selection.get("scope", "global") == "per_scenario" and len(keys) > 1:
            metric = selection_metric(cfg)
            return cls("per_scenario", mode, f"val/best_so_far/{metric}", metric)
        return cls("global", mode, str(cfg.selection.monitor))

    @property
    def per_scenario(self) -> bool:
        return self.metric is not None

    def checkpoints(self, cfg: DictConfig, keys: list[str], ckpt_dir: Path) -> dict[str | None, ModelCheckpoint]:
        """The best-checkpoint callbacks: ``{None: one}`` (global) or ``{scenario: one each}``."""
        if not self.per_scenario:
            return {None: hydra.utils.instantiate(cfg.callbacks.model_checkpoint, dirpath=str(ckpt_dir))}
        return {k: hydra.utils.instantiate(cfg.callbacks.model_checkpoint, dirpath=str(ckpt_dir),
                                           monitor=f"val/{k}/{self.metric}", filename=f"best-{k}-epoch{{epoch:03d}}",
                                           save_weights_only=True) for k in keys}

    def picks(self, ckpts: dict[str | None, ModelCheckpoint], trainer: pl.Trainer,
              run_dir: Path) -> dict[str | None, Pick]:
        return {k: _pick(cb, trainer, run_dir) for k, cb in ckpts.items()}

    def record(self, picks: dict[str | None, Pick]) -> dict[str, Any]:
        """``selection`` in result.json: one pick's fields (global) or ``{scenario: fields}``."""
        if not self.per_scenario:
            return picks[None].to_dict()
        return {k: p.to_dict() for k, p in picks.items()}


def _pick(cb: ModelCheckpoint, trainer: pl.Trainer, run_dir: Path) -> Pick:
    if not cb.best_model_path:
        raise RuntimeError(f"no checkpoint was selected by {cb.monitor!r} (did validation run?)")
    return Pick(monitor=str(cb.monitor), mode=str(cb.mode), best_epoch=getattr(cb, "best_epoch", None),
                best_score=float(cb.best_model_score) if cb.best_model_score is not None else None,
                best_checkpoint=os.path.relpath(cb.best_model_path, run_dir), epochs_run=trainer.current_epoch,
                stopped_early=bool(trainer.should_stop))


def tested_checkpoint(record: Any, run_dir: Path, scenario: str) -> tuple[Path | None, list[str]]:
    """(checkpoint file the run tested ``scenario`` with, scenarios its model was trained on), read from a
    :class:`~unirec_lab.results.record.RunRecord` by the run's own mode and selection scope."""
    sel = record.selection or {}
    if record.mode == "separate":
        pick, keys, base = sel.get(scenario), [scenario], run_dir / "per_scenario" / scenario
    else:
        keys = list(record.scenarios)
        scope = ((record.config or {}).get("selection") or {}).get("scope", "global")
        pick, base = (sel.get(scenario) if scope == "per_scenario" and len(keys) > 1 else sel), run_dir
    if not isinstance(pick, dict) or not isinstance(pick.get("best_checkpoint"), str):
        return None, keys
    return base / pick["best_checkpoint"], keys
