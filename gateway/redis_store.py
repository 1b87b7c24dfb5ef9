"""The shared job store: Redis Streams with consumer groups (``REDIS_URL`` set).

Keys (under ``prefix``, default ``comfybot:``):

* ``queue`` — stream of ``{job: <id>}``, consumer group ``workers``: the TAKE script adds a job's entry
  and reads it for the taker in one step (no unread entries), the pending entries list (PEL) is the lease
  table: a live worker ``XCLAIM``\\ s its own entries to reset their idle time, ``XAUTOCLAIM`` with
  ``min_idle`` hands a dead worker's entries to another, ``XACK`` + ``XDEL`` end them.
* ``waiting`` — sorted set job id → round * 2^24 + arrival in the round (``gateway/fair.py``; fifo: the
  enqueue sequence): the take order, ``ZRANK`` the position, ``ZCARD`` the depth, all O(log n).
  ``user:<id>:waiting`` holds the user's share of it (their newest round), ``rounds`` the arrivals per
  round, ``wake`` a short list each enqueue pushes to, for a blocked take.
* ``job:<id>`` — hash: ``rec`` (orjson record), ``entry`` (its stream id, once taken), ``uwait`` (its
  user's waiting key), ``done`` (set once, by ``finish``).
* ``events:<channel>`` — stream per event channel (the platform; a Discord shard N > 0: ``discord:shard-N``),
  consumer group ``frontends``. One durable ordered channel for every event, progress included: the
  order queued → started → progress → succeeded holds by construction (pub/sub for progress plus a stream
  for terminal events could deliver a progress after the result), and a front end that restarts resumes
  from its pending entries. A progress event is acked once the next is asked for; a terminal one only by
  ``event_handled``, after the chat shows it, so an outcome read by a process that dies is read again by
  its successor. ``MAXLEN ~`` bounds it; stale progress is skipped on catch-up (``max_age_s``). Each
  front-end replica reads as its own consumer; entries a dead one left pending are taken over by a live
  one after ``event_lease_s`` (``gateway/redis_events.py``).
* ``cancel:<id>`` + pub/sub channel ``cancels`` — cancel requests: broadcast to every worker, with the
  flag as the fallback for a worker that missed the broadcast.
* ``rate:submit:<user>`` — sorted set, the sliding log of the user's submissions (enqueue script).
* ``outcomes:<YYYYMMDDHH>`` — hash of counters of the jobs finished in that UTC hour (kept two days).
* ``user:<id>:pending`` (set), ``user:<id>:recent`` (list), ``settings:<key>``, ``delivered:<id>`` (set
  after the send), ``view:<id>`` + ``views_open:<platform>`` (the job's message; ``view_lease:<id>``, the
  replica that edits it, ``PX`` the lease), ``durations:<workflow>`` (list).

Connections and retries live in ``gateway/redis_base.py``: a Redis restart pauses the gateway, it
does not lose jobs.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Collection
from functools import partial
from typing import Any

import orjson

from core.logs import get_logger
from gateway.limits import RateRule
from gateway.models import JobEvent, event_to_json
from gateway.quota_stores import RedisQuotas
from gateway.records import JobRecord
from gateway.redis_base import text
from gateway.redis_events import RedisEvents
from gateway.store import (
    DURATIONS_MAX,
    EVENTS_MAX,
    OUTCOME_TTL_S,
    RECENT_MAX,
    RECORD_TTL_S,
    Enqueued,
    outcome_fields,
    outcome_hour,
    outcome_hours,
    too_many_pending,
)

log = get_logger("gateway")
RELEASED_IDLE_MS = 10**9  # a released lease looks unrenewed for ~11 days: stale to every worker


class RedisStore(RedisQuotas, RedisEvents):
    """Queue and state in Redis; open with ``async with RedisStore(url) as backend``."""

    # --- records --------------------------------------------------------------------------------
    async def save(self, record: JobRecord) -> bool:
        raw = record.to_json()
        keys = [self._key("job", record.job_id)]
        done = await self._retry(lambda: self._scripts["SAVE"](keys=keys, args=[raw]), "save")
        return bool(done)

    async def get(self, job_id: str) -> JobRecord | None:
        raw = await self._retry(lambda: self.redis.hget(self._key("job", job_id), "rec"), "get")
        return None if raw is None else JobRecord.from_json(raw)

    # --- queue ----------------------------------------------------------------------------------
    async def enqueue(
        self,
        record: JobRecord,
        *,
        max_depth: int | None = None,
        max_pending: int | None = None,
        rate: RateRule | None = None,
    ) -> Enqueued | None:
        keys = [
            self._key("job", record.job_id),
            self._waiting_key,
            self._key("seq"),
            self._key("user", record.user_id, "pending"),
            self._key("user", record.user_id, "recent"),
            self._key("rate", rate.key if rate is not None else record.user_id),
            self._key("user", record.user_id, "waiting"),
            self._key("rounds"),
            self._key("wake"),
        ]
        args: list[bytes | str | int] = [
            record.job_id,
            record.to_json(),
            max_depth or 0,
            RECENT_MAX,
            max_pending or 0,
            *(
                ("", "", "", "")
                if rate is None
                else (
                    rate.limit,
                    repr(float(rate.window_s)),
                    "" if rate.now is None else repr(float(rate.now)),
                    record.job_id,  # the log's member: unique, and the same if this call is retried
                )
            ),
            self.fair.order,
            self.fair.weight(record.user_id),
        ]
        code, value = await self._retry(lambda: self._scripts["ENQUEUE"](keys=keys, args=args), "enqueue")
        if code == -3 and rate is not None:
            raise rate.exceeded(float(value))
        if code == -2:
            raise too_many_pending(int(value), max_pending or 0)
        return None if code < 0 else Enqueued(position=int(code), depth=int(value))

    async def take(self, consumer: str, timeout_s: float) -> JobRecord | None:
        """TAKE picks the job (gateway/fair.py order); when none waits, block on the wake-up list that
        every enqueue pushes to (a wake-up another worker beat us to just loops)."""
        deadline = time.monotonic() + timeout_s
        keys = [self._waiting_key, self._stream, self._key("rounds"), self._key("taking", consumer)]
        while True:
            args = [consumer, self._key("job", ""), secrets.token_hex(8)]  # one nonce per attempt
            reply = await self._retry(partial(self._scripts["TAKE"], keys=keys, args=args), "take")
            if reply:
                job_id, entry_id, raw = text(reply[0]), reply[1], reply[2]
                self._entries[job_id] = entry_id
                return JobRecord.from_json(raw)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            await self._retry(partial(self.redis.blpop, [self._key("wake")], timeout=max(0.01, left)), "take")

    async def _ack_entry(self, entry_id: bytes) -> None:
        async def op() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xack(self._stream, "workers", entry_id)
                pipe.xdel(self._stream, entry_id)
                await pipe.execute()

        await self._retry(op, "ack")

    async def _entry_of(self, job_id: str) -> bytes | None:
        entry = self._entries.get(job_id)
        if entry is None:
            entry = await self._retry(lambda: self.redis.hget(self._key("job", job_id), "entry"), "entry")
        return entry

    async def ack(self, job_id: str) -> None:
        entry = await self._entry_of(job_id)
        self._entries.pop(job_id, None)
        if entry is not None:
            await self._ack_entry(entry)

    async def renew(self, consumer: str, job_ids: Collection[str]) -> None:
        entries = [self._entries[j] for j in job_ids if j in self._entries]
        if entries:
            await self._retry(
                lambda: self.redis.xclaim(
                    self._stream, "workers", consumer, min_idle_time=0, message_ids=entries, justid=True
                ),
                "renew",
            )

    async def release(self, consumer: str, job_ids: Collection[str]) -> None:
        entries = []
        for job_id in job_ids:
            entry = self._entries.get(job_id)
            if entry is None:
                continue
            pending = await self._retry(
                partial(self.redis.xpending_range, self._stream, "workers", entry, entry, 1), "release"
            )
            if pending and text(pending[0]["consumer"]) == consumer:  # only our own lease
                entries.append(self._entries.pop(job_id))
        if entries:
            await self._retry(
                lambda: self.redis.xclaim(
                    self._stream,
                    "workers",
                    consumer,
                    min_idle_time=0,
                    message_ids=entries,
                    idle=RELEASED_IDLE_MS,
                    justid=True,
                ),
                "release",
            )

    async def claim_stale(self, consumer: str, min_idle_s: float) -> list[JobRecord]:
        claimed: list[JobRecord] = []
        start: bytes | str = "0-0"
        while True:
            reply = await self._retry(
                partial(
                    self.redis.xautoclaim,
                    self._stream,
                    "workers",
                    consumer,
                    int(min_idle_s * 1000),
                    start_id=start,
                    count=100,
                ),
                "claim_stale",
            )
            start, entries = reply[0], reply[1]
            for entry_id, fields in entries:
                if not fields:
                    continue
                job_id = text(fields[b"job"])
                await self._retry(partial(self.redis.zrem, self._waiting_key, job_id), "claim_stale")
                record = await self.get(job_id)
                if record is None or record.state.terminal:
                    await self._ack_entry(entry_id)
                    continue
                self._entries[job_id] = entry_id
                claimed.append(record)
            if start in (b"0-0", "0-0"):
                return claimed

    async def remove_queued(self, job_id: str) -> bool:
        keys = [self._waiting_key, self._key("job", job_id)]
        removed = await self._retry(
            lambda: self._scripts["REMOVE_QUEUED"](keys=keys, args=[job_id]), "remove_queued"
        )
        return bool(removed)

    async def position(self, job_id: str) -> int | None:
        rank = await self._retry(lambda: self.redis.zrank(self._waiting_key, job_id), "position")
        return None if rank is None else int(rank) + 1

    async def depth(self) -> int:
        return int(await self._retry(lambda: self.redis.zcard(self._waiting_key), "depth"))

    async def waiting(self, limit: int) -> list[str]:
        ids = await self._retry(lambda: self.redis.zrange(self._waiting_key, 0, limit - 1), "waiting")
        return [text(i) for i in ids]

    # --- outcome and events ---------------------------------------------------------------------
    async def finish(self, record: JobRecord, event: JobEvent) -> bool:
        keys = [
            self._key("job", record.job_id),
            self._key("user", record.user_id, "pending"),
            self._waiting_key,
            self._key("events", record.events_channel),
            self._key("outcomes", outcome_hour(time.time())),
        ]
        args: list[bytes | str | int] = [
            record.job_id,
            record.to_json(),
            event_to_json(event),
            RECORD_TTL_S,
            EVENTS_MAX,
            OUTCOME_TTL_S,
            *outcome_fields(event),
        ]
        first = await self._retry(lambda: self._scripts["FINISH"](keys=keys, args=args), "finish")
        return bool(first)

    async def outcomes(self, now: float | None = None) -> dict[str, int]:
        hours = outcome_hours(time.time() if now is None else now)

        async def op() -> list[dict[bytes, bytes]]:
            async with self.redis.pipeline(transaction=False) as pipe:
                for hour in hours:
                    pipe.hgetall(self._key("outcomes", hour))
                return list(await pipe.execute())

        total: dict[str, int] = {}
        for counters in await self._retry(op, "outcomes"):
            for name, count in counters.items():
                total[text(name)] = total.get(text(name), 0) + int(count)
        return total

    # --- per user and per workflow --------------------------------------------------------------
    async def pending_count(self, user_id: str) -> int:
        key = self._key("user", user_id, "pending")
        return int(await self._retry(lambda: self.redis.scard(key), "pending_count"))

    async def pending_jobs(self, user_id: str) -> list[str]:
        key = self._key("user", user_id, "pending")
        ids = await self._retry(lambda: self.redis.smembers(key), "pending_jobs")
        return sorted(text(i) for i in ids)

    async def recent(self, user_id: str, limit: int) -> list[JobRecord]:
        key = self._key("user", user_id, "recent")
        ids = await self._retry(lambda: self.redis.lrange(key, 0, limit - 1), "recent")
        records = [await self.get(text(i)) for i in ids]
        return [r for r in records if r is not None]

    async def get_settings(self, user_key: str) -> dict[str, Any]:
        raw = await self._retry(lambda: self.redis.get(self._key("settings", user_key)), "get_settings")
        return {} if raw is None else dict(orjson.loads(raw))

    async def set_settings(self, user_key: str, values: dict[str, Any]) -> None:
        raw = orjson.dumps(values)
        await self._retry(lambda: self.redis.set(self._key("settings", user_key), raw), "set_settings")

    async def mark_delivered(self, job_id: str) -> bool:
        key = self._key("delivered", job_id)
        first = await self._retry(lambda: self.redis.set(key, 1, nx=True, ex=RECORD_TTL_S), "mark_delivered")
        return bool(first)

    async def delivered(self, job_id: str) -> bool:
        key = self._key("delivered", job_id)
        return bool(await self._retry(lambda: self.redis.exists(key), "delivered"))

    async def claim_once(self, key: str, ttl_s: float) -> bool:
        name, ttl_ms = self._key("claim", key), max(1, round(ttl_s * 1000))
        token = secrets.token_hex(8)

        async def op() -> bool:
            if await self.redis.set(name, token, nx=True, px=ttl_ms):
                return True
            # A retry after a lost reply finds its own claim: still the first.
            return bool(await self.redis.get(name) == token.encode())

        return await self._retry(op, "claim_once")

    async def set_view(self, job_id: str, view: dict[str, Any]) -> None:
        key, raw, platform = self._key("view", job_id), orjson.dumps(view), view.get("platform")

        async def op() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(key, raw, ex=RECORD_TTL_S)
                if isinstance(platform, str):
                    pipe.zadd(self._key("views_open", platform), {job_id: time.time()})
                await pipe.execute()

        await self._retry(op, "set_view")

    async def get_view(self, job_id: str) -> dict[str, Any] | None:
        raw = await self._retry(lambda: self.redis.get(self._key("view", job_id)), "get_view")
        return None if raw is None else dict(orjson.loads(raw))

    async def close_view(self, job_id: str) -> None:
        raw = await self._retry(lambda: self.redis.get(self._key("view", job_id)), "close_view")
        platform = orjson.loads(raw).get("platform") if raw is not None else None
        if isinstance(platform, str):
            key, lease = self._key("views_open", platform), self._key("view_lease", job_id)

            async def op() -> None:
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.zrem(key, job_id)
                    pipe.delete(lease)
                    await pipe.execute()

            await self._retry(op, "close_view")

    async def lease_view(self, platform: str, job_id: str, owner: str, ttl_s: float) -> str | None:
        keys = [self._key("views_open", platform), self._key("view_lease", job_id)]
        args: list[str | int] = [job_id, owner, max(1, round(ttl_s * 1000))]
        holder = await self._retry(lambda: self._scripts["LEASE_VIEW"](keys=keys, args=args), "lease_view")
        return None if holder is None else text(holder)

    async def open_views(self, platform: str, limit: int) -> list[tuple[str, dict[str, Any]]]:
        index = self._key("views_open", platform)
        ids = [
            text(i) for i in await self._retry(lambda: self.redis.zrange(index, 0, limit - 1), "open_views")
        ]
        if not ids:
            return []
        keys = [self._key("view", i) for i in ids]
        raws = await self._retry(lambda: self.redis.mget(keys), "open_views")
        gone = [i for i, raw in zip(ids, raws, strict=True) if raw is None]  # expired with their job
        if gone:
            await self._retry(lambda: self.redis.zrem(index, *gone), "open_views")
        return [(i, dict(orjson.loads(raw))) for i, raw in zip(ids, raws, strict=True) if raw is not None]

    async def add_duration(self, workflow: str, run_ms: int) -> None:
        key = self._key("durations", workflow)

        async def op() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.lpush(key, run_ms)
                pipe.ltrim(key, 0, DURATIONS_MAX - 1)
                await pipe.execute()

        await self._retry(op, "add_duration")

    async def durations(self, workflow: str) -> list[int]:
        key = self._key("durations", workflow)
        raw = await self._retry(lambda: self.redis.lrange(key, 0, -1), "durations")
        return [int(v) for v in raw]


__all__ = ["RedisStore"]
