"""SIGTERM / SIGINT end a run at a safe point, as a :class:`RunInterrupted` the guard records and reports.

While training, the handler only raises a flag and :class:`StopOnSignal` raises at the next batch boundary (so a
checkpoint being written is finished first; ``latest.ckpt`` of the last finished epoch is what a resume continues
from). Lightning's own SIGTERM handling (which ends ``fit`` with a ``SIGTERMException``, exit status 0) is
turned into the same :class:`RunInterrupted`. Outside training (data preparation, test) the handler raises at once: there is nothing half-written to
protect (every file is written atomically). A second signal while stopping raises at once too.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

HANDLED = (signal.SIGTERM, signal.SIGINT)


class RunInterrupted(Exception):  # noqa: N818 - it is a request, not an error
    """The run was stopped by a signal; ``exit_code`` is the shell convention 128 + signal number."""

    def __init__(self, signum: int, where: str) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {self.signal_name} {where}")


class _State:
    pending: int | None = None
    deferred = False  # True while training: raise at the next batch boundary instead of inside the handler
    where = "(outside training)"


_state = _State()


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state.deferred and _state.pending is None:
        _state.pending = signum
        return
    raise RunInterrupted(signum, _state.where if not _state.deferred else "(second signal)")


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """Install the handlers for the duration of a run (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _handler) for s in HANDLED}
    _state.pending, _state.deferred, _state.where = None, False, "(outside training)"
    try:
        yield
    except SIGTERMException:  # Lightning stopped fit on SIGTERM at its own safe point
        raise RunInterrupted(signal.SIGTERM, _state.where) from None
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _state.pending, _state.deferred = None, False


class StopOnSignal(pl.Callback):
    """Defers signals during ``fit`` and turns a pending one into :class:`RunInterrupted` between batches."""

    def _check(self, trainer: pl.Trainer) -> None:
        if _state.pending is not None:
            signum, _state.pending = _state.pending, None
            _state.deferred = False
            raise RunInterrupted(signum, _state.where)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _state.deferred = True

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _state.deferred = False
        self._check(trainer)
        _state.where = "(after training)"

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        _state.deferred = False

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._check(trainer)

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._check(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _state.where = f"during epoch {trainer.current_epoch}"
        self._check(trainer)
