"""A fixed, seeded subset of whole validation groups, so per-epoch validation costs no more than training.

Beauty's 1-vs-99 candidate lists make the real validation split 14.5x the training rows; validating all of it
every epoch costs more than the epoch itself. ``data.val_budget`` caps each scenario's validation rows at
``val_budget x`` its training rows by keeping a random set of whole groups (users / impressions / candidate
lists, never part of one). The set depends only on the seed, the scenario's name and its rows, so it is the same
every epoch and every run (every model of a table is selected on the same rows). The test split is never cut.
"""

from __future__ import annotations

import zlib

import numpy as np


def check_budget(budget: float | None) -> float | None:
    """``None`` (full validation) or a positive, finite multiple of the training rows; one line otherwise."""
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not np.isfinite(budget) or budget <= 0:
        raise ValueError(f"data.val_budget={budget!r}: expected a positive number (validation rows per training "
                         f"row of each scenario) or null for full validation")
    return float(budget)


def group_subset_mask(group: np.ndarray, max_rows: int, seed: int, name: str) -> np.ndarray:
    """Rows of the groups kept: groups in a seeded random order, taken while their rows fit ``max_rows``.

    All rows are kept when they fit. Otherwise at least one group is kept (a budget below one group's size
    still validates something), and a group is either kept whole or dropped whole. Vectorised: one
    ``np.unique``, one permutation, one cumulative sum.
    """
    return group_subset(group, max_rows, seed, name)[0]


def group_subset(group: np.ndarray, max_rows: int, seed: int, name: str) -> tuple[np.ndarray, dict[str, int]]:
    """:func:`group_subset_mask` and the rows / groups kept of all (from the same ``np.unique``)."""
    group = np.asarray(group)
    if len(group) <= max_rows:
        n_groups = len(np.unique(group))
        return np.ones(len(group), dtype=bool), {"rows": len(group), "of_rows": len(group), "groups": n_groups,
                                                 "of_groups": n_groups}
    uniq, gid, sizes = np.unique(group, return_inverse=True, return_counts=True)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode())])
    perm = rng.permutation(len(uniq))
    fits = np.cumsum(sizes[perm]) <= max_rows
    fits[0] = True
    keep = np.zeros(len(uniq), dtype=bool)
    keep[perm[fits]] = True
    return keep[gid.reshape(-1)], {"rows": int(sizes[keep].sum()), "of_rows": len(group),
                                   "groups": int(keep.sum()), "of_groups": len(uniq)}


def subset_mask(split: dict[str, np.ndarray], names: list[str], train_rows: np.ndarray, budget: float,
                seed: int) -> tuple[np.ndarray, dict[str, dict[str, int]]]:
    """Rows of a multi-scenario validation split to keep (scenario ``s`` capped at ``ceil(budget x
    train_rows[s])`` rows, whole groups), and per scenario the rows / groups kept of all."""
    scen, group = np.asarray(split["scenario"]), np.asarray(split["group"])
    keep = np.zeros(len(scen), dtype=bool)
    info: dict[str, dict[str, int]] = {}
    for s, name in enumerate(names):  # one vectorised draw per scenario (a handful), not per row
        rows = np.flatnonzero(scen == s)
        m, info[name] = group_subset(group[rows], budget_rows(budget, train_rows[s]), seed, name)
        keep[rows[m]] = True
    return keep, info


def budget_rows(budget: float, train_rows: int) -> int:
    """The most validation rows a scenario with ``train_rows`` training rows keeps."""
    return int(np.ceil(budget * int(train_rows)))
