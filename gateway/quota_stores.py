"""The :class:`~gateway.store.Quotas` half of each store, as mixins (memory, SQLite, Redis).

A counter is the set of job ids counted in one window, so a retried or repeated take of one job counts
once; all counters of a take are checked, then all counted, in one atomic step.
"""

from __future__ import annotations

import abc
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.sqlite_schema import Transaction
from gateway.store import QuotaCounter

T = TypeVar("T")

#: Redis: KEYS the counter hashes; ARGV job_id, then (limit, until) per key. 0 = counted, i = full.
QUOTA_TAKE = """
for i, key in ipairs(KEYS) do
  if redis.call('HEXISTS', key, ARGV[1]) == 0 and redis.call('HLEN', key) >= tonumber(ARGV[2 * i]) then
    return i
  end
end
for i, key in ipairs(KEYS) do
  redis.call('HSET', key, ARGV[1], 1)
  redis.call('EXPIREAT', key, math.ceil(tonumber(ARGV[2 * i + 1])))
end
return 0
"""


class MemoryQuotas:
    """In this process's memory."""

    _quotas: dict[str, tuple[float, set[str]]] | None = None  # key -> (until, job ids); made on first use

    def _live(self) -> dict[str, tuple[float, set[str]]]:
        now = time.time()
        self._quotas = {k: v for k, v in (self._quotas or {}).items() if v[0] > now}
        return self._quotas

    async def quota_take(self, job_id: str, counters: Sequence[QuotaCounter]) -> int | None:
        live = self._live()
        for i, c in enumerate(counters):
            ids = live.get(c.key, (c.until, set()))[1]
            if job_id not in ids and len(ids) >= c.limit:
                return i
        for c in counters:
            live.setdefault(c.key, (c.until, set()))[1].add(job_id)
        return None

    async def quota_give_back(self, job_id: str, keys: Sequence[str]) -> None:
        live = self._live()
        for key in keys:
            if key in live:
                live[key][1].discard(job_id)

    async def quota_counts(self, prefix: str) -> dict[str, int]:
        return {k: len(v[1]) for k, v in self._live().items() if k.startswith(prefix) and v[1]}


class SqliteQuotas(abc.ABC):
    """In the SQLite file (table ``quota``), one ``BEGIN IMMEDIATE`` per take."""

    @abc.abstractmethod
    def _tx(self) -> Transaction: ...

    @property
    @abc.abstractmethod
    def db(self) -> sqlite3.Connection: ...

    async def quota_take(self, job_id: str, counters: Sequence[QuotaCounter]) -> int | None:
        with self._tx() as tx:
            tx.execute("DELETE FROM quota WHERE until <= ?", (time.time(),))
            for i, c in enumerate(counters):
                mine = tx.execute("SELECT 1 FROM quota WHERE key = ? AND job_id = ?", (c.key, job_id))
                if mine.fetchone() is None:
                    (n,) = tx.execute("SELECT COUNT(*) FROM quota WHERE key = ?", (c.key,)).fetchone()
                    if n >= c.limit:
                        return i
            tx.executemany(
                "INSERT OR IGNORE INTO quota (key, job_id, until) VALUES (?, ?, ?)",
                [(c.key, job_id, c.until) for c in counters],
            )
        return None

    async def quota_give_back(self, job_id: str, keys: Sequence[str]) -> None:
        with self._tx() as tx:
            tx.executemany("DELETE FROM quota WHERE key = ? AND job_id = ?", [(k, job_id) for k in keys])

    async def quota_counts(self, prefix: str) -> dict[str, int]:
        rows = self.db.execute(
            "SELECT key, COUNT(*) FROM quota WHERE until > ? AND substr(key, 1, ?) = ? GROUP BY key",
            (time.time(), len(prefix), prefix),
        ).fetchall()
        return {str(k): int(n) for k, n in rows}


class RedisQuotas:
    """In Redis: a hash per counter (``quota:<key>``, job id → 1), expiring at the window's end. Mixed into
    :class:`~gateway.redis_store.RedisStore` before :class:`~gateway.redis_base.RedisBase`, whose
    connection and retries it uses."""

    prefix: str
    _quota_script: Any = None
    if TYPE_CHECKING:

        @property
        def redis(self) -> Any: ...

        async def _retry(self, op: Callable[[], Awaitable[T]], what: str) -> T: ...

    def _quota_key(self, key: str) -> str:
        return f"{self.prefix}quota:{key}"

    async def quota_take(self, job_id: str, counters: Sequence[QuotaCounter]) -> int | None:
        if self._quota_script is None:
            self._quota_script = self.redis.register_script(QUOTA_TAKE)
        keys = [self._quota_key(c.key) for c in counters]
        args: list[Any] = [job_id]
        for c in counters:
            args += [c.limit, repr(c.until)]
        full = int(await self._retry(lambda: self._quota_script(keys=keys, args=args), "quota_take"))
        return None if full == 0 else full - 1

    async def quota_give_back(self, job_id: str, keys: Sequence[str]) -> None:
        async def op() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                for key in keys:
                    pipe.hdel(self._quota_key(key), job_id)
                await pipe.execute()

        await self._retry(op, "quota_give_back")

    async def quota_counts(self, prefix: str) -> dict[str, int]:
        async def op() -> dict[str, int]:
            start = len(self._quota_key(""))
            names = [k async for k in self.redis.scan_iter(match=self._quota_key(prefix) + "*", count=500)]
            async with self.redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hlen(name)
                lengths = await pipe.execute() if names else []
            return {
                (name.decode() if isinstance(name, bytes) else str(name))[start:]: int(n)
                for name, n in zip(names, lengths, strict=True)
                if int(n)
            }

        return await self._retry(op, "quota_counts")


__all__ = ["QUOTA_TAKE", "MemoryQuotas", "RedisQuotas", "SqliteQuotas"]
