"""The gateway-event consumer every chat front end runs: one subscription per event channel it follows
(the platform's own; a sharded Discord process follows one per shard), one tracker task per live job
(which turns that job's events into edits of its chat message)."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from core.logs import bound, get_logger
from gateway.errors import StorageError
from gateway.finishing import outcome_of
from gateway.models import TERMINAL_EVENTS, JobEvent, Preview, Progress, Queued, Started
from gateway.service import Gateway

__all__ = ["EventConsumer", "JobTracker", "SendErrors", "TrackerBase", "latest_only"]

log = get_logger("bot")

# A result send that failed transiently (5xx, network) is tried again in-process: 2 s, 4 s … 60 s apart.
SEND_RETRY_FIRST_S = 2.0
SEND_RETRY_MAX_S = 60.0
SEND_RETRY_FOR_S = 600.0


class JobTracker(Protocol):
    """Follows one job: ``run`` reads its events from ``queue`` until the job has ended."""

    queue: asyncio.Queue[JobEvent]
    task: asyncio.Task[None] | None
    channel: str  # the event channel its events come on (acknowledged there)

    async def run(self) -> None: ...

    async def renew_lease(self) -> None: ...


T = TypeVar("T", bound=JobTracker)


def latest_only(events: list[JobEvent]) -> list[JobEvent]:
    """Drop progress states superseded by a later one in the same batch (the newest state wins)."""
    out: list[JobEvent] = []
    for i, ev in enumerate(events):
        later = events[i + 1 :]
        if isinstance(ev, Queued | Progress) and any(
            isinstance(e, Queued | Progress | Started) for e in later
        ):
            continue
        if isinstance(ev, Preview) and any(isinstance(e, Preview) for e in later):
            continue
        out.append(ev)
    return out


@dataclass(frozen=True)
class SendErrors:
    """How a platform's API errors split when a result is sent: what would fail alike after a restart
    (``refused``; ``forbidden`` also means nothing can be written there to say so) and the rest of ``api``,
    which may pass on another try. ``fields`` are what the log line says of an error."""

    api: type[Exception]
    refused: tuple[type[Exception], ...]
    forbidden: tuple[type[Exception], ...]
    fields: Callable[[Exception], dict[str, Any]]


class TrackerBase(abc.ABC):
    """One job's events, applied in order to the chat message that shows it. A burst of events that
    queued up while an edit was in flight is applied as its newest state only (:func:`latest_only`)."""

    def __init__(self, consumer: EventConsumer[Any], job_id: str) -> None:
        self.consumer = consumer
        self.job_id = job_id
        self.queue: asyncio.Queue[JobEvent] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.channel = consumer.platform
        self.last_preview_at = -math.inf
        # Who holds the lease on this job's view (the message): only the holder shows progress, any
        # replica shows the outcome. None: no open view (the job shows as in one process, unleased).
        self.holder: str | None = None
        self.finishing = False  # applying the terminal event: not to be stopped from outside

    @abc.abstractmethod
    async def _load(self, first: JobEvent) -> bool:
        """Read the job and find its message; False: nothing to show it in (the events are dropped)."""

    @abc.abstractmethod
    async def _apply(self, ev: JobEvent) -> None: ...

    async def _preview_bytes(self, ev: Preview, interval_s: float) -> bytes | None:
        """The preview's image, at most one per ``interval_s``; None when it is too soon or unreadable."""
        now = time.monotonic()
        if now - self.last_preview_at < interval_s:
            return None
        self.last_preview_at = now
        try:
            return await self.consumer.gateway.read_image(ev.image)
        except (OSError, StorageError) as exc:
            log.info("preview_unreadable", error=type(exc).__name__)
            return None

    async def _reload_view(self) -> None:  # noqa: B027 - optional: a front end that keeps views
        """Find the job's message again from its saved view: another replica may have moved it."""

    async def renew_lease(self) -> None:
        """Take or renew this replica's lease on the view. Taking it from a replica that stopped renewing
        is the takeover: this one shows the progress from now on. A view closed elsewhere (the outcome is
        shown by another replica) ends this tracker."""
        before, me = self.holder, self.consumer.gateway.replica
        try:
            self.holder = await self.consumer.gateway.lease_view(self.consumer.platform, self.job_id)
        except Exception as exc:  # keep the last state; the next renewal tries again
            log.warning("view_lease_failed", job_id=self.job_id, error=repr(exc))
            return
        if self.holder == me and before not in (None, me):
            log.info("view_taken_over", job_id=self.job_id, previous=before)
            await self._reload_view()
        elif self.holder is None and before is not None and not self.finishing and self.task is not None:
            log.info("view_closed_elsewhere", job_id=self.job_id)
            self.task.cancel()

    def _shows(self, ev: JobEvent) -> bool:
        return isinstance(ev, TERMINAL_EVENTS) or self.holder in (None, self.consumer.gateway.replica)

    async def _finish(self) -> None:  # noqa: B027 - optional hook: a front end may close its message here
        """Called once when tracking ends, however it ends."""

    async def _send_or_let_go(
        self,
        send: Callable[[], Coroutine[Any, Any, None]],
        errors: SendErrors,
        tell: Callable[[], Awaitable[None]],
    ) -> bool:
        """Run ``send()`` (the result); True once it is in the chat.

        A permanent failure (``errors.refused``, or the image gone from disk and shared store) is logged
        ``result_not_delivered``, told with ``tell`` where the bot may still write, and let go: False. A
        transient one is logged and tried again with backoff for up to ``SEND_RETRY_FOR_S``; a send
        that reached the chat before it failed (its delivery is recorded) is not repeated. Past that it
        is raised, so the outcome stays owed and a restarted front end sends it again.
        """
        permanent: tuple[type[Exception], ...] = (*errors.refused, OSError, StorageError)
        give_up_at = time.monotonic() + SEND_RETRY_FOR_S
        for attempt in itertools.count(1):
            try:
                await send()
            except permanent as exc:
                reason = "file_gone" if isinstance(exc, OSError | StorageError) else "refused"
                log.error(
                    "result_not_delivered", reason=reason, error=type(exc).__name__, **errors.fields(exc)
                )
                if not isinstance(exc, errors.forbidden):
                    with contextlib.suppress(errors.api):
                        await tell()
                return False
            except errors.api as exc:
                wait = min(SEND_RETRY_MAX_S, SEND_RETRY_FIRST_S * 2 ** (attempt - 1))
                last = time.monotonic() + wait > give_up_at
                log.error(
                    "result_not_delivered",
                    reason="transient",
                    error=type(exc).__name__,
                    attempt=attempt,
                    retry_in_s=None if last else wait,
                    **errors.fields(exc),
                )
                if last or self.consumer.stopping.is_set():
                    raise
                with contextlib.suppress(TimeoutError):  # a stop ends the wait: the outcome stays owed
                    await asyncio.wait_for(self.consumer.stopping.wait(), wait)
                if self.consumer.stopping.is_set():
                    raise
                if await self.consumer.gateway.delivered(self.job_id):
                    return True  # it reached the chat before the error: not twice
                continue
            return True
        raise AssertionError("unreachable")

    async def _handled(self) -> None:
        # Only after the chat effect: a process killed before this line gets the outcome again on restart.
        try:
            await self.consumer.gateway.event_handled(self.channel, self.job_id)
            await self.consumer.gateway.close_view(self.job_id)
        except Exception as exc:
            log.warning("event_ack_failed", error=repr(exc))

    async def _outcome(self, ev: JobEvent) -> None:
        self.finishing = True
        if self.holder != self.consumer.gateway.replica:
            await self._reload_view()  # the holder may have moved the message (a preview)
        await self._apply(ev)
        await self._handled()

    async def run(self) -> None:
        first = await self.queue.get()
        with bound(request_id=first.request_id, job_id=self.job_id, platform=self.consumer.platform):
            try:
                if not await self._load(first):
                    await self._handled()  # nothing to show it in: do not hand it to a restart either
                    return
                await self.renew_lease()
                pending: list[JobEvent] = [first]
                while True:
                    while not self.queue.empty():
                        pending.append(self.queue.get_nowait())
                    for ev in filter(self._shows, latest_only(pending)):
                        if isinstance(ev, TERMINAL_EVENTS):
                            await self._outcome(ev)
                            return
                        await self._apply(ev)
                    pending = [await self.queue.get()]
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job_event_failed")
            finally:
                self.consumer.forget(self.job_id)
                await self._finish()


class EventConsumer(abc.ABC, Generic[T]):
    """Reads ``platform``'s events from the gateway and hands each to the tracker of its job.
    ``channels``: the event channels it reads (set before :meth:`run`; default the platform's own)."""

    def __init__(self, gateway: Gateway, platform: str) -> None:
        self.gateway = gateway
        self.platform = platform
        self.channels: tuple[str, ...] = (platform,)
        self._trackers: dict[str, T] = {}
        self._last_event = -math.inf
        self.stopping = asyncio.Event()  # set by :meth:`drain`: trackers stop retrying sends

    @abc.abstractmethod
    def new_tracker(self, job_id: str) -> T:
        """A tracker for a job this process has not seen an event of yet."""

    async def show_interrupted(self, job_id: str, view: dict[str, Any]) -> None:  # noqa: B027 - optional
        """Say in the message ``view`` names that its job is gone (its record lost) and offer to run it
        again. Front ends that keep views implement it."""

    async def reconcile(
        self, *, quiet_s: float = 1.0, max_wait_s: float = 10.0, settled_s: float = 60.0
    ) -> None:
        """At startup: bring every message this platform left open to its job's true state. Waits until
        the subscription has re-read what it owed (no event for ``quiet_s``); then a job still followed
        is left to its tracker; one that finished over ``settled_s`` ago gets its outcome shown from the
        record (its event was lost: any live tracker, here or in another replica, would have shown it by
        then; the delivered marker stops a second photo); a lost one is told so; a queued or running one
        needs nothing (its events will come)."""
        self._last_event = max(self._last_event, time.monotonic())  # give the subscription its first read
        await self._quiet(quiet_s, max_wait_s)
        try:
            views = await self.gateway.open_views(self.platform)
        except Exception as exc:
            log.warning("reconcile_failed", error=repr(exc))
            return
        shown = lost = 0
        for job_id, view in views:
            if job_id in self._trackers:
                continue
            try:
                record = await self.gateway.get_job(job_id)
                if record is None:
                    with bound(job_id=job_id, platform=self.platform):
                        await self.show_interrupted(job_id, view)
                        await self.gateway.close_view(job_id)
                        log.info("job_interrupted_shown")
                    lost += 1
                elif record.state.terminal and (record.finished_at or 0) < time.time() - settled_s:
                    self.dispatch(outcome_of(record))
                    shown += 1
            except Exception as exc:  # one bad view must not stop the others
                log.warning("reconcile_view_failed", job_id=job_id, error=repr(exc))
        log.info("reconciled", platform=self.platform, open=len(views), outcomes=shown, lost=lost)

    async def _quiet(self, quiet_s: float, max_s: float) -> None:
        deadline = time.monotonic() + max_s
        while (now := time.monotonic()) < deadline and now - self._last_event < quiet_s:  # noqa: ASYNC110 - a quiet period is a timer
            await asyncio.sleep(min(quiet_s, deadline - now))

    def forget(self, job_id: str) -> None:
        self._trackers.pop(job_id, None)

    def dispatch(self, ev: JobEvent, channel: str | None = None) -> None:
        self._last_event = time.monotonic()
        tracker = self._trackers.get(ev.job_id)
        if tracker is None:
            tracker = self._trackers[ev.job_id] = self.new_tracker(ev.job_id)
            tracker.channel = channel or self.platform
            tracker.task = asyncio.create_task(tracker.run(), name=f"{self.platform}-job-{ev.job_id}")
        tracker.queue.put_nowait(ev)

    async def keep_leases(self) -> None:
        """Every third of the lease: renew (or take over) the view lease of every job followed here."""
        while True:
            await asyncio.sleep(self.gateway.replica_lease_s / 3)  # a lease heartbeat is a timer by nature
            for tracker in list(self._trackers.values()):
                await tracker.renew_lease()

    async def run(self) -> None:
        """Consume every channel forever, keeping the view leases; a broken subscription is re-opened
        after a pause."""
        leases = asyncio.create_task(self.keep_leases(), name=f"{self.platform}-view-leases")
        try:
            if len(self.channels) == 1:
                await self._consume(self.channels[0])
                return
            async with asyncio.TaskGroup() as group:
                for channel in self.channels:
                    group.create_task(self._consume(channel), name=f"{self.platform}-events-{channel}")
        finally:
            leases.cancel()
            await asyncio.gather(leases, return_exceptions=True)

    async def _consume(self, channel: str) -> None:
        while True:
            try:
                # Our own consumer name: what a killed replica read and never acknowledged is taken over
                # by a live one after the lease (one name shared by all would leave it pending for ever).
                events = self.gateway.subscribe(channel, consumer=self.gateway.replica)
                try:
                    async for ev in events:
                        self.dispatch(ev, channel)
                finally:
                    aclose = getattr(events, "aclose", None)  # an async generator: close it now, not at GC
                    if aclose is not None:
                        await aclose()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event_subscription_failed", platform=self.platform, channel=channel)
            await asyncio.sleep(1.0)

    async def settle(self, quiet_s: float = 0.2, max_s: float = 5.0) -> None:
        """Before a stop after :meth:`Gateway.shut_down`: keep reading until no event came for ``quiet_s``
        (at most ``max_s``), so what the gateway published while shutting down ("held" notices, the
        failures of jobs the memory store cannot keep) reaches a tracker. Other stops need not wait:
        events left unread stay in the durable store for the next subscriber."""
        if self.gateway.closing:
            await self._quiet(quiet_s, max_s)

    async def drain(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - shutdown grace period
        """Let running trackers finish (results in flight), then cancel the rest."""
        self.stopping.set()
        tasks = [t.task for t in self._trackers.values() if t.task is not None]
        if tasks:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await asyncio.gather(*tasks, return_exceptions=True)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
