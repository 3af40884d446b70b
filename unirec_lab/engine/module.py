"""``RecLitModule``: one LightningModule for every model (unified, per-scenario, baselines).

Loss: ``sum_s w_s * BCE_s / sum_s w_s`` over the scenarios present in the batch, where ``BCE_s`` is the mean
over scenario ``s``'s rows, so a small scenario is not drowned by a big one within a mixed batch. Metrics are
logged as ``<stage>/<scenario>/<metric>`` plus ``<stage>/mean/<metric>`` (unweighted mean over scenarios),
which drives checkpointing and early stopping (``val/mean/auc``). With per-scenario selection the module also
logs ``val/best_so_far/<metric>``: the mean over scenarios of each scenario's best value so far, which rises
exactly when some scenario improved, so early stopping waits for the last scenario still improving.

``objectives``: sequence objectives (``unirec_lab.models.objectives``: next item, next response at every history
position), each ``weight * loss`` on its scenarios' rows, added to the pointwise loss (none by default).
``pointwise=False`` drops the pointwise BCE, so the objectives alone train the model (SASRec's own loss).
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from unirec_lab.evaluation.metrics import ScenarioEvaluator
from unirec_lab.evaluation.slices import slice_metrics

Batch = dict[str, torch.Tensor]
# epoch metrics are computed from rows gathered across ranks, so every rank logs the same value already
warnings.filterwarnings("ignore", message=r".*when logging on epoch level in distributed setting.*")


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; the message says at which step and for which scenario."""


class RecLitModule(pl.LightningModule):
    def __init__(self, model: nn.Module, optimizer: Callable[..., torch.optim.Optimizer],
                 scenario_names: Sequence[str], loss_weights: Mapping[str, float] | None = None,
                 metrics: Sequence[str] = ("auc", "logloss", "gauc", "ndcg@10"),
                 scheduler: Callable[..., Any] | None = None, best_so_far: tuple[str, str] | None = None,
                 objectives: Sequence[Callable[[nn.Module, Batch], torch.Tensor]] = (),
                 pooled_metrics: bool = False, pointwise: bool = True) -> None:
        """``best_so_far=(metric, "max"|"min")`` logs ``val/best_so_far/<metric>`` (per-scenario selection);
        ``pooled_metrics`` logs ``<stage>/all/<metric>`` over all scenarios' rows together too."""
        super().__init__()
        if best_so_far is not None and (best_so_far[0] not in metrics or best_so_far[1] not in ("max", "min")):
            raise ValueError(f"best_so_far={best_so_far}: expected (one of {list(metrics)}, 'max' or 'min')")
        self.best_so_far = best_so_far
        self.model = model
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scenario_names = list(scenario_names)
        self.objectives = list(objectives)
        if not pointwise and not self.objectives:
            raise ValueError("model.pointwise_loss=false needs at least one sequence objective (objectives=...): "
                             "otherwise nothing trains the model")
        self.pointwise = bool(pointwise)
        w = [float((loss_weights or {}).get(s, 1.0)) for s in self.scenario_names]
        if any(x < 0 or not math.isfinite(x) for x in w) or sum(w) <= 0:
            raise ValueError(f"loss weights {dict(zip(self.scenario_names, w))}: expected finite, >= 0, not all 0")
        self.register_buffer("loss_weights", torch.tensor(w), persistent=False)
        self.metric_names = list(metrics)
        self.val_eval = ScenarioEvaluator(self.scenario_names, self.metric_names, pooled=pooled_metrics)
        self.test_eval = ScenarioEvaluator(self.scenario_names, self.metric_names, pooled=pooled_metrics)
        self.test_results: dict[str, dict[str, float]] = {}
        self.val_history: list[dict[str, Any]] = []
        self.train_rows_seen = 0
        self.run_signature: dict[str, str] | None = None  # set by train.py; checked before resuming
        # set by train.py: cold/warm masks over the test split's rows -> test_slice_results after a test
        self.test_slice_masks: dict[str, Any] | None = None
        self.test_slice_results: dict[str, dict[str, dict[str, float]]] = {}

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.model(batch)

    def scenario_losses(self, logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean BCE per scenario ``[S]`` and the row counts ``[S]``."""
        per_row = F.binary_cross_entropy_with_logits(logits, batch["label"], reduction="none")
        s = batch["scenario"]
        n = len(self.scenario_names)
        sums = torch.zeros(n, device=logits.device, dtype=per_row.dtype).index_add(0, s, per_row)
        counts = torch.bincount(s, minlength=n).to(per_row.dtype)
        return sums / counts.clamp(min=1), counts

    def loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(weighted training loss over the scenarios present in the batch, per-scenario BCE, row counts): the
        objective of ``training_step``, also what the plain-loop benchmarks step on. With sequence objectives and
        the pointwise loss, the history encoder runs once for both (the backbone's ``shared_sequence_pass``)."""
        bb = getattr(self.model, "backbone", None)
        if self.objectives and self.pointwise and hasattr(bb, "shared_sequence_pass") \
                and hasattr(bb.history_encoder, "sequence_outputs"):
            with bb.shared_sequence_pass(batch):
                return self._loss(batch)
        return self._loss(batch)

    def _loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.pointwise:
            per_s, counts = self.scenario_losses(self.model(batch), batch)
            w = self.loss_weights * (counts > 0)
            total = (w * per_s).sum() / w.sum().clamp(min=1e-12)
        else:  # no forward pass over the rows: the objectives compute what they need
            counts = torch.bincount(batch["scenario"], minlength=len(self.scenario_names)).float()
            per_s = torch.zeros(len(self.scenario_names), device=counts.device)
            total = per_s.sum()
        for objective in self.objectives:
            total = total + objective(self.model, batch)
        return total, per_s, counts

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss, per_s, counts = self.loss(batch)
        if not torch.isfinite(loss):
            bad = [self.scenario_names[i] for i in range(len(per_s)) if counts[i] > 0 and not torch.isfinite(per_s[i])]
            raise NonFiniteLossError(f"non-finite training loss {loss.item()} at epoch {self.current_epoch}, "
                                     f"step {self.global_step}, scenario(s) {bad or self.scenario_names}")
        self.train_rows_seen += int(batch["label"].shape[0])
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=False, batch_size=len(batch["label"]))
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self.val_eval.update(batch, self.model(batch))

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self.test_eval.update(batch, self.model(batch))

    def on_validation_epoch_start(self) -> None:
        self.val_eval.reset()

    def on_test_epoch_start(self) -> None:
        self.test_eval.reset()

    def _finish(self, stage: str, ev: ScenarioEvaluator) -> dict[str, dict[str, float]]:
        data = ev.gathered()
        ev.reset()
        res = ev.compute_from(data)
        if stage == "test" and self.test_slice_masks is not None:
            self.test_slice_results = slice_metrics(data, self.test_slice_masks, self.scenario_names, ev.metrics)
        flat: dict[str, float] = {}
        for scen, vals in res.items():
            for m, v in vals.items():
                if m != "rows":
                    flat[f"{stage}/{scen}/{m}"] = float(v)
        for m in self.metric_names:
            vals = [res[s][m] for s in self.scenario_names if s in res and math.isfinite(res[s][m])]
            flat[f"{stage}/mean/{m}"] = float(sum(vals) / len(vals)) if vals else float("nan")
        # every rank computed the same gathered values; log without another reduction
        self.log_dict(flat, on_step=False, on_epoch=True, sync_dist=False, rank_zero_only=False)
        return res

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self.val_eval.reset()
            return
        res = self._finish("val", self.val_eval)
        self.val_history.append({"epoch": self.current_epoch, "metrics": res})
        if self.best_so_far is not None:
            self.log(f"val/best_so_far/{self.best_so_far[0]}", self.best_so_far_value(), on_step=False,
                     on_epoch=True, sync_dist=False, rank_zero_only=False)

    def best_so_far_value(self) -> float:
        """Mean over scenarios of each one's best validation value in ``val_history`` (NaN epochs ignored)."""
        metric, mode = self.best_so_far or ("auc", "max")
        pick = max if mode == "max" else min
        best = []
        for s in self.scenario_names:
            vals = [h["metrics"][s][metric] for h in self.val_history
                    if s in h["metrics"] and math.isfinite(h["metrics"][s][metric])]
            if vals:
                best.append(pick(vals))
        return float(sum(best) / len(best)) if best else float("nan")

    def on_test_epoch_end(self) -> None:
        self.test_results = self._finish("test", self.test_eval)

    def configure_optimizers(self) -> Any:
        opt = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=opt),
                                                   "interval": "epoch"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # RNG state makes a resumed run continue exactly (dropout masks); all plain types: weights_only loads
        checkpoint["unirec"] = {"val_history": self.val_history, "train_rows_seen": self.train_rows_seen,
                                "signature": self.run_signature, "torch_rng": torch.get_rng_state(),
                                "python_rng": list(random.getstate()[1])}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("unirec", {})
        if self._trainer is not None and self.trainer.state.fn != "fit":
            return  # testing a checkpoint must not rewind the run's history
        self.val_history = list(state.get("val_history", []))
        self.train_rows_seen = int(state.get("train_rows_seen", 0))
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        if "python_rng" in state:
            random.setstate((3, tuple(state["python_rng"]), None))
