"""The embedded default: one SQLite file (WAL) under the data dir, so a restart loses nothing.

Everything a single ``comfybot run`` process keeps — queued and running jobs, records, views, settings,
delivery markers, run times, outcome counters, rate logs and the terminal events a front end has not
shown yet — lives in ``<data dir>/comfybot.db`` and survives SIGTERM and SIGKILL. One process owns the
file (``flock`` on ``comfybot.db.lock``): a second one on the same data dir is refused with one line.

Design, and what it costs:

* Calls are synchronous on the event loop: each is one short transaction (tens of microseconds in WAL
  mode), so checks and writes stay atomic without locks, as in the memory store. ``synchronous=NORMAL``
  makes a commit durable against a killed process (the WAL is in the OS cache); a power cut can lose the
  last transactions, never corrupt the file.
* Leases are wall-clock times. At open every lease belongs to a process that is gone (the file is ours
  alone), so each is made stale at once: a restarted worker resumes the jobs that were running
  (``gateway/recovery.py`` asks the ComfyUI server first) instead of waiting out a lease.
* Events: progress, previews and positions only matter to a process that is alive, so they pass through
  an in-process channel as in the memory store. Terminal events are also written, in the transaction that
  finishes the job, to ``owed``; a row is deleted by ``event_handled`` once the chat shows the outcome,
  and the rows left at open are handed to the first subscriber of their platform before anything new.
* Retention matches Redis: finished records, views, markers and owed events older than a week are purged
  (at open and every ``PURGE_EVERY`` finishes).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Collection
from pathlib import Path

from core.logs import get_logger
from gateway.limits import RateRule
from gateway.memory import LocalChannels, kept
from gateway.models import TERMINAL_EVENTS, JobEvent, event_to_json
from gateway.quota_stores import SqliteQuotas
from gateway.records import JobRecord
from gateway.sqlite_kv import SqliteKeyValues
from gateway.sqlite_schema import SCHEMA, StoreLocked, Transaction, append_waiting, lock, migrate, purge
from gateway.store import (
    DURATIONS_MAX,
    Enqueued,
    Store,
    outcome_fields,
    outcome_hour,
    outcome_hours,
    too_many_pending,
)

log = get_logger("gateway")
PURGE_EVERY = 1000  # finishes between purges of expired rows


class SqliteStore(SqliteKeyValues, SqliteQuotas, LocalChannels, Store):
    """Queue, records, key-values and owed events in one SQLite file; open with ``async with``."""

    name = "sqlite"

    def __init__(self, path: Path | str) -> None:
        Store.__init__(self)
        LocalChannels.__init__(self)
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._has_waiting = asyncio.Condition()
        self._finishes = 0

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._db is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = lock(self.path.with_name(self.path.name + ".lock"))
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        migrate(db)
        self._db = db
        with self._tx() as tx:
            stale = tx.execute("UPDATE leases SET renewed = 0").rowcount
            purge(tx, time.time())
        owed = self.db.execute("SELECT platform, event FROM owed ORDER BY id").fetchall()
        for platform, raw in owed:
            self._channel(platform).put(kept(raw))
        depth = await self.depth()
        log.info(
            "store_opened", store=self.name, path=str(self.path), waiting=depth, leases=stale, owed=len(owed)
        )

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("SqliteStore used before start()")
        return self._db

    def _tx(self) -> Transaction:
        return Transaction(self.db)

    # --- records --------------------------------------------------------------------------------
    async def save(self, record: JobRecord) -> bool:
        with self._tx() as tx:
            row = tx.execute("SELECT finished_at FROM records WHERE job_id = ?", (record.job_id,)).fetchone()
            if row is not None and row[0] is not None:
                return False
            tx.execute(
                "INSERT INTO records (job_id, user_id, data) VALUES (?, ?, ?)"
                " ON CONFLICT (job_id) DO UPDATE SET data = excluded.data",
                (record.job_id, record.user_id, record.to_json()),
            )
        return True

    async def get(self, job_id: str) -> JobRecord | None:
        row = self.db.execute("SELECT data FROM records WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else JobRecord.from_json(row[0])

    # --- queue ----------------------------------------------------------------------------------
    async def enqueue(
        self,
        record: JobRecord,
        *,
        max_depth: int | None = None,
        max_pending: int | None = None,
        rate: RateRule | None = None,
    ) -> Enqueued | None:
        job_id = record.job_id
        with self._tx() as tx:
            if tx.execute("SELECT 1 FROM records WHERE job_id = ?", (job_id,)).fetchone() is not None:
                position = await self.position(job_id)
                return Enqueued(position=position or 0, depth=await self.depth())
            depth = await self.depth()
            if max_depth is not None and depth >= max_depth:
                return None
            pending = await self.pending_count(record.user_id)
            if max_pending is not None and pending >= max_pending:
                raise too_many_pending(pending, max_pending)
            if rate is not None:
                self._hit(tx, rate)
            tx.execute(
                "INSERT INTO records (job_id, user_id, enqueued, pending, data) VALUES (?, ?, 1, 1, ?)",
                (job_id, record.user_id, record.to_json()),
            )
            position = append_waiting(tx, self.fair, job_id, record.user_id, depth)
        async with self._has_waiting:
            self._has_waiting.notify()
        return Enqueued(position=position, depth=depth + 1)

    def _hit(self, tx: sqlite3.Connection, rate: RateRule) -> None:
        """The sliding log of ``rate.key``: raise when it is full, else log this hit (inside enqueue's
        transaction, so a refused job rolls nothing back that it did not write)."""
        now = time.time() if rate.now is None else rate.now
        if rate.limit <= 0:  # (window_s > 0 is checked by RateRule)
            raise rate.exceeded(rate.window_s)
        tx.execute("DELETE FROM rate WHERE key = ? AND at <= ?", (rate.key, now - rate.window_s))
        count, oldest = tx.execute("SELECT count(*), min(at) FROM rate WHERE key = ?", (rate.key,)).fetchone()
        if count >= rate.limit:
            raise rate.exceeded(oldest + rate.window_s - now)
        tx.execute("INSERT INTO rate (key, at, until) VALUES (?, ?, ?)", (rate.key, now, now + rate.window_s))

    async def take(self, consumer: str, timeout_s: float) -> JobRecord | None:
        async with self._has_waiting:
            try:
                async with asyncio.timeout(timeout_s):
                    await self._has_waiting.wait_for(self._has_job)
            except TimeoutError:
                return None
            with self._tx() as tx:
                (job_id,) = tx.execute("SELECT job_id FROM waiting ORDER BY round, seq LIMIT 1").fetchone()
                tx.execute("DELETE FROM waiting WHERE job_id = ?", (job_id,))
                tx.execute(
                    "INSERT OR REPLACE INTO leases (job_id, consumer, renewed) VALUES (?, ?, ?)",
                    (job_id, consumer, time.time()),
                )
        return await self.get(job_id)

    def _has_job(self) -> bool:
        return self.db.execute("SELECT 1 FROM waiting LIMIT 1").fetchone() is not None

    async def ack(self, job_id: str) -> None:
        with self._tx() as tx:
            tx.execute("DELETE FROM leases WHERE job_id = ?", (job_id,))

    async def renew(self, consumer: str, job_ids: Collection[str]) -> None:
        now = time.time()
        with self._tx() as tx:
            tx.executemany(
                "UPDATE leases SET renewed = ? WHERE job_id = ? AND consumer = ?",
                [(now, job_id, consumer) for job_id in job_ids],
            )

    async def release(self, consumer: str, job_ids: Collection[str]) -> None:
        with self._tx() as tx:
            tx.executemany(
                "UPDATE leases SET renewed = 0 WHERE job_id = ? AND consumer = ?",
                [(job_id, consumer) for job_id in job_ids],
            )

    async def claim_stale(self, consumer: str, min_idle_s: float) -> list[JobRecord]:
        now = time.time()
        with self._tx() as tx:
            rows = tx.execute(
                "SELECT l.job_id, r.finished_at, r.data FROM leases l LEFT JOIN records r USING (job_id)"
                " WHERE l.renewed <= ? ORDER BY l.renewed",
                (now - min_idle_s,),
            ).fetchall()
            claimed: list[JobRecord] = []
            for job_id, finished_at, data in rows:
                if finished_at is not None or data is None:
                    tx.execute("DELETE FROM leases WHERE job_id = ?", (job_id,))
                    continue
                tx.execute(
                    "UPDATE leases SET consumer = ?, renewed = ? WHERE job_id = ?", (consumer, now, job_id)
                )
                claimed.append(JobRecord.from_json(data))
        return claimed

    async def remove_queued(self, job_id: str) -> bool:
        with self._tx() as tx:
            return tx.execute("DELETE FROM waiting WHERE job_id = ?", (job_id,)).rowcount > 0

    async def position(self, job_id: str) -> int | None:
        row = self.db.execute(
            "SELECT count(*) FROM waiting, (SELECT round AS r, seq AS s FROM waiting WHERE job_id = ?)"
            " WHERE round < r OR (round = r AND seq <= s)",
            (job_id,),
        ).fetchone()
        return row[0] or None

    async def depth(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM waiting").fetchone()[0])

    async def waiting(self, limit: int) -> list[str]:
        rows = self.db.execute("SELECT job_id FROM waiting ORDER BY round, seq LIMIT ?", (limit,)).fetchall()
        return [job_id for (job_id,) in rows]

    # --- outcome and events ---------------------------------------------------------------------
    async def finish(self, record: JobRecord, event: JobEvent) -> bool:
        now = time.time()
        raw = event_to_json(event)
        with self._tx() as tx:
            done = tx.execute(
                "UPDATE records SET data = ?, pending = 0, finished_at = ?"
                " WHERE job_id = ? AND finished_at IS NULL",
                (record.to_json(), now, record.job_id),
            ).rowcount
            if not done:
                if tx.execute("SELECT 1 FROM records WHERE job_id = ?", (record.job_id,)).fetchone():
                    return False
                tx.execute(
                    "INSERT INTO records (job_id, user_id, finished_at, data) VALUES (?, ?, ?, ?)",
                    (record.job_id, record.user_id, now, record.to_json()),
                )
            tx.execute("DELETE FROM waiting WHERE job_id = ?", (record.job_id,))
            hour = outcome_hour(now)
            tx.executemany(
                "INSERT INTO outcomes (hour, name, count) VALUES (?, ?, 1)"
                " ON CONFLICT (hour, name) DO UPDATE SET count = count + 1",
                [(hour, name) for name in outcome_fields(event)],
            )
            self._owe(tx, record.events_channel, event, raw, now)
            self._finishes += 1
            if self._finishes % PURGE_EVERY == 0:
                purge(tx, now)
        self._channel(record.events_channel).put(kept(raw))
        return True

    def _owe(self, tx: sqlite3.Connection, platform: str, event: JobEvent, raw: bytes, now: float) -> None:
        if isinstance(event, TERMINAL_EVENTS):
            tx.execute(
                "INSERT INTO owed (platform, job_id, at, event) VALUES (?, ?, ?, ?)",
                (platform, event.job_id, now, raw),
            )

    async def outcomes(self, now: float | None = None) -> dict[str, int]:
        hours = outcome_hours(time.time() if now is None else now)
        marks = ",".join("?" * len(hours))
        rows = self.db.execute(
            f"SELECT name, sum(count) FROM outcomes WHERE hour IN ({marks}) GROUP BY name", hours
        ).fetchall()
        return {name: int(count) for name, count in rows}

    async def publish(self, platform: str, event: JobEvent) -> None:
        raw = kept(event_to_json(event))
        if isinstance(event, TERMINAL_EVENTS):
            with self._tx() as tx:
                self._owe(tx, platform, event, raw, time.time())
        self._channel(platform).put(raw)

    async def event_handled(self, platform: str, job_id: str) -> None:
        with self._tx() as tx:
            tx.execute("DELETE FROM owed WHERE platform = ? AND job_id = ?", (platform, job_id))

    # --- cancel ---------------------------------------------------------------------------------
    async def request_cancel(self, job_id: str, by: str) -> None:
        with self._tx() as tx:
            tx.execute("INSERT OR REPLACE INTO cancels (job_id, by) VALUES (?, ?)", (job_id, by))
        self._broadcast_cancel(job_id, by)

    async def cancel_requested(self, job_id: str) -> str | None:
        row = self.db.execute("SELECT by FROM cancels WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else str(row[0])

    # --- per user and per workflow --------------------------------------------------------------
    async def pending_count(self, user_id: str) -> int:
        row = self.db.execute("SELECT count(*) FROM records WHERE user_id = ? AND pending = 1", (user_id,))
        return int(row.fetchone()[0])

    async def pending_jobs(self, user_id: str) -> list[str]:
        rows = self.db.execute(
            "SELECT job_id FROM records WHERE user_id = ? AND pending = 1 ORDER BY job_id", (user_id,)
        ).fetchall()
        return [job_id for (job_id,) in rows]

    async def recent(self, user_id: str, limit: int) -> list[JobRecord]:
        rows = self.db.execute(
            "SELECT data FROM records WHERE user_id = ? AND enqueued = 1 ORDER BY rowid DESC LIMIT ?",
            (user_id, limit),
        ).fetchall()
        return [JobRecord.from_json(data) for (data,) in rows]

    async def add_duration(self, workflow: str, run_ms: int) -> None:
        with self._tx() as tx:
            tx.execute("INSERT INTO durations (workflow, ms) VALUES (?, ?)", (workflow, run_ms))
            tx.execute(
                "DELETE FROM durations WHERE workflow = ? AND id NOT IN"
                " (SELECT id FROM durations WHERE workflow = ? ORDER BY id DESC LIMIT ?)",
                (workflow, workflow, DURATIONS_MAX),
            )

    async def durations(self, workflow: str) -> list[int]:
        rows = self.db.execute(
            "SELECT ms FROM durations WHERE workflow = ? ORDER BY id DESC", (workflow,)
        ).fetchall()
        return [int(ms) for (ms,) in rows]


__all__ = ["SqliteStore", "StoreLocked"]
