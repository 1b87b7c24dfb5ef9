"""Connection handling shared by the Redis backend: the client, key names, and retries.

Every call survives Redis going away: connection errors are retried with backoff for ``retry_for_s``
(logged ``redis_unavailable``), so a Redis restart pauses the gateway instead of losing jobs. Retries
happen here, not inside redis-py, which would silently re-send a blocking ``XREADGROUP`` after a
reconnect and lose entries already assigned to us.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.logs import get_logger
from gateway import redis_scripts
from gateway.store import Store

log = get_logger("gateway")
T = TypeVar("T")
RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError)  # OSError covers TimeoutError
CALL_TIMEOUT_S = 10.0  # every call blocks for at most 1 s server-side; more means the link is dead


def reraise_cancel() -> None:
    """Stop if this task is being cancelled. A cancel that lands while redis-py reads a reply can be lost
    inside redis-py's own timeout handling on Python 3.11 (seen after a Redis restart: the task stayed
    "cancelling" and kept looping); checking ``cancelling()`` before each call makes it stick."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisBase(Store):
    """The connection half of :class:`~gateway.redis_store.RedisStore`."""

    name = "redis"
    shared = True

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "comfybot:",
        retry_for_s: float = 60.0,
        max_age_s: float = 60.0,
        event_lease_s: float = 30.0,
    ) -> None:
        super().__init__()
        self.url = url
        self.prefix = prefix
        self.retry_for_s = retry_for_s
        self.max_age_s = max_age_s  # non-terminal events older than this are skipped on catch-up
        # A subscriber's unacknowledged events idle this long are another live subscriber's to take:
        # the replica that read them died (a live one renews what it owes every third of it).
        self.event_lease_s = event_lease_s
        # Terminal events read but not yet shown in the chat: (stream, job_id) -> entry id, acked by
        # ``event_handled``. A process killed before that reads them again when it restarts.
        self._owed: dict[tuple[str, str], bytes] = {}
        self._redis: aioredis.Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._entries: dict[str, bytes] = {}  # job_id -> stream entry id, for leases this process holds
        self._stream = f"{prefix}queue"
        self._waiting_key = f"{prefix}waiting"

    @property
    def redis(self) -> Any:
        """The client, typed ``Any`` on purpose: redis-py types every reply as a union of RESP2/RESP3
        shapes; this module decodes each reply explicitly instead."""
        if self._redis is None:
            raise RuntimeError("RedisStore used before start()")
        return self._redis

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def start(self) -> None:
        if self._redis is None:
            # No retries inside redis-py: a blocking XREADGROUP it silently re-sends after a reconnect can
            # lose entries already assigned to us; _retry and subscribe handle errors knowing that.
            self._redis = self._connect()
            for name in (
                "ENQUEUE",
                "TAKE",
                "REMOVE_QUEUED",
                "SAVE",
                "FINISH",
                "LEASE_VIEW",
                "DROP_IDLE_CONSUMERS",
            ):
                self._scripts[name] = self._redis.register_script(getattr(redis_scripts, name))
        await self._retry(lambda: self._ensure_group(self._stream, "workers"), "start")

    def _connect(self) -> Any:  # see ``redis``: replies are decoded by hand
        return aioredis.Redis.from_url(
            self.url, decode_responses=False, retry=Retry(NoBackoff(), 0), socket_connect_timeout=5
        )

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def _ensure_group(self, stream: str, group: str) -> None:
        try:
            await self.redis.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def put_blob(self, name: str, data: bytes, ttl_ms: int) -> None:
        """Keep ``data`` under ``blob:<name>`` for ``ttl_ms`` (see :mod:`gateway.blobs`)."""
        key = self._key("blob", name)
        await self._retry(lambda: self.redis.set(key, data, px=ttl_ms), "blob_put")

    async def get_blob(self, name: str) -> bytes | None:
        key = self._key("blob", name)
        data = await self._retry(lambda: self.redis.get(key), "blob_get")
        return None if data is None else bytes(data)

    async def _retry(self, op: Callable[[], Awaitable[T]], what: str) -> T:
        """Run ``op``, retrying connection errors with backoff for ``retry_for_s``."""
        deadline = time.monotonic() + self.retry_for_s
        delay = 0.05
        while True:
            reraise_cancel()
            try:
                async with asyncio.timeout(CALL_TIMEOUT_S):  # a half-open connection never answers
                    return await op()
            except RETRYABLE as exc:
                reraise_cancel()
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("redis_unavailable", op=what, error=repr(exc), retry_in_s=delay)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # The stream or group vanished (Redis lost its data): recreate and go on.
                log.warning("redis_group_recreated", op=what)
                await self._ensure_group(self._stream, "workers")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


__all__ = ["CALL_TIMEOUT_S", "RETRYABLE", "RedisBase", "reraise_cancel", "text"]
