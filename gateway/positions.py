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

from comfy.workflows import WorkflowRegistry
from core.logs import get_logger
from gateway.finishing import Finisher
from gateway.models import Blocked, FailureCode, Queued
from gateway.records import JobRecord
from gateway.servers import ServerPool
from gateway.store import Jobs, Records

log = get_logger("gateway")


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
    """Publishes position changes of waiting jobs to their platforms, and why a job waits when no
    healthy server can run it (``Queued.blocked``).

    A job that stays blocked for ``queue_timeout_s`` (as seen by this process) fails ``no_backend``: it
    is taken out of the queue with ``remove_queued`` first, so of several workers exactly one fails it.
    """

    def __init__(
        self,
        store: Jobs,
        pool: ServerPool,
        *,
        registry: WorkflowRegistry | None = None,
        queue_timeout_s: float = 600.0,
        interval_s: float = 2.0,
        settle_s: float = 0.05,
        window: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.pool = pool
        self.registry = registry
        self.queue_timeout_s = queue_timeout_s
        self.durations = RecentDurations(store)
        self.finisher = Finisher(store)
        self.interval_s = interval_s
        self.settle_s = settle_s
        self.window = window
        self.clock = clock
        self._wake = asyncio.Event()
        # job_id -> (position, blocked) last published by this process
        self._sent: dict[str, tuple[int, Blocked | None]] = {}
        self._records: dict[str, JobRecord] = {}  # job_id -> its record (platform, workflow, values)
        self._blocked_since: dict[str, float] = {}  # job_id -> when this process first saw it blocked
        pool.on_change(self.changed)

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

    def blocker(self, record: JobRecord) -> Blocked | None:
        """Why no healthy server can run this job now (None: one can, or the workflow is gone)."""
        if self.registry is None or record.request.workflow not in self.registry:
            return None
        return self.pool.blocker(self.registry.get(record.request.workflow), record.values)

    async def publish_changes(self) -> int:
        """Publish for every waiting job (within the window) whose position or blocked reason changed,
        and fail the ones blocked past the bound; returns how many events were published."""
        waiting = await self.store.waiting(self.window)
        depth = await self.store.depth()
        published = 0
        now = self.clock()
        for index, job_id in enumerate(waiting):
            position = index + 1
            record = self._records.get(job_id)
            if record is None:
                record = await self.store.get(job_id)
                if record is None:
                    continue
                self._records[job_id] = record
            blocked = self.blocker(record)
            if blocked is None:
                self._blocked_since.pop(job_id, None)
            elif now - self._blocked_since.setdefault(job_id, now) >= self.queue_timeout_s:
                await self._give_up(record, blocked)
                continue
            if self._sent.get(job_id) == (position, blocked):
                continue
            eta = (
                None
                if blocked
                else await estimate_wait_s(self.durations, self.pool, record.request.workflow, position)
            )
            event = Queued(
                job_id=job_id,
                request_id=record.request.request_id,
                position=position,
                depth=depth,
                eta_s=eta,
                blocked=blocked,
            )
            await self.store.publish(record.events_channel, event)
            if blocked is not None and (job_id not in self._sent or self._sent[job_id][1] != blocked):
                with structlog.contextvars.bound_contextvars(
                    request_id=record.request.request_id, job_id=job_id
                ):
                    log.info("job_blocked", reason=blocked.reason, name=blocked.name, position=position)
            self._sent[job_id] = (position, blocked)
            published += 1
        for job_id in set(self._records) - set(waiting):
            self._sent.pop(job_id, None)
            self._records.pop(job_id, None)
            self._blocked_since.pop(job_id, None)
        return published

    async def _give_up(self, record: JobRecord, blocked: Blocked) -> None:
        """No server could run it for the whole bound: fail it, once, if it still waits."""
        with structlog.contextvars.bound_contextvars(
            request_id=record.request.request_id, job_id=record.job_id
        ):
            if not await self.store.remove_queued(record.job_id):
                return  # taken or cancelled meanwhile, or another worker gave up on it first
            detail = f"no server could run it for {self.queue_timeout_s:g} s ({blocked.reason}"
            detail += f": {blocked.name})" if blocked.name else ")"
            await self.finisher.failed(record, FailureCode.NO_BACKEND, detail)

    def blocked_for(self, job_id: str) -> float:
        """How long this process has seen ``job_id`` blocked while it waited in the queue (0: not)."""
        since = self._blocked_since.get(job_id)
        return 0.0 if since is None else max(0.0, self.clock() - since)

    async def taken_blocked(self, record: JobRecord, blocked: Blocked | None) -> None:
        """A job this worker took waits for a server that can run it (``ServerPool.acquire``'s
        ``on_blocked``): say why in its message. It is next in line, ahead of every waiting job."""
        with structlog.contextvars.bound_contextvars(
            request_id=record.request.request_id, job_id=record.job_id
        ):
            if blocked is not None:
                log.info("job_blocked", reason=blocked.reason, name=blocked.name, position=1)
            try:
                depth = await self.store.depth()
                event = Queued(
                    job_id=record.job_id,
                    request_id=record.request.request_id,
                    position=1,
                    depth=depth + 1,
                    blocked=blocked,
                )
                await self.store.publish(record.events_channel, event)
            except Exception as exc:  # the job still waits and runs; only the notice is lost
                log.warning("queue_positions_failed", error=repr(exc))


__all__ = ["PositionNotifier", "RecentDurations", "estimate_wait_s"]
