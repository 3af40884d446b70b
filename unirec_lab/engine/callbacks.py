"""Callbacks of our own: training throughput (training batches only, validation excluded) and the one concise
console line per epoch (readable in a log file under nohup or SLURM)."""

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


def _fmt_rate(x: float) -> str:
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


def _fmt_secs(s: float) -> str:
    s = max(0.0, s)
    if s < 60:
        return f"{s:.0f}s"
    m, s = divmod(int(round(s)), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


class EpochLine(pl.Callback):
    """After each validation: ``epoch 2 [3/10] | loss 0.4123 | 51.2k samples/s | val/mean/auc 0.7123 (ecommerce
    0.7301, news 0.5402) | best 0.7150 @ epoch 1 | 1m02s, ETA <= 2m30s`` (ETA assumes no early stop)."""

    def __init__(self, monitor: str, mode: str = "max", label: str = "") -> None:
        self.monitor = monitor
        self.sign = 1.0 if mode == "max" else -1.0
        self.label = label
        self._t0: float | None = None
        self._start_epoch = 0
        self._epoch_t: float | None = None
        self._rows = 0
        self._loss_sum = 0.0
        self._train_secs = 0.0
        self._best: tuple[float, int] | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = time.perf_counter()
        self._start_epoch = trainer.current_epoch  # > 0 when resumed: those epochs do not count for the ETA

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_t = time.perf_counter()
        self._rows = 0
        self._loss_sum = 0.0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        n = int(batch["label"].shape[0])
        self._rows += n
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._loss_sum += float(loss) * n

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._epoch_t is not None:
            self._train_secs = time.perf_counter() - self._epoch_t

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # on_validation_end, not ..._epoch_end: only then has the epoch's logged metrics reached callback_metrics
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        print(self.line(trainer), flush=True)

    def line(self, trainer: pl.Trainer) -> str:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
        epoch, max_epochs = trainer.current_epoch, trainer.max_epochs
        # epochs are 0-based as in checkpoint names and result.json; [done/max] for the eye
        parts = [f"{self.label + ' ' if self.label else ''}epoch {epoch} [{epoch + 1}/{max_epochs}]"]
        if self._rows:
            parts.append(f"loss {self._loss_sum / self._rows:.4f}")  # row-weighted mean over the epoch
        if self._train_secs > 0:
            parts.append(f"{_fmt_rate(self._rows / self._train_secs)} samples/s")
        value = metrics.get(self.monitor)
        if value is not None:
            stage, _, metric = self.monitor.partition("/")
            name = metric.split("/", 1)[-1]
            per = [(k.split("/")[1], v) for k, v in metrics.items()
                   if k.startswith(f"{stage}/") and k.endswith(f"/{name}") and k.count("/") == 2
                   and k != self.monitor and k.split("/")[1] not in ("mean", "best_so_far")]
            inner = f" ({', '.join(f'{s} {v:.4f}' for s, v in per)})" if per else ""
            parts.append(f"{self.monitor} {value:.4f}{inner}")
            if self._best is None or self.sign * value > self.sign * self._best[0]:
                self._best = (value, epoch)
            parts.append(f"best {self._best[0]:.4f} @ epoch {self._best[1]}")
        elapsed = time.perf_counter() - (self._t0 or time.perf_counter())
        remaining = max(0, (max_epochs or 0) - (epoch + 1))
        eta = elapsed / max(1, epoch + 1 - self._start_epoch) * remaining
        parts.append(f"{_fmt_secs(elapsed)}, ETA <= {_fmt_secs(eta)}")
        return " | ".join(parts)
