"""Test-only callbacks, instantiated through ``extra_callbacks`` like any user callback."""

from __future__ import annotations

import pytorch_lightning as pl
import torch


class SabotageAfterEpoch(pl.Callback):
    """From ``epoch`` on, replace every weight with noise and freeze it: later epochs validate badly, so a
    correct pipeline must select and test an earlier checkpoint, never the last weights."""

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch < self.epoch:
            return
        g = torch.Generator().manual_seed(trainer.current_epoch)
        with torch.no_grad():
            for p in pl_module.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 3.0)
        for opt in trainer.optimizers:
            for group in opt.param_groups:
                group["lr"] = 0.0



class KillAtStep(pl.Callback):
    """SIGKILL this process after global step ``step``: a crash nothing can clean up after."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)


class NaNAtStep(pl.Callback):
    """Poison one weight with NaN before global step ``step`` (to exercise the non-finite loss guard)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))


def evaluate_checkpoint(ckpt, cfg, metrics=("auc",)) -> dict:
    """Recompute test metrics from a checkpoint file in this process, independently of the trainer."""
    from unirec_lab.engine.build import build, build_module
    from unirec_lab.evaluation.metrics import ScenarioEvaluator

    keys = list(cfg.scenarios)
    dm, model = build(cfg, keys)
    module = build_module(cfg, model, dm)
    module.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"])
    module.eval()
    ev = ScenarioEvaluator(keys, list(metrics))
    with torch.no_grad():
        for b in dm.test_dataloader():
            ev.update(b, module(b))
    return ev.compute_from(ev.gathered())


class SignalAtStep(pl.Callback):
    """Send this process ``signal`` (a name, e.g. SIGTERM) after global step ``step``: a user's Ctrl-C / a
    scheduler's SIGTERM arriving mid-epoch."""

    def __init__(self, step: int, signal: str = "SIGTERM") -> None:
        self.step, self.signal = step, signal
        self.sent = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step and not self.sent:
            import os
            import signal

            self.sent = True
            os.kill(os.getpid(), getattr(signal, self.signal))


class DiskFullOnSave(pl.Callback):
    """From fit start, every checkpoint write writes a few bytes and then fails with ENOSPC (a full disk)."""

    def on_fit_start(self, trainer, pl_module) -> None:
        import errno

        def failing(checkpoint):
            def write(f):
                f.write(b"partial checkpoint bytes")
                raise OSError(errno.ENOSPC, "No space left on device")
            return write

        trainer.strategy.checkpoint_io._writer = failing
