"""Warm-start update of a trained model on new interactions (feedback): the core of ``unirec-update`` and of the
updated arm of ``unirec-replay``.

Why warm start: retraining from scratch costs a full training run per update; a few steps on the new events
from the trained weights costs seconds. Three steps, each reusing the training code:
1. :func:`grow` appends ids never seen in training at the **end** of the global user / item ranges (old global
   ids, and so every trained row, keep their place); new rows start at the mean of the trained rows (an
   "average" user / item; ``init="normal"`` draws them around it with the trained rows' spread);
2. :func:`event_tensors` turns events into batch tensors with the data module's own
   :func:`~unirec_lab.data.datamodule.interaction_tensors`: histories are extended with the new events in time
   order (each event sees the past positives and the earlier new positives of its user, never its own label);
3. :func:`finetune` steps on :meth:`RecLitModule.loss` (the training objective) with the configured optimizer,
   over :class:`~unirec_lab.data.batching.TensorBatches`, seeded, for ``epochs`` passes or ``max_steps`` steps.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from unirec_lab.data.batching import Batch, TensorBatches
from unirec_lab.data.datamodule import interaction_tensors
from unirec_lab.engine.module import NonFiniteLossError, RecLitModule
from unirec_lab.features import FeatureSpace
from unirec_lab.models.embedding import FeatureEmbedding

EVENT_COLUMNS = ("scenario", "user", "item", "label", "ts")
# id tables by attribute name (FeatureEmbedding: user_id / item_id; MF: user / item and their biases) and the
# feature matrices (FeatureEmbedding's buffers); a table is grown only when its length is the old id count
USER_TABLES, ITEM_TABLES = ("user_id", "user", "user_bias"), ("item_id", "item", "item_bias")
FEATURE_BUFFERS = {"user_features": "user", "item_features": "item", "item_text": "item", "user_dense": "user",
                   "item_dense": "item"}
# the feature space's per-row tensors (item_scenario is grown and permuted on its own)
ROW_FIELDS = {"user_features": "user", "user_train_pos": "user", "user_dense": "user", "item_features": "item",
              "item_train_count": "item", "item_train_pos": "item", "item_text": "item", "item_dense": "item"}
INITS = ("mean", "normal")


@dataclass
class FinetuneReport:
    """What one update did: optimizer steps, rows, seconds, the mean training loss of its first and last pass."""

    steps: int
    rows: int
    seconds: float
    first_loss: float
    last_loss: float
    new_users: dict[str, int]
    new_items: dict[str, int]


def local_counts(space: FeatureSpace, entity: str) -> dict[str, int]:
    """Per scenario, how many local user / item ids the space holds (its bundle's, plus any appended)."""
    grown = space.user_global if entity == "user" else space.item_global
    if grown:
        return {s: len(grown[s]) for s in space.scenarios}
    offsets = space.user_offset if entity == "user" else space.item_offset
    total = (space.num_users if entity == "user" else space.num_items) - 1
    starts = [offsets[s] for s in space.scenarios]
    ends = [*starts[1:], total]
    return {s: e - b for s, b, e in zip(space.scenarios, starts, ends)}


def new_id_counts(space: FeatureSpace, events: pd.DataFrame) -> tuple[dict[str, int], dict[str, int]]:
    """Per scenario, how many ids ``events`` use past the space's current local ranges (new users / items)."""
    out = []
    for entity in ("user", "item"):
        have = local_counts(space, entity)
        top = events.groupby("scenario")[entity].max()
        out.append({s: int(top[s]) + 1 - have[s] for s in top.index if int(top[s]) + 1 > have[s]})
    return out[0], out[1]


def grow_space(space: FeatureSpace, new_users: Mapping[str, int], new_items: Mapping[str, int]) -> FeatureSpace:
    """A copy of ``space`` with ``new_users[s]`` / ``new_items[s]`` more local ids in scenario ``s``, appended at
    the end of the global ranges (zero feature rows = missing fields; no training counts)."""
    unknown = sorted((set(new_users) | set(new_items)) - set(space.scenarios))
    if unknown:
        raise ValueError(f"new ids for scenario(s) {unknown}: expected one of {space.scenarios}")
    if space.id_owner and (any(new_users.values()) or any(new_items.values())):
        raise ValueError(f"scenarios {sorted(space.id_owner)} are slices sharing one id space; appending new ids "
                         "to slice-defined scenarios is not supported (update on known ids only)")
    maps: dict[str, dict[str, np.ndarray]] = {}
    sizes = {}
    for entity, new in (("user", new_users), ("item", new_items)):
        have = local_counts(space, entity)
        to_global = space.global_users if entity == "user" else space.global_items
        n = space.num_users if entity == "user" else space.num_items
        grown = {}
        for s in space.scenarios:
            k = int(new.get(s, 0))
            if k < 0:
                raise ValueError(f"new {entity} count for {s!r} is {k}: expected >= 0")
            grown[s] = np.concatenate([to_global(s, np.arange(have[s])), np.arange(n, n + k, dtype=np.int64)])
            n += k
        maps[entity], sizes[entity] = grown, n
    add_u, add_i = sizes["user"] - space.num_users, sizes["item"] - space.num_items
    item_scenario = torch.cat([space.item_scenario, torch.tensor(
        [i for i, s in enumerate(space.scenarios) for _ in range(int(new_items.get(s, 0)))], dtype=torch.int64)])

    def pad(t: torch.Tensor | None, k: int) -> torch.Tensor | None:
        return None if t is None else torch.cat([t, t.new_zeros((k, *t.shape[1:]))])

    add = {"user": add_u, "item": add_i}
    return dataclasses.replace(
        space, num_users=sizes["user"], num_items=sizes["item"], item_scenario=item_scenario,
        user_global=maps["user"], item_global=maps["item"],
        **{k: pad(getattr(space, k), add[e]) for k, e in ROW_FIELDS.items()})


def _new_rows(old: torch.Tensor, rows: int, init: str, generator: torch.Generator) -> torch.Tensor:
    """``rows - len(old)`` rows for new ids from the trained rows' mean (``normal``: plus their spread)."""
    trained = old[1:] if len(old) > 1 else old
    mean = trained.mean(0, keepdim=True)
    new = mean.expand(rows - len(old), -1).clone()
    if init == "normal":
        std = trained.std(0, keepdim=True) if len(trained) > 1 else torch.zeros_like(mean)
        new += std * torch.randn(new.shape, generator=generator, dtype=new.dtype).to(new.device)
    return new


def _grown_table(emb: nn.Embedding, rows: int, init: str, generator: torch.Generator) -> nn.Embedding:
    """``emb`` with ``rows`` rows: the old rows copied exactly, the new ones from the trained rows' mean."""
    old = emb.weight.detach()
    out = nn.Embedding(rows, emb.embedding_dim, padding_idx=emb.padding_idx, sparse=emb.sparse,
                       device=old.device, dtype=old.dtype)
    with torch.no_grad():
        out.weight.copy_(torch.cat([old, _new_rows(old, rows, init, generator)]))
    return out


def grow(model: nn.Module, space: FeatureSpace, new_users: Mapping[str, int], new_items: Mapping[str, int],
         init: str = "mean", seed: int = 0) -> FeatureSpace:
    """Append new user / item ids to ``model``'s id tables and feature matrices in place; returns the grown
    space. Trained rows are untouched (same values, same global ids)."""
    if init not in INITS:
        raise ValueError(f"finetune init={init!r}: expected one of {list(INITS)}")
    grown = grow_space(space, new_users, new_items)
    old = {"user": space.num_users, "item": space.num_items}
    new = {"user": grown.num_users, "item": grown.num_items}
    done = {"user": 0, "item": 0}
    g = torch.Generator().manual_seed(seed)
    for module in list(model.modules()):
        if isinstance(module, FeatureEmbedding):  # the fused table: its user / item id row ranges grow
            for entity in ("user", "item"):
                if module.num_rows(entity) == old[entity]:
                    if new[entity] > old[entity]:
                        module.grow_ids(entity, new[entity], lambda w, n: _new_rows(w, n, init, g))
                    done[entity] += 1
        for name, child in list(module.named_children()):
            entity = "user" if name in USER_TABLES else "item" if name in ITEM_TABLES else None
            if entity and isinstance(child, nn.Embedding) and child.num_embeddings == old[entity]:
                if new[entity] > old[entity]:
                    setattr(module, name, _grown_table(child, new[entity], init, g))
                done[entity] += 1
        for name, buf in list(module.named_buffers(recurse=False)):
            entity = FEATURE_BUFFERS.get(name)
            if entity and buf.shape[0] == old[entity] and new[entity] > old[entity]:
                module._buffers[name] = torch.cat([buf, buf.new_zeros((new[entity] - old[entity], *buf.shape[1:]))])
    for entity in ("user", "item"):
        if new[entity] > old[entity] and not done[entity]:
            raise ValueError(f"{type(model).__name__}: no {entity} id table of {old[entity]} rows to append "
                             f"{new[entity] - old[entity]} new {entity}(s) to")
    return grown


def check_events(events: pd.DataFrame, space: FeatureSpace, what: str = "events") -> None:
    """One clear line for a malformed event table (missing column, unknown scenario, bad id or label)."""
    missing = [c for c in EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; expected {list(EVENT_COLUMNS)}")
    unknown = sorted(set(events["scenario"]) - set(space.scenarios))
    if unknown:
        raise ValueError(f"{what}: unknown scenario(s) {unknown}; expected one of {space.scenarios}")
    for c in ("user", "item"):
        if len(events) and (not pd.api.types.is_integer_dtype(events[c]) or int(events[c].min()) < 0):
            raise ValueError(f"{what}: column {c!r} must hold dense ids (integers >= 0)")
    if len(events) and not events["label"].isin([0, 1]).all():
        bad = events.loc[~events["label"].isin([0, 1]), "label"].tolist()[0]
        raise ValueError(f"{what}: label {bad!r}: expected 0 or 1")


def event_tensors(space: FeatureSpace, events: pd.DataFrame, history_len: int,
                  past: pd.DataFrame | None = None) -> Batch:
    """Batch tensors of ``events`` (columns :data:`EVENT_COLUMNS`, optional ``group``; local dense ids of a space
    that already holds them, see :func:`grow`), in the datamodule's layout. Histories: the user's positives of
    ``past`` (same columns) and earlier positive ``events``, strictly before each event in time."""
    check_events(events, space)
    if past is not None:
        check_events(past, space, "past interactions")
    for entity, have in (("user", local_counts(space, "user")), ("item", local_counts(space, "item"))):
        top = events.groupby("scenario")[entity].max()
        over = [s for s in top.index if int(top[s]) >= have[s]]
        if over:
            raise ValueError(f"events: {entity} ids past the model's range in {over}; grow() the model first")
    parts, group_offset = [], 0
    for s_idx, name in enumerate(space.scenarios):
        ev = events[events["scenario"] == name]
        if not len(ev):
            continue
        cols = ["user", "item", "label", "ts"]
        frame = ev[cols + (["group"] if "group" in ev.columns else [])].assign(split="test")
        if past is not None:  # only positives enter histories; past rows are visible to every event ("train")
            old = past[(past["scenario"] == name) & (past["label"] > 0.5)][cols].assign(split="train")
            if "group" in frame.columns:
                old = old.assign(group=-1)
            frame = pd.concat([old, frame], ignore_index=True)
        arrays, n_groups = interaction_tensors(frame, space, s_idx, history_len, group_offset)
        parts.append(arrays["test"])
        group_offset += n_groups
    if not parts:
        raise ValueError("events: no rows to turn into batches")
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    cat["row"] = np.arange(len(cat["label"]), dtype=np.int64)
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in cat.items()}


def finetune(model: nn.Module, data: Batch, optimizer: Callable[..., torch.optim.Optimizer],
             scenario_names: Sequence[str], loss_weights: Mapping[str, float] | None = None, epochs: int = 1,
             max_steps: int | None = None, batch_size: int = 1024, seed: int = 0) -> tuple[int, float, float]:
    """Step ``model`` in place on ``data`` (batch tensors) with the training objective; returns (steps, mean
    loss of the first pass, mean loss of the last pass). Deterministic for a seed (order, dropout, init)."""
    if epochs < 1 or (max_steps is not None and max_steps < 1) or batch_size < 1:
        raise ValueError(f"finetune epochs={epochs}, max_steps={max_steps}, batch_size={batch_size}: expected "
                         "epochs >= 1, max_steps >= 1 or null, batch_size >= 1")
    module = RecLitModule(model, optimizer, scenario_names, loss_weights, metrics=["auc"])
    opt = module.configure_optimizers()
    torch.manual_seed(seed)
    model.train()
    steps, pass_losses, clock = 0, [], {"epoch": 0}
    batches = TensorBatches(data, batch_size, shuffle=True, seed=seed, epoch_fn=lambda: clock["epoch"],
                            num_scenarios=len(scenario_names))
    for epoch in range(epochs):
        clock["epoch"] = epoch  # a new order each pass, a function of (seed, pass) only
        total, n = 0.0, 0
        for batch in batches:
            loss, _, _ = module.loss(batch)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"non-finite fine-tuning loss {loss.item()} at step {steps}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            total, n = total + float(loss.detach()) * len(batch["label"]), n + len(batch["label"])
            if max_steps is not None and steps >= max_steps:
                break
        pass_losses.append(total / max(n, 1))
        if max_steps is not None and steps >= max_steps:
            break
    model.eval()
    return steps, pass_losses[0], pass_losses[-1]


def update(model: nn.Module, space: FeatureSpace, events: pd.DataFrame,
           optimizer: Callable[..., torch.optim.Optimizer], history_len: int, past: pd.DataFrame | None = None,
           loss_weights: Mapping[str, float] | None = None, epochs: int = 1, max_steps: int | None = None,
           batch_size: int = 1024, seed: int = 0, init: str = "mean") -> tuple[FeatureSpace, FinetuneReport]:
    """Grow ``model`` for the new ids of ``events``, then fine-tune it on them (in place); the grown space and
    a report."""
    t0 = time.perf_counter()
    check_events(events, space)
    new_users, new_items = new_id_counts(space, events)
    space = grow(model, space, new_users, new_items, init=init, seed=seed)
    data = event_tensors(space, events, history_len, past)
    steps, first, last = finetune(model, data, optimizer, space.scenarios, loss_weights, epochs, max_steps,
                                  batch_size, seed)
    return space, FinetuneReport(steps, len(events), time.perf_counter() - t0, first, last, new_users, new_items)


@torch.no_grad()
def score(model: nn.Module, data: Batch, batch_size: int = 8192) -> np.ndarray:
    """Logits of every row of ``data`` (eval mode), in row order."""
    model.eval()
    out = [model(b).float().cpu() for b in TensorBatches(data, batch_size, shuffle=False)]
    z = torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)
    if not np.isfinite(z).all():
        raise ValueError(f"model scores: {int((~np.isfinite(z)).sum())} non-finite logit(s)")
    return z


def compact(model: nn.Module, space: FeatureSpace) -> FeatureSpace:
    """Lay a grown space out again as contiguous per-scenario blocks (offsets, no id maps: the layout of a
    freshly prepared space and of the serving artifact), permuting ``model``'s id tables and feature matrices in
    place to match; scores of every (scenario, local id) are unchanged. A space that never grew is returned."""
    if not space.user_global and not space.item_global:
        return space
    perms, offsets = {}, {}
    for entity in ("user", "item"):
        have = local_counts(space, entity)
        to_global = space.global_users if entity == "user" else space.global_items
        offsets[entity], start = {}, 0
        for s in space.scenarios:
            offsets[entity][s] = start
            start += have[s]
        perms[entity] = torch.from_numpy(np.concatenate(
            [[0], *(to_global(s, np.arange(have[s])) for s in space.scenarios)]).astype(np.int64))
    for module in list(model.modules()):
        if isinstance(module, FeatureEmbedding):
            for entity in ("user", "item"):
                if module.num_rows(entity) == len(perms[entity]):
                    module.permute_ids(entity, perms[entity])
        for name, child in list(module.named_children()):
            entity = "user" if name in USER_TABLES else "item" if name in ITEM_TABLES else None
            if entity and isinstance(child, nn.Embedding) and child.num_embeddings == len(perms[entity]):
                with torch.no_grad():
                    child.weight.copy_(child.weight[perms[entity]])
        for name, buf in list(module.named_buffers(recurse=False)):
            entity = FEATURE_BUFFERS.get(name)
            if entity and buf.shape[0] == len(perms[entity]):
                module._buffers[name] = buf[perms[entity]]

    def take(t: torch.Tensor | None, entity: str) -> torch.Tensor | None:
        return None if t is None else t[perms[entity]]

    return dataclasses.replace(
        space, user_offset=offsets["user"], item_offset=offsets["item"],
        item_scenario=take(space.item_scenario, "item"), user_global={}, item_global={},
        **{k: take(getattr(space, k), e) for k, e in ROW_FIELDS.items()})
