"""The feedback store: an append-only event table in SQLite (WAL, ``synchronous=FULL``) by default, or any
database SQLAlchemy reaches by URL (``postgresql://...``): one interface, SQLAlchemy Core for both.

Durability: SQLite in WAL mode with ``synchronous=FULL`` fsyncs the WAL at every commit, so an event whose
``append`` returned (and whose HTTP 200 was sent) survives a kill -9 of the server *and* a power loss; NORMAL
would survive the kill but may lose the last commits on power loss, so FULL it is. The cost is one fsync per
commit, which the server amortises by committing concurrent requests together (group commit,
:class:`unirec_lab.serve.service` ``FeedbackWriter``); every caller is acknowledged only after the commit.

Idempotence: ``event_id`` is unique; re-sending an event (a client retry) inserts nothing and reports it as a
duplicate (``INSERT OR IGNORE`` on SQLite, ``ON CONFLICT DO NOTHING`` on PostgreSQL, else insert-what-is-new
with a retry on a concurrent unique violation). ``seq`` is an auto-increment key never reused, so
:meth:`FeedbackStore.events_since` gives an updater every event after the watermark it last consumed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError

SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA busy_timeout=30000")


class FeedbackStoreError(ValueError):
    """The store cannot be opened (bad path or URL); the message names it."""


@dataclass(frozen=True)
class Event:
    """One feedback event: raw ids as the client sent them, label in [0, 1], ``ts`` seconds since the epoch."""

    scenario: str
    user: str
    item: str
    label: float
    ts: int
    event_id: str = ""
    seq: int | None = None  # set by the store

    def with_id(self) -> Event:
        return self if self.event_id else Event(self.scenario, self.user, self.item, self.label, self.ts,
                                                uuid.uuid4().hex)


METADATA = sa.MetaData()
EVENTS = sa.Table(
    "feedback_events", METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(128), nullable=False, unique=True),
    sa.Column("scenario", sa.String(100), nullable=False),
    sa.Column("user", sa.String(128), nullable=False),
    sa.Column("item", sa.String(128), nullable=False),
    sa.Column("label", sa.Float, nullable=False),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("received", sa.Float, nullable=False),
    sqlite_autoincrement=True,  # seq never reused: the table is an append-only log
)


def store_url(target: str | Path) -> str:
    """A SQLAlchemy URL: ``target`` itself when it has a scheme, else a SQLite file at that path."""
    text = str(target)
    if "://" in text:
        return text
    path = Path(text).expanduser()
    if path.is_dir():
        raise FeedbackStoreError(f"--feedback-db {text}: is a directory, expected a database file or a URL")
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path.resolve()}"


class FeedbackStore:
    """Append-only feedback events in a database reached by path (SQLite) or SQLAlchemy URL."""

    def __init__(self, target: str | Path, generic_upsert: bool = False) -> None:
        self.url = store_url(target)
        try:
            self.engine = sa.create_engine(self.url, future=True, **self._engine_args())
        except (sa.exc.ArgumentError, ImportError, ValueError) as e:
            raise FeedbackStoreError(f"--feedback-db {target}: cannot be opened ({e})") from None
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            sa.event.listen(self.engine, "begin", _sqlite_begin_immediate)
        self.generic = generic_upsert or self.dialect not in ("sqlite", "postgresql")
        try:
            METADATA.create_all(self.engine)
        except OperationalError as e:
            raise FeedbackStoreError(f"--feedback-db {target}: cannot be opened ({str(e.orig)[:200]})") from None

    def _engine_args(self) -> dict[str, Any]:
        if self.url.startswith("sqlite"):
            return {"connect_args": {"check_same_thread": False, "timeout": 30.0}}
        return {"pool_pre_ping": True}

    def _insert(self, conn: sa.engine.Connection, rows: list[dict[str, Any]]) -> None:
        if self.dialect == "sqlite" and not self.generic:
            conn.execute(EVENTS.insert().prefix_with("OR IGNORE"), rows)
        elif self.dialect == "postgresql" and not self.generic:
            from sqlalchemy.dialects.postgresql import insert

            conn.execute(insert(EVENTS).on_conflict_do_nothing(index_elements=["event_id"]), rows)
        else:
            existing = self._existing(conn, [r["event_id"] for r in rows])
            fresh = [r for r in rows if r["event_id"] not in existing]
            if fresh:
                conn.execute(EVENTS.insert(), fresh)

    @staticmethod
    def _existing(conn: sa.engine.Connection, ids: Sequence[str]) -> set[str]:
        out: set[str] = set()
        for s in range(0, len(ids), 500):
            q = sa.select(EVENTS.c.event_id).where(EVENTS.c.event_id.in_(list(ids[s:s + 500])))
            out.update(r[0] for r in conn.execute(q))
        return out

    def append_many(self, events: Iterable[Event]) -> list[bool]:
        """Insert ``events`` in one transaction (committed, i.e. fsynced, on return); per event ``True`` when
        it was new, ``False`` for a duplicate ``event_id`` (already stored, or repeated within the call)."""
        evs = [e.with_id() for e in events]
        if not evs:
            return []
        now = time.time()
        rows, first = [], {}
        for e in evs:
            first.setdefault(e.event_id, len(rows))
            rows.append({"event_id": e.event_id, "scenario": e.scenario, "user": e.user, "item": e.item,
                         "label": float(e.label), "ts": int(e.ts), "received": now})
        for attempt in range(5):
            try:
                with self.engine.begin() as conn:
                    before = self._existing(conn, list(first))
                    self._insert(conn, [rows[i] for i in first.values()])
                break
            except IntegrityError:  # generic path: a concurrent writer inserted one of these ids first
                if attempt == 4:
                    raise
        return [i == first[e.event_id] and e.event_id not in before for i, e in enumerate(evs)]

    def append(self, event: Event) -> bool:
        return self.append_many([event])[0]

    def events_since(self, seq: int = 0, limit: int | None = None, scenario: str | None = None) -> list[Event]:
        """Events with ``seq > seq`` in commit order (an updater passes the last ``seq`` it consumed)."""
        q = sa.select(EVENTS).where(EVENTS.c.seq > int(seq)).order_by(EVENTS.c.seq)
        if scenario is not None:
            q = q.where(EVENTS.c.scenario == scenario)
        if limit is not None:
            q = q.limit(int(limit))
        with self.engine.connect() as conn:
            return [Event(r.scenario, r.user, r.item, r.label, r.ts, r.event_id, r.seq) for r in conn.execute(q)]

    def last_seq(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(EVENTS.c.seq), 0))).scalar_one())

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(EVENTS)).scalar_one())

    def settings(self) -> dict[str, Any]:
        """What durability the store runs with (``/health`` shows it)."""
        if self.dialect != "sqlite":
            return {"dialect": self.dialect}
        with self.engine.connect() as conn:
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            sync = conn.exec_driver_sql("PRAGMA synchronous").scalar()
        return {"dialect": "sqlite", "journal_mode": mode, "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL",
                                                                           3: "EXTRA"}.get(sync, sync)}

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # transactions are begun by _sqlite_begin_immediate, not by the driver
    cur = dbapi_conn.cursor()
    for pragma in SQLITE_PRAGMAS:
        cur.execute(pragma)
    cur.close()


def _sqlite_begin_immediate(conn: sa.engine.Connection) -> None:
    """Take the write lock at BEGIN: a deferred transaction that reads and then writes can fail at once with
    SQLITE_BUSY when another process committed in between; an immediate one waits (``busy_timeout``)."""
    conn.exec_driver_sql("BEGIN IMMEDIATE")
