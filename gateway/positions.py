"""Queue position updates: ``Queued(position)`` for waiting jobs whose position changed.

Runs in every worker. Woken when this worker took a job, and every ``interval_s`` regardless, to see
changes made elsewhere (another worker took a job, a user cancelled one). A wake waits ``settle_s``
first: a burst of takes becomes one pass, and the pass stays off the path of the job just taken (on its
way to ComfyUI) — a position shown 50 ms later is no different to a user. Only the first ``window``
waiting jobs get updates; the ones behind them learn their position when they move into the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from gateway.models import Queued
from gateway.servers import ServerPool
from gateway.store import Jobs, Records

log = structlog.get_logger(component="gateway")


class RecentDurations:
    """Recent run times per workflow, re-read from the store at most every ``ttl_s``: an ETA needs no
    fresher numbers, and it saves ``submit`` and the position loop a round trip per job."""

    def __init__(
        self, store: Records, *, ttl_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.clock = clock
        self._cache: dict[str, tuple[float, list[int]]] = {}

    async def get(self, workflow: str) -> list[int]:
        now = self.clock()
        hit = self._cache.get(workflow)
        if hit is None or hit[0] <= now:
            hit = (now + self.ttl_s, await self.store.durations(workflow))
            self._cache[workflow] = hit
        return hit[1]


async def estimate_wait_s(
    durations: RecentDurations, pool: ServerPool, workflow: str, position: int
) -> float | None:
    """Rough wait: jobs ahead × recent mean run time of this workflow ÷ healthy servers."""
    recent = await durations.get(workflow)
    if not recent:
        return None
    servers = max(1, sum(1 for s in pool.servers if s.healthy))
    return round(position * (sum(recent) / len(recent) / 1000) / servers, 1)


class PositionNotifier:
    """Publishes position changes of waiting jobs to their platforms."""

    def __init__(
        self,
        store: Jobs,
        pool: ServerPool,
        *,
        interval_s: float = 2.0,
        settle_s: float = 0.05,
        window: int = 100,
    ) -> None:
        self.store = store
        self.pool = pool
        self.durations = RecentDurations(store)
        self.interval_s = interval_s
        self.settle_s = settle_s
        self.window = window
        self._wake = asyncio.Event()
        self._sent: dict[str, int] = {}  # job_id -> last position published by this process
        self._meta: dict[str, tuple[str, str, str]] = {}  # job_id -> (platform, request_id, workflow)

    def changed(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await self._wake.wait()
                    await asyncio.sleep(self.settle_s)
            self._wake.clear()
            try:
                await self.publish_changes()
            except Exception as exc:
                log.warning("queue_positions_failed", error=repr(exc))

    async def publish_changes(self) -> int:
        """Publish for every waiting job (within the window) whose position changed; returns how many."""
        waiting = await self.store.waiting(self.window)
        depth = await self.store.depth()
        published = 0
        for index, job_id in enumerate(waiting):
            position = index + 1
            if self._sent.get(job_id) == position:
                continue
            meta = self._meta.get(job_id)
            if meta is None:
                record = await self.store.get(job_id)
                if record is None:
                    continue
                meta = (record.platform, record.request.request_id, record.request.workflow)
                self._meta[job_id] = meta
            platform, request_id, workflow = meta
            eta = await estimate_wait_s(self.durations, self.pool, workflow, position)
            event = Queued(job_id=job_id, request_id=request_id, position=position, depth=depth, eta_s=eta)
            await self.store.publish(platform, event)
            self._sent[job_id] = position
            published += 1
        gone = set(self._sent) - set(waiting)
        for job_id in gone:
            self._sent.pop(job_id, None)
            self._meta.pop(job_id, None)
        return published


__all__ = ["PositionNotifier", "RecentDurations", "estimate_wait_s"]
