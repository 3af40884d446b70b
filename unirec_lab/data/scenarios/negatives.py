"""Sampled negatives for implicit feedback: items a user never interacted with, drawn uniformly and seeded, so
val/test candidates are fixed across runs (the 1-vs-N protocol) and train negatives are reproducible."""

from __future__ import annotations

import numpy as np

from unirec_lab.data.scenarios.ids import contains_sorted, interaction_keys
from unirec_lab.data.scenarios.raw import RawDataError


def sample_negatives(owner_user: np.ndarray, num: int, num_items: int, pos_keys: np.ndarray,
                     rng: np.random.Generator, distinct: bool = True, max_rounds: int = 200) -> np.ndarray:
    """For each row of ``owner_user``, ``num`` items drawn uniformly from the items that user never interacted
    with (``pos_keys``: sorted unique ``user * num_items + item`` of every observed interaction). With
    ``distinct`` the ``num`` items of one row are all different. Returns ``[len(owner_user), num]`` int64.
    """
    owner_user = np.asarray(owner_user, dtype=np.int64)
    g = len(owner_user)
    out = np.full((g, num), -1, dtype=np.int64)
    if g == 0 or num == 0:
        return out
    todo = np.arange(g)
    extra = max(8, num // 4)
    for _ in range(max_rounds):
        if len(todo) == 0:
            return out
        m = num + extra
        cand = rng.integers(0, num_items, size=(len(todo), m), dtype=np.int64)
        keys = owner_user[todo, None] * num_items + cand
        ok = ~contains_sorted(pos_keys, keys)
        if distinct:
            order = np.argsort(cand, axis=1, kind="stable")
            s = np.take_along_axis(cand, order, axis=1)
            dup_sorted = np.zeros_like(s, dtype=bool)
            dup_sorted[:, 1:] = s[:, 1:] == s[:, :-1]
            dup = np.zeros_like(dup_sorted)
            np.put_along_axis(dup, order, dup_sorted, axis=1)
            ok &= ~dup
        enough = ok.sum(axis=1) >= num
        rows = np.flatnonzero(enough)
        if len(rows):
            sel = np.argsort(~ok[rows], axis=1, kind="stable")[:, :num]  # first `num` valid, in draw order
            out[todo[rows]] = np.take_along_axis(cand[rows], sel, axis=1)
        todo = todo[~enough]
        extra *= 2
    raise RawDataError(f"could not sample {num} negatives for {len(todo)} users in {max_rounds} rounds "
                       f"(they interacted with almost every one of {num_items} items)")


def with_negatives(rows: dict[str, np.ndarray], num_items: int, k_train: int, k_eval: int,
                   rng_train: np.random.Generator, rng_eval: np.random.Generator) -> dict[str, np.ndarray]:
    """The observed rows plus ``k_train`` sampled negatives per train positive and ``k_eval`` distinct ones per
    val/test positive, each an item the user never interacted with (in any split), with the positive's ts,
    split and group; a sampled row's rating is NaN."""
    user, level, label = rows["user"], rows["level"], rows["label"]
    keys = interaction_keys(user, rows["item"], num_items)
    parts = {k: [v] for k, v in rows.items()}
    for on, k, rng, distinct in ((level == 0, k_train, rng_train, False), (level > 0, k_eval, rng_eval, True)):
        pos = np.flatnonzero(on & (label > 0.5))
        if k == 0 or len(pos) == 0:
            continue
        neg = sample_negatives(user[pos], k, num_items, keys, rng, distinct=distinct)
        for key in ("user", "ts", "level", "group"):
            parts[key].append(np.repeat(rows[key][pos], k))
        parts["item"].append(neg.reshape(-1))
        parts["label"].append(np.zeros(neg.size, np.float32))
        if "rating" in rows:
            parts["rating"].append(np.full(neg.size, np.nan))
    return {k: np.concatenate(v) for k, v in parts.items()}
