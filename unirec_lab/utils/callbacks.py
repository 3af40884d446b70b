"""Callbacks of our own: training throughput measured on training batches only (validation excluded)."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl


class ThroughputMonitor(pl.Callback):
    """Counts training rows and the wall time spent in training steps (data slicing included)."""

    def __init__(self) -> None:
        self.rows = 0
        self.seconds = 0.0
        self._t: float | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        self.rows += int(batch["label"].shape[0])

    def _stop(self) -> None:
        if self._t is not None:
            self.seconds += time.perf_counter() - self._t
            self._t = None

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop()

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "seconds": self.seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = int(state_dict.get("rows", 0))
        self.seconds = float(state_dict.get("seconds", 0.0))
