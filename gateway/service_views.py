"""The reading half of :class:`gateway.service.Gateway`: event subscription, the chat views and
delivery marks, the user's queue, the admins' stats. A mixin: ``Gateway`` inherits it, so its
interface is one class; the dataclasses it returns are re-exported by ``gateway.service``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from comfy.workflows import Workflow, WorkflowRegistry
from gateway import metrics
from gateway.limits import Limits
from gateway.models import Blocked, JobEvent, JobState
from gateway.quotas import usage as quota_usage
from gateway.records import JobRecord
from gateway.servers import ServerPool
from gateway.store import Store

if TYPE_CHECKING:
    from gateway.worker import Worker


@dataclass(frozen=True)
class ServerStatus:
    """One ComfyUI server as this process's worker sees it."""

    name: str
    healthy: bool
    inflight: int
    capacity: int
    queue_remaining: int
    down_reason: str | None


@dataclass(frozen=True)
class GatewayStats:
    """What an admin asks for: the queue, the last day's outcomes (``Store.outcomes``), the mean of
    each workflow's recent run times, and the servers (none in a process that runs no worker)."""

    depth: int
    outcomes: dict[str, int]
    mean_run_s: dict[str, float]
    servers: list[ServerStatus]
    quota_usage: dict[str, dict[str, int]] = field(default_factory=dict)  # user -> {"hour": n, "day": n}


@dataclass(frozen=True)
class QueueInfo:
    """The queue as one user sees it: ``mine`` is ``(job_id, position)``, position 0 = running (or taken
    by a worker and next in line); ``blocked`` says why a job of ``mine`` waits when no healthy server
    can run it; ``servers``/``servers_down`` count this process's worker's servers (0: none here)."""

    depth: int
    mine: list[tuple[str, int]] = field(default_factory=list)
    blocked: dict[str, Blocked] = field(default_factory=dict)
    servers: int = 0
    servers_down: int = 0


class GatewayReads:
    """Reading methods of ``Gateway``; the attributes below are set by ``Gateway.__init__``."""

    store: Store
    registry: WorkflowRegistry
    limits: Limits
    pool: ServerPool | None
    worker: Worker | None
    replica: str
    replica_lease_s: float

    if TYPE_CHECKING:

        def blocker(self, workflow: Workflow, values: Mapping[str, Any]) -> Blocked | None: ...

    # --- reading --------------------------------------------------------------------------------
    def subscribe(self, platform: str, *, consumer: str = "main") -> AsyncGenerator[JobEvent, None]:
        """Events of the jobs of ``platform``, in order. Use with ``contextlib.aclosing``. With Redis,
        events that arrived while no subscriber ran are delivered when it starts."""
        return self.store.subscribe(platform, consumer=consumer)

    async def event_handled(self, platform: str, job_id: str) -> None:
        """Call once the chat shows ``job_id``'s outcome (see :meth:`Store.event_handled`)."""
        await self.store.event_handled(platform, job_id)

    async def set_view(self, job_id: str, view: dict[str, Any]) -> None:
        """Remember the chat message that shows ``job_id`` (see :meth:`Store.set_view`)."""
        await self.store.set_view(job_id, view)

    async def get_view(self, job_id: str) -> dict[str, Any] | None:
        return await self.store.get_view(job_id)

    async def close_view(self, job_id: str) -> None:
        await self.store.close_view(job_id)

    async def lease_view(self, platform: str, job_id: str) -> str | None:
        """Take or renew this replica's lease on the job's open view (see :meth:`Store.lease_view`)."""
        return await self.store.lease_view(platform, job_id, self.replica, self.replica_lease_s)

    async def open_views(self, platform: str, limit: int = 1000) -> list[tuple[str, dict[str, Any]]]:
        return await self.store.open_views(platform, limit)

    async def get_job(self, job_id: str) -> JobRecord | None:
        return await self.store.get(job_id)

    async def queue_info(self, user_id: str) -> QueueInfo:
        mine: list[tuple[str, int]] = []
        blocked: dict[str, Blocked] = {}
        for job_id in await self.store.pending_jobs(user_id):
            position = await self.store.position(job_id)
            mine.append((job_id, position or 0))
            record = await self.store.get(job_id)
            if (
                record is not None
                and record.state is JobState.QUEUED
                and record.request.workflow in self.registry
            ):
                why = self.blocker(self.registry.get(record.request.workflow), record.values)
                if why is not None:
                    blocked[job_id] = why
        mine.sort(key=lambda item: item[1])
        servers = self.servers()
        return QueueInfo(
            depth=await self.store.depth(),
            mine=mine,
            blocked=blocked,
            servers=len(servers),
            servers_down=sum(1 for s in servers if not s.healthy),
        )

    async def recent_jobs(self, user_id: str, limit: int = 10) -> list[JobRecord]:
        return await self.store.recent(user_id, limit)

    def servers(self) -> list[ServerStatus]:
        """The ComfyUI servers of this process's worker (none without one: it would know nothing)."""
        if self.pool is None or self.worker is None:
            return []
        return [
            ServerStatus(
                s.name,
                s.healthy,
                s.inflight,
                s.capacity,
                s.queue_remaining,
                None if s.healthy else s.down_reason or None,
            )
            for s in self.pool.servers
        ]

    async def stats(self) -> GatewayStats:
        """The numbers behind the admins' /stats and ``GET /v1/stats``."""
        mean_run_s: dict[str, float] = {}
        for name in self.registry.names():
            recent = await self.store.durations(name)  # fresh: the ETA cache may be 10 s old
            if recent:
                mean_run_s[name] = round(sum(recent) / len(recent) / 1000, 1)
        return GatewayStats(
            depth=await self.store.depth(),
            outcomes=await self.store.outcomes(),
            mean_run_s=mean_run_s,
            servers=self.servers(),
            quota_usage=await self._quota_usage(),
        )

    async def _quota_usage(self) -> dict[str, dict[str, int]]:
        if self.limits.quotas is None:
            return {}
        usage = await quota_usage(self.store)
        return {user: {str(w): n for w, n in used.items()} for user, used in usage.items()}

    async def mark_delivered(self, job_id: str) -> bool:
        """Record, after the send, that the result is in the chat; True the first time.

        Marked after the send, not before: a front end killed mid-send sends again on restart (the
        outcome is still owed, see :meth:`event_handled`) instead of leaving the message at "Sampling".
        """
        first = await self.store.mark_delivered(job_id)
        if first:
            record = await self.store.get(job_id)
            if record is not None:
                metrics.delivered(record.request.platform, record.finished_at)
        return first

    async def delivered(self, job_id: str) -> bool:
        """Whether this job's result is already in the chat (check before sending)."""
        return await self.store.delivered(job_id)


__all__ = ["GatewayReads", "GatewayStats", "QueueInfo", "ServerStatus"]
