"""The event half of the Redis backend: per-platform event streams (consumer group ``frontends``) and
cancel requests. See :mod:`gateway.redis_store` for the keys.

Every front-end replica reads as its own consumer. A terminal event stays pending (owed) until
``event_handled``; the subscriber renews what it owes (``XCLAIM`` to itself, every third of
``event_lease_s``) and takes over, with ``XAUTOCLAIM``, every entry idle longer than that: what a
replica that died had read and not shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
from functools import partial
from typing import Any

import orjson
from redis.exceptions import ResponseError

from core.logs import get_logger
from gateway.models import TERMINAL_EVENTS, JobEvent, event_from_json, event_to_json
from gateway.redis_base import CALL_TIMEOUT_S, RETRYABLE, RedisBase, reraise_cancel, text
from gateway.store import EVENTS_MAX, RECORD_TTL_S

log = get_logger("gateway")


class RedisEvents(RedisBase):
    """Events and cancel requests in Redis (the rest of :class:`~gateway.redis_store.RedisStore`)."""

    async def publish(self, platform: str, event: JobEvent) -> None:
        stream = self._key("events", platform)
        raw = event_to_json(event)
        await self._retry(
            lambda: self.redis.xadd(stream, {"ev": raw}, maxlen=EVENTS_MAX, approximate=True), "publish"
        )

    async def subscribe(self, platform: str, *, consumer: str = "main") -> AsyncGenerator[JobEvent, None]:
        stream = self._key("events", platform)
        await self._retry(lambda: self._ensure_group(stream, "frontends"), "subscribe")
        cursor = "0"  # first our own unacknowledged events (a restart), then new ones
        handling: bytes | None = None  # acked once the consumer comes back for more, or stops cleanly
        next_claim = 0.0  # when to renew our owed entries and take over those of a dead replica
        reader = self._connect()  # its own connection: a blocking read must not share the pool
        try:
            while True:
                reraise_cancel()
                claimed = time.monotonic() >= next_claim
                if claimed:
                    next_claim = time.monotonic() + self.event_lease_s / 3
                    entries = await self._take_over(stream, consumer)
                else:
                    try:
                        async with asyncio.timeout(CALL_TIMEOUT_S):  # a half-open connection never answers
                            reply = await reader.xreadgroup(
                                "frontends", consumer, {stream: cursor}, count=100, block=1000
                            )
                    except (*RETRYABLE, ResponseError) as exc:
                        reraise_cancel()
                        # The reply may have been lost with entries already assigned to us: read our own
                        # pending entries again ("0") once Redis is back.
                        log.warning("redis_unavailable", op="subscribe", error=repr(exc))
                        cursor = "0"
                        await asyncio.sleep(0.2)
                        await self._retry(lambda: self._ensure_group(stream, "frontends"), "subscribe")
                        continue
                    entries = reply[0][1] if reply else []
                    if not entries and cursor != ">":
                        cursor = ">"
                for entry_id, fields in entries:
                    if cursor != ">" and not claimed:
                        cursor = entry_id  # our pending entries: owed ones stay pending, so read on past them
                    event = event_from_json(fields[b"ev"])
                    if isinstance(event, TERMINAL_EVENTS):
                        # At least once: acked by ``event_handled`` after the front end has shown it.
                        if self._owed.get((stream, event.job_id)) != entry_id:
                            self._owed[(stream, event.job_id)] = entry_id
                            yield event
                        continue
                    if time.time() - event.at <= self.max_age_s and not claimed:
                        handling = entry_id
                        yield event
                        handling = None
                    await self._retry(partial(self.redis.xack, stream, "frontends", entry_id), "subscribe")
        finally:
            # A process killed while handling never gets here: that event is delivered again on restart.
            if handling is not None and self._redis is not None:
                with contextlib.suppress(*RETRYABLE):
                    async with asyncio.timeout(2):
                        await self.redis.xack(stream, "frontends", handling)
            await reader.aclose()

    async def _take_over(self, stream: str, consumer: str) -> list[Any]:
        """Renew the entries ``consumer`` owes (terminal events read, not yet shown: XCLAIM to itself
        resets their idle time) and take over every entry of the group idle for ``event_lease_s``: what
        a replica that died had read and not acknowledged. A dead replica's progress is dropped (newer
        comes); its outcomes are returned to be shown here. Consumers that owe nothing and have not read
        for the lease are dropped from the group (a restart under ``<host>-<pid>`` is a new one)."""
        owned = [entry for (s, _), entry in self._owed.items() if s == stream]
        if owned:
            await self._retry(
                lambda: self.redis.xclaim(
                    stream, "frontends", consumer, min_idle_time=0, message_ids=owned, justid=True
                ),
                "renew_events",
            )
        taken: list[Any] = []
        start: bytes | str = "0-0"
        idle_ms = max(1, round(self.event_lease_s * 1000))
        while True:
            reply = await self._retry(
                partial(
                    self.redis.xautoclaim, stream, "frontends", consumer, idle_ms, start_id=start, count=100
                ),
                "take_over_events",
            )
            start = reply[0]
            taken.extend((entry_id, fields) for entry_id, fields in reply[1] if fields)
            if start in (b"0-0", "0-0"):
                break
        if taken:
            log.info("events_taken_over", stream=stream, consumer=consumer, count=len(taken))
        args: list[str | int] = ["frontends", consumer, idle_ms]
        await self._retry(
            lambda: self._scripts["DROP_IDLE_CONSUMERS"](keys=[stream], args=args), "drop_idle_consumers"
        )
        return taken

    async def event_handled(self, platform: str, job_id: str) -> None:
        stream = self._key("events", platform)
        entry_id = self._owed.pop((stream, job_id), None)
        if entry_id is not None:
            await self._retry(partial(self.redis.xack, stream, "frontends", entry_id), "event_handled")

    # --- cancel ---------------------------------------------------------------------------------
    async def request_cancel(self, job_id: str, by: str) -> None:
        async def op() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(self._key("cancel", job_id), by, ex=RECORD_TTL_S)
                pipe.publish(self._key("cancels"), orjson.dumps([job_id, by]))
                await pipe.execute()

        await self._retry(op, "request_cancel")

    async def cancel_requested(self, job_id: str) -> str | None:
        by = await self._retry(lambda: self.redis.get(self._key("cancel", job_id)), "cancel_requested")
        return None if by is None else text(by)

    async def cancel_requests(self) -> AsyncGenerator[tuple[str, str], None]:
        channel = self._key("cancels")
        while True:
            reraise_cancel()
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                while True:
                    reraise_cancel()  # a cancel lost inside get_message's timeout must still stop us
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        job_id, by = orjson.loads(message["data"])
                        yield str(job_id), str(by)
            except RETRYABLE as exc:
                reraise_cancel()
                # Missed requests are caught by the workers' periodic cancel_requested check.
                log.warning("redis_unavailable", op="cancel_requests", error=repr(exc))
                await asyncio.sleep(0.5)
            finally:
                await pubsub.aclose()


__all__ = ["RedisEvents"]
