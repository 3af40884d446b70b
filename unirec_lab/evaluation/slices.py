"""Cold-start slices of an evaluation split: *where* a model wins or loses, not only whether.

A row's user is **cold** when the user has at most ``cold_user_max_pos`` positive interactions in the
training split of its scenario (0 = never seen positive); its item is **cold** likewise with
``cold_item_max_pos``. Counts come from the training split only, so slicing leaks nothing from val/test.

User slices hold whole groups (a group is a user, an impression of one user, or a user's 1-vs-N candidate
set), so every metric is defined on them. Item slices cut through groups, so they report the pointwise
metrics only (``POINTWISE``: AUC and LogLoss); ranking metrics on part of a candidate list would mislead.

``unseen_item`` (when train row counts are given): items with **no training row at all** in their scenario,
the cold start a content model exists for (an ID embedding of such an item is never trained). It reports every
metric: its grouped metrics (GAUC, NDCG@K) rank, within each group, the never-seen candidates among
themselves (groups without both a positive and a negative unseen candidate are skipped, as GAUC does).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from unirec_lab.evaluation.metrics import MetricFn

USER_SLICES = ("cold_user", "warm_user")
RANKED_ITEM_SLICES = ("unseen_item",)  # item slices reported with every metric (see the module docstring)
POINTWISE = ("auc", "logloss")


def slice_masks(split: dict[str, torch.Tensor], user_train_pos: torch.Tensor, item_train_pos: torch.Tensor,
                cold_user_max_pos: int = 5, cold_item_max_pos: int = 5,
                item_train_count: torch.Tensor | None = None) -> dict[str, np.ndarray]:
    """Boolean masks over the split's rows (index = the row's position = its global ``row`` id)."""
    if cold_user_max_pos < 0 or cold_item_max_pos < 0:
        raise ValueError(f"slices: cold_user_max_pos={cold_user_max_pos}, cold_item_max_pos={cold_item_max_pos}; "
                         "expected integers >= 0")
    cold_user = (user_train_pos[split["user"]] <= cold_user_max_pos).numpy()
    cold_item = (item_train_pos[split["item"]] <= cold_item_max_pos).numpy()
    masks = {"cold_user": cold_user, "warm_user": ~cold_user, "cold_item": cold_item, "warm_item": ~cold_item}
    if item_train_count is not None:
        masks["unseen_item"] = (item_train_count[split["item"]] == 0).numpy()
    return masks


def slice_metrics(data: dict[str, np.ndarray], masks: dict[str, np.ndarray], scenarios: Sequence[str],
                  metric_fns: dict[str, MetricFn]
                  ) -> dict[str, dict[str, dict[str, float]]]:
    """``{scenario: {slice: {metric: value, "rows": n, "positives": p}}}`` for gathered evaluation rows
    (``data`` as :meth:`ScenarioEvaluator.gathered` returns it); empty slices are left out."""
    row = data["row"].astype(np.int64)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for s_idx, name in enumerate(scenarios):
        in_s = data["scenario"] == s_idx
        if not in_s.any():
            continue
        per: dict[str, dict[str, float]] = {}
        for sl, mask in masks.items():
            m = in_s & mask[row]
            if not m.any():
                continue
            y, z, g = data["label"][m], data["logit"][m].astype(np.float64), data["group"][m]
            fns = metric_fns if sl in USER_SLICES + RANKED_ITEM_SLICES else {k: f for k, f in metric_fns.items() if k in POINTWISE}
            per[sl] = {k: float(fn(y, z, g)) for k, fn in fns.items()}
            per[sl]["rows"] = int(m.sum())
            per[sl]["positives"] = int((y > 0.5).sum())
        out[name] = per
    return out
