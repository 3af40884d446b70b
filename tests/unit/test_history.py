"""Behaviour histories: equal to a brute-force definition, and never leak val/test items into train rows."""

from __future__ import annotations

import numpy as np

from unirec_lab.data.history import build_histories, pad_histories


def brute_force(user, item, label, ts, level, k):
    out = np.full((len(user), k), -1)
    for r in range(len(user)):
        m = (user == user[r]) & (ts < ts[r]) & (label > 0.5) & (level <= level[r])
        idx = np.flatnonzero(m)
        idx = idx[np.lexsort((idx, ts[idx]))][-k:]
        if len(idx):
            out[r, k - len(idx):] = item[idx]
    return out


def random_log(seed=0, n=600):
    rng = np.random.default_rng(seed)
    user = rng.integers(0, 20, n)
    item = rng.integers(0, 50, n)
    label = (rng.random(n) < 0.5).astype(float)
    ts = rng.integers(0, 100, n)  # many equal timestamps: "strictly before" matters
    level = rng.integers(0, 3, n)  # random split: the visibility rule must still hold
    return user, item, label, ts, level


def test_matches_brute_force():
    for seed in range(3):
        user, item, label, ts, level = random_log(seed)
        got = build_histories(user, item, label, ts, level, k=5)
        np.testing.assert_array_equal(got, brute_force(user, item, label, ts, level, 5))


def test_train_histories_hold_only_train_items():
    user, item, label, ts, level = random_log(5)
    item = np.arange(len(user)) + 1000  # unique item per row, so an item identifies its row
    hist = build_histories(user, item, label, ts, level, k=10)
    level_of_item = dict(zip(item, level))
    ts_of_item = dict(zip(item, ts))
    for r in np.flatnonzero(level == 0):
        for it in hist[r][hist[r] >= 0]:
            assert level_of_item[it] == 0
            assert ts_of_item[it] < ts[r]


def test_pad_histories_keeps_last_k_left_padded():
    out = pad_histories([[1, 2, 3], [], [4]], k=2)
    np.testing.assert_array_equal(out, [[2, 3], [-1, -1], [-1, 4]])
