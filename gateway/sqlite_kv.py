"""The :class:`~gateway.store.KeyValues` half of the SQLite store, as a mixin (like ``quota_stores.py``).

All of it is the ``kv`` table, one row per ``(kind, key)``: per-user settings, the chat views with the
open-view index and their leases, delivery marks and ``claim_once`` claims. ``at`` is when a row was
written, or for a lease or a claim when it lapses.
"""

from __future__ import annotations

import abc
import sqlite3
import time
from typing import Any

import orjson

from gateway.sqlite_schema import Transaction


class SqliteKeyValues(abc.ABC):
    """Settings, views, leases, delivery marks and claims in the SQLite file (table ``kv``)."""

    @abc.abstractmethod
    def _tx(self) -> Transaction: ...

    @property
    @abc.abstractmethod
    def db(self) -> sqlite3.Connection: ...

    async def get_settings(self, user_key: str) -> dict[str, Any]:
        raw = self._value("settings", user_key)
        return {} if raw is None else dict(orjson.loads(raw))

    async def set_settings(self, user_key: str, values: dict[str, Any]) -> None:
        self._put("settings", user_key, orjson.dumps(values))

    async def mark_delivered(self, job_id: str) -> bool:
        with self._tx() as tx:
            return (
                tx.execute(
                    "INSERT OR IGNORE INTO kv (kind, key, value, at) VALUES ('delivered', ?, x'', ?)",
                    (job_id, time.time()),
                ).rowcount
                > 0
            )

    async def delivered(self, job_id: str) -> bool:
        return self._value("delivered", job_id) is not None

    async def claim_once(self, key: str, ttl_s: float) -> bool:
        now = time.time()
        with self._tx() as tx:  # ``at`` of a claim is when it expires; expired ones go on every claim
            tx.execute("DELETE FROM kv WHERE kind = 'claim' AND at <= ?", (now,))
            return (
                tx.execute(
                    "INSERT OR IGNORE INTO kv (kind, key, value, at) VALUES ('claim', ?, x'', ?)",
                    (key, now + ttl_s),
                ).rowcount
                > 0
            )

    async def set_view(self, job_id: str, view: dict[str, Any]) -> None:
        now, platform = time.time(), view.get("platform")
        with self._tx() as tx:
            put = "INSERT OR REPLACE INTO kv (kind, key, value, at) VALUES (?, ?, ?, ?)"
            tx.execute(put, ("view", job_id, orjson.dumps(view), now))
            if isinstance(platform, str):
                tx.execute(put, ("open_view", job_id, platform.encode(), now))

    async def close_view(self, job_id: str) -> None:
        with self._tx() as tx:
            tx.execute("DELETE FROM kv WHERE kind IN ('open_view', 'view_lease') AND key = ?", (job_id,))

    async def lease_view(self, platform: str, job_id: str, owner: str, ttl_s: float) -> str | None:
        now = time.time()  # ``at`` of a lease is when it lapses
        with self._tx() as tx:
            if not tx.execute(
                "SELECT 1 FROM kv WHERE kind = 'open_view' AND key = ? AND value = ?",
                (job_id, platform.encode()),
            ).fetchone():
                return None
            row = tx.execute(
                "SELECT value, at FROM kv WHERE kind = 'view_lease' AND key = ?", (job_id,)
            ).fetchone()
            if row is not None and bytes(row[0]) != owner.encode() and row[1] > now:
                return bytes(row[0]).decode()
            tx.execute(
                "INSERT OR REPLACE INTO kv (kind, key, value, at) VALUES ('view_lease', ?, ?, ?)",
                (job_id, owner.encode(), now + ttl_s),
            )
            return owner

    async def open_views(self, platform: str, limit: int) -> list[tuple[str, dict[str, Any]]]:
        rows = self.db.execute(
            "SELECT o.key, v.value FROM kv o JOIN kv v ON v.kind = 'view' AND v.key = o.key "
            "WHERE o.kind = 'open_view' AND o.value = ? ORDER BY o.at LIMIT ?",
            (platform.encode(), limit),
        ).fetchall()
        return [(str(key), dict(orjson.loads(bytes(raw)))) for key, raw in rows]

    async def get_view(self, job_id: str) -> dict[str, Any] | None:
        raw = self._value("view", job_id)
        return None if raw is None else dict(orjson.loads(raw))

    def _value(self, kind: str, key: str) -> bytes | None:
        row = self.db.execute("SELECT value FROM kv WHERE kind = ? AND key = ?", (kind, key)).fetchone()
        return None if row is None else bytes(row[0])

    def _put(self, kind: str, key: str, value: bytes) -> None:
        with self._tx() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO kv (kind, key, value, at) VALUES (?, ?, ?, ?)",
                (kind, key, value, time.time()),
            )


__all__ = ["SqliteKeyValues"]
