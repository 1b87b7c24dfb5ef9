"""The job store: four narrow protocols (queue, records, events, key-values) and :class:`Store`, all four.

Two implementations: :class:`~gateway.memory.MemoryStore` (embedded, the default, nothing to install)
and :class:`~gateway.redis_store.RedisStore` (Redis Streams with a consumer group; jobs survive a
restart and any number of processes on any machines share it). ``tests/gateway/test_store_contract.py``
holds both to the same behaviour.

Semantics shared by both:

* **Queue** — ``enqueue`` stores the record and appends the job; ``take`` hands the oldest waiting job to
  one consumer under a *lease*; the consumer ``renew``\\ s its leases while it works and ``ack``\\ s when
  done. A lease not renewed for ``min_idle_s`` can be taken over with ``claim_stale`` (the worker died).
  ``remove_queued`` and ``take`` race safely: exactly one of them wins a waiting job.
* **Outcome** — ``finish`` writes the terminal record and publishes the terminal event *once* per job,
  whoever calls it and however often; a ``save`` after that is ignored.
* **Events** — ``publish(platform, ev)`` appends to that platform's durable, ordered channel;
  ``subscribe(platform)`` reads it. Events published while no subscriber runs are kept (bounded) and
  delivered when one starts; subscribers of one platform share the channel (each event goes to one).
  The channel's name is the job's ``JobRecord.events_channel``: the platform, unless the request names
  another (a sharded Discord front end names its shard's, ``discord:shard-N``).
* **Cancel requests** reach every worker (``cancel_requests``) and are also kept as a flag
  (``cancel_requested``) for a worker that missed the broadcast.
"""

from __future__ import annotations

import abc
import time
from collections.abc import AsyncGenerator, Collection, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

from gateway.errors import LimitExceeded
from gateway.fair import FairPolicy
from gateway.limits import RateRule
from gateway.models import Failed, FailureCode, JobEvent
from gateway.records import JobRecord

RECENT_MAX = 50  # per-user recent jobs kept
DURATIONS_MAX = 20  # per-workflow run times kept for the ETA
EVENTS_MAX = 100_000  # per-platform events kept for subscribers that are away
RECORD_TTL_S = 7 * 24 * 3600  # finished records and delivery markers live a week
OUTCOME_HOURS = 24  # outcomes are counted per UTC hour; ``outcomes()`` sums the last day
OUTCOME_TTL_S = 2 * 24 * 3600


@dataclass(frozen=True)
class Enqueued:
    """Where ``enqueue`` put a job: ``position`` 1 is next to run; ``depth`` counts waiting jobs."""

    position: int
    depth: int


def outcome_fields(event: JobEvent) -> tuple[str, ...]:
    """The counters a terminal event adds one to: its kind, and a failure's code (``failed:<code>``)."""
    if isinstance(event, Failed):
        return (event.kind, f"failed:{event.code.value}")
    return (event.kind,)


def outcome_hour(at: float) -> str:
    """The UTC hour bucket of a moment, ``YYYYMMDDHH``."""
    return time.strftime("%Y%m%d%H", time.gmtime(at))


def outcome_hours(now: float, hours: int = OUTCOME_HOURS) -> list[str]:
    """The buckets of the last ``hours`` hours, this one included."""
    return [outcome_hour(now - 3600 * h) for h in range(hours)]


def too_many_pending(pending: int, limit: int) -> LimitExceeded:
    return LimitExceeded(f"{pending} pending, limit {limit}", code=FailureCode.TOO_MANY_PENDING)


class SettingsStore:
    """Per-user settings (a JSON object per key), persisted by the store: ``get``/``set``."""

    def __init__(self, store: KeyValues) -> None:
        self._store = store

    async def get(self, user_key: str) -> dict[str, Any]:
        return await self._store.get_settings(user_key)

    async def set(self, user_key: str, values: dict[str, Any]) -> None:
        await self._store.set_settings(user_key, values)


class Queue(Protocol):
    """The job queue: leased takes, renewals, takeover of a dead consumer's jobs."""

    @abc.abstractmethod
    async def enqueue(
        self,
        record: JobRecord,
        *,
        max_depth: int | None = None,
        max_pending: int | None = None,
        rate: RateRule | None = None,
    ) -> Enqueued | None:
        """Store and append a job, if admitted. In this order: ``None`` when ``max_depth`` jobs already
        wait; :func:`too_many_pending` raised when its user has ``max_pending`` unfinished jobs;
        ``rate.exceeded(...)`` raised when the user is over ``rate`` — only a job that passes the caps
        counts against the rate. All three checks are atomic with the append (front ends in many
        processes), in one round trip. Idempotent per job_id (a retry is neither checked nor counted)."""

    @abc.abstractmethod
    async def take(self, consumer: str, timeout_s: float) -> JobRecord | None:
        """The oldest waiting job, leased to ``consumer``; ``None`` if none came within ``timeout_s``."""

    @abc.abstractmethod
    async def ack(self, job_id: str) -> None:
        """Drop the job from the queue for good (its lease ends)."""

    @abc.abstractmethod
    async def renew(self, consumer: str, job_ids: Collection[str]) -> None:
        """Refresh the leases ``consumer`` holds on these jobs."""

    @abc.abstractmethod
    async def release(self, consumer: str, job_ids: Collection[str]) -> None:
        """Hand ``consumer``'s leases on ``job_ids`` back (a worker stopping with them unfinished): the
        next :meth:`claim_stale` of any worker takes them at once, without waiting for them to lapse."""

    async def claim_stale(self, consumer: str, min_idle_s: float) -> list[JobRecord]:
        """Take over jobs whose lease was not renewed for ``min_idle_s`` (finished ones are just acked)."""

    @abc.abstractmethod
    async def remove_queued(self, job_id: str) -> bool:
        """Remove a job that still waits; False if a worker already took it (or it is unknown)."""

    @abc.abstractmethod
    async def position(self, job_id: str) -> int | None:
        """1-based position among waiting jobs; ``None`` if it no longer waits."""

    @abc.abstractmethod
    async def depth(self) -> int: ...

    @abc.abstractmethod
    async def waiting(self, limit: int) -> list[str]:
        """The first ``limit`` waiting job ids, next to run first."""


class Records(Protocol):
    """Job records and what is derived from them: terminal outcome, per-user lists, run times."""

    @abc.abstractmethod
    async def save(self, record: JobRecord) -> bool:
        """Store a non-terminal update of a record. False (and nothing written) once it finished."""

    @abc.abstractmethod
    async def get(self, job_id: str) -> JobRecord | None: ...

    @abc.abstractmethod
    async def finish(self, record: JobRecord, event: JobEvent) -> bool:
        """Write the terminal record, count its outcome (:func:`outcome_fields`) in this hour's bucket and
        publish ``event`` to its platform — once, atomically. True the first time."""

    @abc.abstractmethod
    async def outcomes(self, now: float | None = None) -> dict[str, int]:
        """Finished jobs of the last :data:`OUTCOME_HOURS` hours by outcome: ``succeeded``, ``failed``,
        ``failed:<code>``, ``cancelled``, ``timed_out`` (absent: none). ``now`` is for tests."""

    @abc.abstractmethod
    async def pending_count(self, user_id: str) -> int:
        """Jobs of this user that are queued or running."""

    @abc.abstractmethod
    async def pending_jobs(self, user_id: str) -> list[str]: ...

    @abc.abstractmethod
    async def recent(self, user_id: str, limit: int) -> list[JobRecord]:
        """This user's most recent jobs, newest first."""

    @abc.abstractmethod
    async def add_duration(self, workflow: str, run_ms: int) -> None: ...

    @abc.abstractmethod
    async def durations(self, workflow: str) -> list[int]:
        """Recent run times of this workflow in ms, newest first."""


class Events(Protocol):
    """Per-platform event channels and cancel requests."""

    @abc.abstractmethod
    async def publish(self, platform: str, event: JobEvent) -> None: ...

    @abc.abstractmethod
    def subscribe(self, platform: str, *, consumer: str = "main") -> AsyncGenerator[JobEvent, None]:
        """Events of one platform in publish order; close it with ``contextlib.aclosing``."""

    @abc.abstractmethod
    async def event_handled(self, platform: str, job_id: str) -> None:
        """The front end has shown this job's terminal event: it is not owed any more. A terminal event a
        subscriber read stays owed until then, and a subscriber that restarts (same consumer name)
        reads every owed event again; a clean stop does not acknowledge it either."""

    @abc.abstractmethod
    async def request_cancel(self, job_id: str, by: str) -> None: ...

    @abc.abstractmethod
    async def cancel_requested(self, job_id: str) -> str | None:
        """Who asked to cancel this job, if anyone."""

    @abc.abstractmethod
    def cancel_requests(self) -> AsyncGenerator[tuple[str, str], None]:
        """Every cancel request from now on, as ``(job_id, by)``, to every listener."""


class KeyValues(Protocol):
    """Small per-key state front ends keep: user settings, the message that shows a job, delivery, and
    short-lived claims (one press of a button)."""

    @abc.abstractmethod
    async def get_settings(self, user_key: str) -> dict[str, Any]: ...

    @abc.abstractmethod
    async def set_settings(self, user_key: str, values: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    async def set_view(self, job_id: str, view: dict[str, Any]) -> None:
        """Remember how a front end shows this job (the chat message it edits), for as long as the job.

        Kept apart from the record, which workers rewrite: a front end that restarts mid-job finds its
        message again instead of leaving it stale and answering with a new one. A view with a
        ``"platform"`` is open (:meth:`open_views`) until :meth:`close_view`.
        """

    @abc.abstractmethod
    async def get_view(self, job_id: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    async def close_view(self, job_id: str) -> None:
        """The chat shows the job's outcome: its view is no longer open (it stays readable)."""

    @abc.abstractmethod
    async def open_views(self, platform: str, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Views set with ``"platform": platform`` and not closed: the messages a starting front end
        brings to their job's true state (at most ``limit``)."""

    @abc.abstractmethod
    async def lease_view(self, platform: str, job_id: str, owner: str, ttl_s: float) -> str | None:
        """Take or renew the lease on an open view: who may edit the job's message. The lease goes to
        ``owner`` when it is free, lapsed (not renewed for ``ttl_s``) or already ``owner``'s, and then
        runs ``ttl_s`` from now. Returns the holder after the call (``owner`` when it got it, another
        replica's id while that one's lease runs) or ``None`` when ``platform`` has no open view of the
        job (never set, or closed: its outcome is shown). Atomic across processes; :meth:`close_view`
        ends the lease."""

    @abc.abstractmethod
    async def mark_delivered(self, job_id: str) -> bool:
        """Record that the result is in the chat (call it after the send): True the first time."""

    @abc.abstractmethod
    async def delivered(self, job_id: str) -> bool:
        """Whether ``mark_delivered`` was called: a redelivered outcome is not sent twice."""

    @abc.abstractmethod
    async def claim_once(self, key: str, ttl_s: float) -> bool:
        """True for the first claim of ``key``; False for every other until ``ttl_s`` after it, when the
        key is free again. Atomic across every process that shares the store (Redis ``SET NX PX``): two
        presses of one button, whichever front ends they reach, make one job."""


@dataclass(frozen=True)
class QuotaCounter:
    """One quota window of one user: at most ``limit`` jobs counted under ``key`` until ``until`` (unix
    seconds: the window's end, when the counter is dropped)."""

    key: str
    limit: int
    until: float


class Quotas(Protocol):
    """Job quotas (``gateway/quotas.py``): fixed-window counters of job ids, checked and counted at once."""

    @abc.abstractmethod
    async def quota_take(self, job_id: str, counters: Sequence[QuotaCounter]) -> int | None:
        """Count ``job_id`` in every counter, unless one is full: then nothing is counted and that
        counter's index is returned (``None``: counted). Atomic across every process sharing the store;
        idempotent per job id (a retry, or a job already counted, is not counted again)."""

    @abc.abstractmethod
    async def quota_give_back(self, job_id: str, keys: Sequence[str]) -> None:
        """Uncount ``job_id`` (the job was refused after its quota was taken)."""

    @abc.abstractmethod
    async def quota_counts(self, prefix: str) -> dict[str, int]:
        """The live counters whose key starts with ``prefix``: key → jobs counted."""


class QueueRecords(Queue, Records, Protocol):
    """Ending a job: the terminal record and the ack (finishing, recovery)."""


class RecordsEvents(Records, Events, Protocol):
    """Running a job: record updates and the events that show them (the executor)."""


class Jobs(Queue, Records, Events, Protocol):
    """Everything a worker touches: all but the front ends' key-values."""


class Store(Queue, Records, Events, KeyValues, Quotas):
    """All four, behind one object: what an implementation provides and what ``app.py`` builds.

    Consumers ask for the narrow protocol they use (a worker needs the queue and events, the position
    reporter records and events, ...) so a test or a new store sees exactly what each one touches.
    """

    name: str = "store"
    durable: bool = True  # jobs outlive this process (SQLite file, Redis); the memory store says False
    shared: bool = False  # other processes take jobs from it too (Redis): queued jobs are not ours alone

    def __init__(self) -> None:
        self.settings = SettingsStore(self)
        self.fair = FairPolicy()  # the take order (gateway/fair.py); app.py sets it from the settings

    async def start(self) -> None:  # noqa: B027  # optional hook: the memory store opens nothing
        """Open connections / create groups. Idempotent."""

    async def close(self) -> None:  # noqa: B027  # optional hook, see start
        """Release what ``start`` opened."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


__all__ = [
    "Jobs",
    "QueueRecords",
    "RecordsEvents",
    "Enqueued",
    "Events",
    "KeyValues",
    "Queue",
    "QuotaCounter",
    "Quotas",
    "Records",
    "SettingsStore",
    "Store",
    "too_many_pending",
]
