"""Sequence objectives, added to the pointwise BCE by ``RecLitModule``: a loss at every history position.

- :class:`NextItemObjective`: the state after position ``t`` predicts the next positive item (entry ``t + 1``,
  or the row's own item when the row is a positive), SASRec's way (``loss="bce"``: one uniformly sampled negative
  per position) or as a sampled softmax over shared negatives drawn from the train popularity with the logQ
  correction (``loss="sampled_softmax"``; Yi et al., RecSys 2019). The score is ``<state, item>``.
- :class:`NextResponseObjective`: knowledge tracing's next-response loss; the state after position ``t`` and the
  next entry's item (never its feedback) are scored by the model's own trunk and head, against the feedback the
  user gave (correct / incorrect, click / skip).

Each objective is ``weight * loss`` over the rows of its ``scenarios`` (null: all). The loss functions are plain
tensor functions so that tests can check them against hand computations.

``norm`` (next item): ``batch`` averages over the batch's own targets; ``epoch`` sums them and divides by the mean
number of targets per training batch of the epoch (counted once by :meth:`NextItemObjective.calibrate`), so every
target weighs the same whatever its batch-mates (with length-bucketed batches a per-batch mean would weigh each
target of a short-sequence batch several times more: the SASRec reproduction measured it learning markedly slower).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from unirec_lab.features import FeatureSpace

Batch = dict[str, torch.Tensor]
ACTION_POSITIVE = 2  # unirec_lab.data.history (the data layer is a sibling: not imported)


def next_item_bce(states: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, valid: torch.Tensor,
                  denominator: float | None = None) -> torch.Tensor:
    """SASRec's loss: mean over valid positions of ``-log s(<h, pos>) - log(1 - s(<h, neg>))`` (or their sum
    divided by ``denominator``).

    ``states``, ``pos``, ``neg``: ``[..., d]``; ``valid``: ``[...]`` bool. Zero when nothing is valid."""
    lp = (states * pos).sum(-1)
    ln = (states * neg).sum(-1)
    per = F.softplus(-lp) + F.softplus(ln)
    v = valid.to(per.dtype)
    return (per * v).sum() / (v.sum().clamp(min=1.0) if denominator is None else denominator)


def sampled_softmax_logq(states: torch.Tensor, pos: torch.Tensor, negs: torch.Tensor, pos_logq: torch.Tensor,
                         neg_logq: torch.Tensor, valid: torch.Tensor,
                         accidental: torch.Tensor | None = None) -> torch.Tensor:
    """Sampled softmax with logQ correction: mean over valid positions ``p`` of the cross-entropy of the positive
    among ``[pos_p, negs]`` with logits ``<h_p, v> - log Q(v)``.

    ``states``/``pos`` ``[P, d]``, ``negs`` ``[N, d]``, ``pos_logq`` ``[P]``, ``neg_logq`` ``[N]``, ``valid``
    ``[P]``; ``accidental`` ``[P, N]`` True where a negative is the position's positive (its logit is dropped)."""
    lp = (states * pos).sum(-1) - pos_logq
    ln = states @ negs.T - neg_logq.unsqueeze(0)
    if accidental is not None:
        ln = ln.masked_fill(accidental, float("-inf"))
    per = torch.logsumexp(torch.cat([lp.unsqueeze(1), ln], 1), 1) - lp
    v = valid.to(per.dtype)
    return (per * v).sum() / v.sum().clamp(min=1.0)


def next_response_bce(logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean BCE of the next responses over the valid positions (zero when nothing is valid)."""
    per = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none")
    v = valid.to(per.dtype)
    return (per * v).sum() / v.sum().clamp(min=1.0)


class SequenceObjective(ABC):
    """Shared plumbing: the weight, which scenarios it applies to, the model's per-position states."""

    name = "sequence"

    def __init__(self, space: FeatureSpace, weight: float = 1.0, scenarios: Sequence[str] | None = None) -> None:
        if not float(weight) >= 0:
            raise ValueError(f"objectives: {self.name} weight={weight}, expected a number >= 0")
        unknown = sorted(set(scenarios or []) - set(space.scenarios))
        if unknown:
            raise ValueError(f"objectives: {self.name} scenarios={unknown}: not among the selected {space.scenarios}")
        self.weight = float(weight)
        self.space = space
        names = space.scenarios if scenarios is None else list(scenarios)
        self.scenario_mask = torch.tensor([s in names for s in space.scenarios])

    def rows(self, batch: Batch) -> torch.Tensor:
        return self.scenario_mask.to(batch["scenario"].device)[batch["scenario"]]

    @staticmethod
    def backbone(model: nn.Module) -> nn.Module:
        bb = getattr(model, "backbone", None)
        if bb is None or not hasattr(bb, "sequence_states"):
            raise ValueError(f"sequence objectives need a model with a sequence backbone, got {type(model).__name__}")
        return bb

    def check(self, model: nn.Module) -> None:
        """Fail at build time, not at the first step, when ``model`` cannot serve this objective."""
        enc = getattr(self.backbone(model), "history_encoder", None)
        if not hasattr(enc, "sequence_outputs"):
            raise ValueError(f"history encoder {type(enc).__name__} has no per-position states; sequence objectives "
                             "need backbone=sasrec or backbone=lstm")
        if self.name == "next_response" and getattr(model, "head", None) is None:
            raise ValueError(f"objectives: next_response needs a model with scenario heads, got {type(model).__name__}")

    def __call__(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        keep = self.rows(batch)
        if not bool(keep.any()):
            return batch["label"].new_zeros(())
        everything = bool(keep.all())
        sub = batch if everything else {k: v[keep] for k, v in batch.items()}
        # the step's shared encoder pass (RecLitModule) covers the whole batch: take this objective's rows of it
        seq = self.backbone(model).cached_sequence_states(batch)
        if seq is not None and not everything:
            seq = {k: v[keep] for k, v in seq.items()}
        return self.weight * self.loss(model, sub, seq)

    @abstractmethod
    def loss(self, model: nn.Module, batch: Batch, seq: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The unweighted loss on ``batch`` (rows of this objective's scenarios only); ``seq``: the backbone's
        ``sequence_states`` of exactly these rows when already computed (computed here otherwise)."""


class NextItemObjective(SequenceObjective):
    """Next positive item at every position: ``loss`` ``bce`` (one uniform negative per position) or
    ``sampled_softmax`` (``num_negatives`` shared per scenario and batch, drawn ∝ train count + 1, logQ)."""

    name = "next_item"

    def __init__(self, space: FeatureSpace, weight: float = 1.0, scenarios: Sequence[str] | None = None,
                 loss: str = "bce", num_negatives: int = 100, norm: str = "batch") -> None:
        super().__init__(space, weight, scenarios)
        if loss not in ("bce", "sampled_softmax"):
            raise ValueError(f"objectives: next_item loss={loss!r}, expected 'bce' or 'sampled_softmax'")
        if norm not in ("batch", "epoch"):
            raise ValueError(f"objectives: next_item norm={norm!r}, expected 'batch' or 'epoch'")
        self.norm = norm
        self.targets_per_batch: float | None = None  # norm=epoch: set by calibrate
        if isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives < 1:
            raise ValueError(f"objectives: next_item num_negatives={num_negatives!r}, expected a positive integer")
        self.kind, self.num_negatives = loss, num_negatives
        counts = torch.bincount(space.item_scenario.clamp(min=0), minlength=space.num_scenarios)
        counts[0] -= int((space.item_scenario < 0).sum())  # the padding row
        self.first_item = torch.tensor([space.item_offset[s] + 1 for s in space.scenarios])
        self.num_items = counts

    @staticmethod
    def targets(batch: Batch) -> torch.Tensor:
        """``(targets [B, K], valid [B, K])``: the next positive item after each history position (entry
        ``t + 1``, then the row's own item when the row is a positive) and where there is one."""
        ids = batch["history"]
        act = batch.get("history_action")
        act = (ids > 0).long() * ACTION_POSITIVE if act is None else act
        tgt = torch.cat([ids[:, 1:], batch["item"].unsqueeze(1)], 1)
        tgt_pos = torch.cat([act[:, 1:] == ACTION_POSITIVE, (batch["label"] > 0.5).unsqueeze(1)], 1)
        return tgt, (ids > 0) & tgt_pos & (tgt > 0)

    def calibrate(self, train: Batch, batches_per_epoch: int, block: int = 262_144) -> None:
        """``norm=epoch``: count this objective's targets over the training split once (blocks of rows, so
        memory stays bounded) and keep their mean per training batch as the loss denominator."""
        if self.norm != "epoch":
            return
        keep = self.scenario_mask[train["scenario"]]
        n = 0
        for i in range(0, len(keep), block):
            rows = {k: train[k][i:i + block] for k in ("history", "history_action", "item", "label") if k in train}
            n += int((self.targets(rows)[1] & keep[i:i + block].unsqueeze(1)).sum())
        self.targets_per_batch = max(n / max(int(batches_per_epoch), 1), 1.0)

    def _denominator(self) -> float | None:
        if self.norm == "batch":
            return None
        if self.targets_per_batch is None:
            raise ValueError("objectives: next_item norm=epoch needs calibrate(train split, batches per epoch) "
                             "before training (engine.build.build_module calls it)")
        return self.targets_per_batch

    def _proposal(self, s: int) -> torch.Tensor:
        """``q`` over scenario ``s``'s items (train count + 1, normalised)."""
        lo, n = int(self.first_item[s]), int(self.num_items[s])
        c = self.space.item_train_count
        w = (c[lo:lo + n].double() if c is not None else torch.zeros(n, dtype=torch.float64)) + 1.0
        return w / w.sum()

    def loss(self, model: nn.Module, batch: Batch, seq: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        bb = self.backbone(model)
        seq = bb.sequence_states(batch) if seq is None else seq
        emb = bb.embedding
        states = seq["states"]
        # targets: entry t + 1 (a positive), and the row's own item after the last position (a positive row)
        tgt, valid = self.targets({**batch, "history_action": seq["actions"]})
        scen = batch["scenario"].unsqueeze(1).expand_as(tgt)
        denominator = self._denominator()
        if self.kind == "bce":
            first = self.first_item.to(tgt.device)[scen]
            n = self.num_items.to(tgt.device)[scen]
            neg = first + (torch.rand(tgt.shape, device=tgt.device) * n).long().clamp(max=n - 1)
            return next_item_bce(states, emb.item_vectors(tgt), emb.item_vectors(neg), valid, denominator)
        total, count = states.new_zeros(()), 0
        for s in torch.unique(batch["scenario"]).tolist():
            sel = valid & (scen == s)
            if not bool(sel.any()):
                continue
            q = self._proposal(s)
            lo = int(self.first_item[s])
            local = torch.multinomial(q, self.num_negatives, replacement=True)
            negs = local.to(tgt.device) + lo
            logq = torch.log(q).to(states.dtype).to(tgt.device)
            p_ids = tgt[sel]
            acc = p_ids.unsqueeze(1) == negs.unsqueeze(0)
            loss = sampled_softmax_logq(states[sel], emb.item_vectors(p_ids), emb.item_vectors(negs),
                                        logq[p_ids - lo], logq[local.to(tgt.device)],
                                        torch.ones(len(p_ids), dtype=torch.bool, device=tgt.device), acc)
            k = int(sel.sum())
            total, count = total + loss * k, count + k
        return total / (max(count, 1) if denominator is None else denominator)


class NextResponseObjective(SequenceObjective):
    """Knowledge tracing's loss at every position: the state after entry ``t`` (item ⊕ feedback so far) and the
    item of entry ``t + 1`` are scored by the model's trunk and head against the feedback on entry ``t + 1``."""

    name = "next_response"

    def loss(self, model: nn.Module, batch: Batch, seq: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        bb = self.backbone(model)
        head = getattr(model, "head", None)
        if head is None:
            raise ValueError(f"objectives: next_response needs a model with scenario heads, got {type(model).__name__}")
        seq = bb.sequence_states(batch) if seq is None else seq
        mask = seq["mask"]
        valid = mask[:, :-1] & mask[:, 1:]
        if not bool(valid.any()):
            return seq["states"].sum() * 0.0
        b_idx, t_idx = torch.nonzero(valid, as_tuple=True)
        user = seq["profile"][b_idx] + seq["states"][b_idx, t_idx]
        item = seq["items"][b_idx, t_idx + 1]
        scenario = batch["scenario"][b_idx]
        feats = bb.interact(user, item, scenario)
        logits = head(feats["h"], scenario, feats)
        labels = (seq["actions"][b_idx, t_idx + 1] == ACTION_POSITIVE)
        return next_response_bce(logits, labels, torch.ones_like(labels))
