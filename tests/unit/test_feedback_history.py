"""Feedback-aware histories: equal to a brute-force definition, and a planted feedback leak is caught.

The leak check is a crafted score: consecutive rows of a user come in pairs that share one random label, so the
feedback of the most recent history entry predicts a row's label only if the history leaks (the row's own label,
its later partner's response, or a response from a split the row may not see). A correct builder scores ~0.5 AUC;
each planted leak (a brute-force builder with the rule broken) scores ~1 and fails the same check.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from unirec_lab.data.datamodule import chunk_end_rows
from unirec_lab.data.history import (
    ACTION_NEGATIVE,
    ACTION_POSITIVE,
    build_feedback_histories,
    build_histories,
    history_settings,
)


def brute_force(user, item, label, ts, level, k, feedback, own=False, later=False, any_split=False):
    """The rule written row by row; ``own`` / ``later`` / ``any_split`` plant the three leaks."""
    items = np.full((len(user), k), -1)
    acts = np.zeros((len(user), k), dtype=np.int8)
    for r in range(len(user)):
        when = (ts <= ts[r]) if own else (ts < ts[r])
        if later:
            when = np.ones(len(user), dtype=bool) & (np.arange(len(user)) != r)
        m = (user == user[r]) & when & ((level <= level[r]) | any_split)
        if feedback == "positives":
            m &= label > 0.5
        idx = np.flatnonzero(m)
        idx = idx[np.lexsort((idx, ts[idx]))][-k:]
        if len(idx):
            items[r, k - len(idx):] = item[idx]
            acts[r, k - len(idx):] = np.where(label[idx] > 0.5, ACTION_POSITIVE, ACTION_NEGATIVE)
    return items, acts


def random_log(seed=0, n=500):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 20, n), rng.integers(0, 50, n), (rng.random(n) < 0.5).astype(float),
            rng.integers(0, 100, n), rng.integers(0, 3, n))


@pytest.mark.parametrize("feedback", ["positives", "all"])
def test_matches_brute_force(feedback):
    for seed in range(3):
        user, item, label, ts, level = random_log(seed)
        got_items, got_acts = build_feedback_histories(user, item, label, ts, level, 5, feedback)
        want_items, want_acts = brute_force(user, item, label, ts, level, 5, feedback)
        np.testing.assert_array_equal(got_items, want_items)
        np.testing.assert_array_equal(got_acts, want_acts)


def test_positives_mode_is_the_classic_history():
    user, item, label, ts, level = random_log(4)
    items, acts = build_feedback_histories(user, item, label, ts, level, 6, "positives")
    np.testing.assert_array_equal(items, build_histories(user, item, label, ts, level, 6))
    assert set(np.unique(acts[items >= 0])) == {ACTION_POSITIVE}
    assert (acts[items < 0] == 0).all()


def test_all_mode_keeps_negative_feedback():
    user = np.zeros(4, dtype=int)
    items, acts = build_feedback_histories(user, np.array([7, 8, 9, 10]), np.array([1.0, 0.0, 0.0, 1.0]),
                                           np.arange(4), np.zeros(4, dtype=int), 3, "all")
    np.testing.assert_array_equal(items[3], [7, 8, 9])
    np.testing.assert_array_equal(acts[3], [ACTION_POSITIVE, ACTION_NEGATIVE, ACTION_NEGATIVE])
    np.testing.assert_array_equal(acts[0], [0, 0, 0])  # the first row sees nothing: never its own label


def paired_log(seed=0, users=300, pairs=6, val_first=False):
    """Each user answers ``2 * pairs`` items in time order; rows ``2j`` and ``2j + 1`` share a random label.
    ``val_first``: the first row of every pair is a val row, the second (later) a train row."""
    rng = np.random.default_rng(seed)
    n = users * 2 * pairs
    user = np.repeat(np.arange(users), 2 * pairs)
    ts = np.tile(np.arange(2 * pairs), users)
    label = np.repeat((rng.random(users * pairs) < 0.5).astype(float), 2)
    item = rng.integers(0, 100, n)
    level = np.where(ts % 2 == 0, 1, 0) if val_first else np.zeros(n, dtype=int)
    return user, item, label, ts, level


def leak_auc(acts: np.ndarray, label: np.ndarray, rows: np.ndarray) -> float:
    """AUC of the crafted score 'feedback on the most recent history entry' over ``rows``."""
    return float(roc_auc_score(label[rows], acts[rows, -1].astype(float)))


def assert_no_feedback_leak(acts: np.ndarray, label: np.ndarray, rows: np.ndarray) -> None:
    auc = leak_auc(acts, label, rows)
    assert abs(auc - 0.5) < 0.08, f"history leaks feedback: crafted score AUC {auc:.3f} (expected ~0.5)"


def test_no_own_or_later_feedback_leak_and_planted_leaks_are_caught():
    user, item, label, ts, level = paired_log()
    first_of_pair = np.flatnonzero((ts % 2 == 0) & (ts > 0))  # rows 2j with an earlier pair to see
    _, acts = build_feedback_histories(user, item, label, ts, level, 4, "all")
    assert_no_feedback_leak(acts, label, first_of_pair)
    # sanity: the partner row (2j + 1) legitimately sees 2j, which shares its label
    second = np.flatnonzero(ts % 2 == 1)
    assert leak_auc(acts, label, second) > 0.99
    for leak in ("own", "later"):
        _, bad = brute_force(user, item, label, ts, level, 4, "all", **{leak: True})
        with pytest.raises(AssertionError, match="history leaks feedback"):
            assert_no_feedback_leak(bad, label, first_of_pair)


def test_no_val_feedback_in_train_histories_and_planted_leak_is_caught():
    user, item, label, ts, level = paired_log(1, val_first=True)
    train_rows = np.flatnonzero(level == 0)  # each one follows its val partner in time
    _, acts = build_feedback_histories(user, item, label, ts, level, 4, "all")
    assert_no_feedback_leak(acts, label, train_rows[ts[train_rows] > 1])
    _, bad = brute_force(user, item, label, ts, level, 4, "all", any_split=True)
    with pytest.raises(AssertionError, match="history leaks feedback"):
        assert_no_feedback_leak(bad, label, train_rows[ts[train_rows] > 1])


def test_chunk_end_rows_cover_every_training_row_once():
    user = np.array([0, 0, 0, 0, 0, 1, 1, 0])
    ts = np.array([0, 1, 2, 3, 4, 0, 1, 5])
    train = np.array([1, 1, 1, 1, 1, 1, 1, 0], dtype=bool)  # user 0's last row is val
    keep = chunk_end_rows(user, ts, train, 2)
    # user 0 train positions 0..4: chunk ends at 1, 3 and the last (4); user 1: position 1 (also its last)
    np.testing.assert_array_equal(keep, [0, 1, 0, 1, 1, 0, 1, 0])


def test_history_settings_errors_are_one_line():
    assert history_settings("edu", None) == {"feedback": "positives", "train_chunk": None, "eval_chunk": None}
    with pytest.raises(ValueError, match=r"scenarios.edu.history.feedback='every', expected one of"):
        history_settings("edu", {"feedback": "every"})
    with pytest.raises(ValueError, match=r"scenarios.edu.history.train_chunk=0, expected a positive integer"):
        history_settings("edu", {"train_chunk": 0})
    with pytest.raises(ValueError, match=r"scenarios.edu.history.eval_chunk='200', expected a positive integer"):
        history_settings("edu", {"eval_chunk": "200", "feedback": "all"})
    with pytest.raises(ValueError, match=r"scenarios.edu.history.eval_chunk=200 needs history.feedback: all, got 'posi"):
        history_settings("edu", {"eval_chunk": 200})
    with pytest.raises(ValueError, match=r"scenarios.edu.history: unknown key\(s\) \['feedbak'\]"):
        history_settings("edu", {"feedbak": "all"})


def test_bad_history_setting_fails_the_config_check(cfg_factory):
    from unirec_lab.engine.config import ConfigError, check_config

    cfg = cfg_factory(["+scenarios.education.history.feedback=every"])
    with pytest.raises(ConfigError, match=r"^scenarios.education.history.feedback='every', expected one of"):
        check_config(cfg)
    check_config(cfg_factory(["+scenarios.education.history.feedback=all"]))


def test_chunk_positions_restart_every_chunk_per_user_in_time_order():
    from unirec_lab.data.history import chunk_positions

    user = np.array([1, 0, 0, 0, 1, 0, 0])
    ts = np.array([0, 4, 0, 1, 1, 2, 3])  # user 0 in time order: rows 2, 3, 5, 6, 1
    np.testing.assert_array_equal(chunk_positions(user, ts, 2), [0, 0, 0, 1, 1, 0, 1])


def test_eval_chunk_cuts_val_test_histories_at_chunk_starts_only(tiny_dm):
    """AKT's evaluation: a test row sees the earlier rows of its own chunk only; train histories are untouched."""
    import pandas as pd

    from unirec_lab.data.datamodule import interaction_tensors

    n = 5
    df = pd.DataFrame({"user": [0] * n + [1] * n, "item": list(range(1, n + 1)) * 2, "label": [1.0, 0.0] * n,
                       "ts": list(range(n)) * 2, "split": ["test"] * n + ["train"] * n})
    s_idx = tiny_dm.space.scenarios.index("education")
    seen = {}
    for chunk in (None, 2):
        out, _ = interaction_tensors(df, tiny_dm.space, s_idx, 4, 0, {"feedback": "all", "eval_chunk": chunk})
        seen[chunk] = {s: (out[s]["history"] > 0).sum(1).tolist() for s in ("train", "test")}
    assert seen[None] == {"train": [0, 1, 2, 3, 4], "test": [0, 1, 2, 3, 4]}
    assert seen[2] == {"train": [0, 1, 2, 3, 4], "test": [0, 1, 0, 1, 0]}  # positions 0..4 in chunks of 2
    out, _ = interaction_tensors(df, tiny_dm.space, s_idx, 4, 0, {"feedback": "all", "eval_chunk": 2})
    last = out["test"]["history"][3]  # position 3 sees position 2 (its chunk's first row), nothing earlier
    assert (last[:-1] == 0).all() and last[-1] == tiny_dm.space.global_items("education", np.array([3]))[0]


def test_eval_chunk_cached_derived_histories_equal_the_per_row_path(tiny_dm):
    """The cached derived arrays (what a job trains and evaluates on) cut val/test histories exactly as the
    per-row path does; without ``eval_chunk`` they are not cut, and the cache key tells the two apart."""
    import pandas as pd

    from unirec_lab.data.datamodule import interaction_tensors
    from unirec_lab.data.derived import derive, derived_key

    rng = np.random.default_rng(0)
    n = 60
    df = pd.DataFrame({"user": rng.integers(0, 4, n), "item": rng.integers(0, 9, n),
                       "label": rng.integers(0, 2, n).astype(float), "ts": rng.integers(0, 30, n),
                       "split": rng.choice(["train", "val", "test"], n, p=[0.5, 0.25, 0.25])})
    s_idx = tiny_dm.space.scenarios.index("education")
    off = tiny_dm.space.item_offset["education"]
    for chunk in (None, 3):
        ref, _ = interaction_tensors(df, tiny_dm.space, s_idx, 4, 0, {"feedback": "all", "eval_chunk": chunk})
        d = derive(df, 4, "all", chunk)
        for split in ("train", "val", "test"):
            rows = d.rows(split)
            hist = np.asarray(d.hist_items)[np.asarray(d.hist_index)[rows]]
            got = np.where(hist >= 0, hist + off + 1, 0)
            np.testing.assert_array_equal(got, np.asarray(ref[split]["history"]), err_msg=f"{split} {chunk}")
            act = np.asarray(d.hist_actions)[np.asarray(d.hist_index)[rows]]
            np.testing.assert_array_equal(act, np.asarray(ref[split]["history_action"]))
    cut = derive(df, 4, "all", 3)
    full = derive(df, 4, "all", None)
    assert not np.array_equal(cut.hist_items[cut.hist_index[cut.rows("test")]],
                              full.hist_items[full.hist_index[full.rows("test")]])
    assert derived_key(4, "all", 3) != derived_key(4, "all", None)
