"""The feedback store: concurrent writers lose nothing, duplicate event ids are idempotent, the durability
settings are the stated ones, and ``events_since`` is the updater's watermark."""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest

from unirec_lab.serve.feedback import Event, FeedbackStore, FeedbackStoreError

WRITERS, EVENTS, BATCH = 8, 1000, 50


def _writer(path: str, w: int) -> None:
    store = FeedbackStore(path)
    mine = [Event("news", f"u{w}", f"i{i}", float(i % 2), i, f"w{w}-{i}") for i in range(EVENTS)]
    # every writer also re-sends 100 of its neighbour's events (client retries racing the original)
    theirs = [Event("news", "dup", "dup", 1.0, i, f"w{(w + 1) % WRITERS}-{i}") for i in range(100)]
    for s in range(0, EVENTS, BATCH):
        store.append_many(mine[s:s + BATCH] + theirs[s // 10:(s + BATCH) // 10])
    store.close()


def test_concurrent_writers_lose_nothing_and_duplicates_are_idempotent(tmp_path):
    path = str(tmp_path / "fb.sqlite")
    FeedbackStore(path).close()  # create the table once, before the race
    ctx = mp.get_context("fork")
    t0 = time.perf_counter()
    procs = [ctx.Process(target=_writer, args=(path, w)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    elapsed = time.perf_counter() - t0
    store = FeedbackStore(path)
    events = store.events_since(0)
    ids = [e.event_id for e in events]
    assert len(ids) == len(set(ids)) == WRITERS * EVENTS == store.count()
    assert set(ids) == {f"w{w}-{i}" for w in range(WRITERS) for i in range(EVENTS)}
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert elapsed < 90


def test_duplicates_within_and_across_calls_and_watermark(tmp_path):
    for generic in (False, True):  # the SQLite fast path and the portable one used for other databases
        store = FeedbackStore(tmp_path / f"fb{generic}.sqlite", generic_upsert=generic)
        a = Event("news", "u", "i", 1.0, 5, "a")
        b = Event("news", "u", "j", 0.0, 6, "b")
        assert store.append_many([a, b, a]) == [True, True, False]
        assert store.append_many([b, Event("news", "u", "k", 1.0, 7, "c")]) == [False, True]
        mark = store.events_since(0)[1].seq
        assert [e.event_id for e in store.events_since(mark)] == ["c"] and store.last_seq() > mark
        assert store.append(Event("edu", "u", "i", 1.0, 8)) is True  # no id: a fresh one is made
        assert store.count() == 4 and len(store.events_since(0, scenario="edu")) == 1
        store.close()


def test_durability_settings_are_wal_full(tmp_path):
    store = FeedbackStore(tmp_path / "fb.sqlite")
    assert store.settings() == {"dialect": "sqlite", "journal_mode": "wal", "synchronous": "FULL"}


def test_bad_targets_are_one_line(tmp_path):
    with pytest.raises(FeedbackStoreError, match="is a directory, expected a database file or a URL"):
        FeedbackStore(tmp_path)
    with pytest.raises(FeedbackStoreError, match=r"--feedback-db nosuchdialect://x: cannot be opened"):
        FeedbackStore("nosuchdialect://x")
