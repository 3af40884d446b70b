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

