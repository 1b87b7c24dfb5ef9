"""The file under :class:`~gateway.sqlite_store.SqliteStore`: its tables, transactions, the lock that
keeps it to one process, and the purge of expired rows."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path

from gateway.fair import FairPolicy
from gateway.store import OUTCOME_TTL_S, RECORD_TTL_S, outcome_hour

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    job_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    enqueued INTEGER NOT NULL DEFAULT 0,  -- went through enqueue: in the user's recent list
    pending INTEGER NOT NULL DEFAULT 0,   -- queued or running
    finished_at REAL,                     -- set once, by finish
    data BLOB NOT NULL                    -- the orjson record
);
CREATE INDEX IF NOT EXISTS records_by_user ON records (user_id, enqueued, pending);
CREATE INDEX IF NOT EXISTS records_by_finish ON records (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS waiting (seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS leases (job_id TEXT PRIMARY KEY, consumer TEXT NOT NULL, renewed REAL NOT NULL);
CREATE TABLE IF NOT EXISTS owed (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    platform TEXT NOT NULL,
    job_id TEXT NOT NULL,
    at REAL NOT NULL,
    event BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS owed_by_job ON owed (platform, job_id);
CREATE TABLE IF NOT EXISTS cancels (job_id TEXT PRIMARY KEY, by TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS kv (
    -- settings | view | open_view (value: platform) | view_lease (value: holder, at: expiry)
    -- | delivered | claim (at: expiry)
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE TABLE IF NOT EXISTS durations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, workflow TEXT NOT NULL, ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS durations_by_workflow ON durations (workflow, id);
CREATE TABLE IF NOT EXISTS outcomes (
    hour TEXT NOT NULL, name TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (hour, name)
);
CREATE TABLE IF NOT EXISTS quota (
    key TEXT NOT NULL, job_id TEXT NOT NULL, until REAL NOT NULL, PRIMARY KEY (key, job_id)
);
CREATE TABLE IF NOT EXISTS rate (key TEXT NOT NULL, at REAL NOT NULL, until REAL NOT NULL);
CREATE INDEX IF NOT EXISTS rate_by_key ON rate (key, at);
CREATE INDEX IF NOT EXISTS rate_by_until ON rate (until);
"""


def migrate(db: sqlite3.Connection) -> None:
    """Give ``waiting`` the fair-queue columns (gateway/fair.py): a round and the job's user. Jobs
    queued by an older version keep round 0, i.e. they go first, in their order."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(waiting)")}
    if "round" not in columns:
        db.execute("ALTER TABLE waiting ADD COLUMN round INTEGER NOT NULL DEFAULT 0")
    if "user_id" not in columns:
        db.execute("ALTER TABLE waiting ADD COLUMN user_id TEXT NOT NULL DEFAULT ''")
    db.execute("CREATE INDEX IF NOT EXISTS waiting_by_turn ON waiting (round, seq)")
    db.execute("CREATE INDEX IF NOT EXISTS waiting_by_user ON waiting (user_id, round)")


def append_waiting(tx: sqlite3.Connection, fair: FairPolicy, job_id: str, user_id: str, depth: int) -> int:
    """Queue ``job_id`` in its round (gateway/fair.py), in enqueue's transaction; its position."""
    if fair.fifo:
        tx.execute("INSERT INTO waiting (job_id, user_id) VALUES (?, ?)", (job_id, user_id))
        return depth + 1
    (current,) = tx.execute("SELECT coalesce(min(round), 0) FROM waiting").fetchone()
    newest = tx.execute(
        "SELECT round, count(*) FROM waiting WHERE user_id = ? GROUP BY round ORDER BY round DESC LIMIT 1",
        (user_id,),
    ).fetchone()
    rnd = fair.round_for(user_id, current, None if newest is None else (newest[0], newest[1]))
    tx.execute("INSERT INTO waiting (job_id, user_id, round) VALUES (?, ?, ?)", (job_id, user_id, rnd))
    return int(tx.execute("SELECT count(*) FROM waiting WHERE round <= ?", (rnd,)).fetchone()[0])


def purge(tx: sqlite3.Connection, now: float) -> None:
    """Drop what Redis would have expired: finished jobs (and their views, markers, cancel flags, owed
    events) older than :data:`RECORD_TTL_S`, outcome hours older than :data:`OUTCOME_TTL_S`, spent rate
    hits, expired claims."""
    before = now - RECORD_TTL_S
    old = "SELECT job_id FROM records WHERE finished_at < ?"
    views = "('view', 'open_view', 'view_lease')"
    tx.execute(f"DELETE FROM kv WHERE kind IN {views} AND key IN ({old})", (before,))
    tx.execute(f"DELETE FROM cancels WHERE job_id IN ({old})", (before,))
    tx.execute("DELETE FROM records WHERE finished_at < ?", (before,))
    tx.execute("DELETE FROM kv WHERE kind = 'delivered' AND at < ?", (before,))
    tx.execute("DELETE FROM owed WHERE at < ?", (before,))
    tx.execute("DELETE FROM outcomes WHERE hour < ?", (outcome_hour(now - OUTCOME_TTL_S),))
    tx.execute("DELETE FROM rate WHERE until <= ?", (now,))
    tx.execute("DELETE FROM kv WHERE kind = 'claim' AND at <= ?", (now,))


class StoreLocked(RuntimeError):
    """Another process holds this data dir's store."""


class Transaction:
    """``with`` block = one ``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on an exception)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreLocked(f"{path.with_suffix('')} is in use by another comfybot process") from None
    return fd


__all__ = ["SCHEMA", "StoreLocked", "Transaction", "append_waiting", "lock", "migrate", "purge"]
