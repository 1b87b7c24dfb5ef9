"""The HTTP API's side of the job events: what ``GET /v1/jobs/{id}/events`` streams and webhooks send.

The API process is the consumer of the gateway's ``http`` event stream (``Gateway.subscribe("http")``).
:class:`JobEvents` keeps each job's recent events in memory, numbered, so that a client reconnecting with
``Last-Event-ID`` gets what it missed; on the outcome it calls the job's webhook (if it has a
``callback_url``) and then tells the store the outcome is handled (``Gateway.event_handled``).

The outcome is never missed: it is kept apart from the bounded list of progress events, and when this
process has not seen it (another API process consumed it, or this one restarted) it is read from the job
record (:func:`outcome_from_record`). Its SSE id is always :data:`OUTCOME_ID`, so a client that got it once
and reconnects is answered 204 (an ``EventSource`` then stops reconnecting) instead of getting it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from core.logs import get_logger
from gateway.finishing import outcome_of
from gateway.models import (
    TERMINAL_EVENTS,
    ImageRef,
    JobEvent,
    Preview,
    Succeeded,
)
from gateway.records import JobRecord
from gateway.service import Gateway
from gateway.webhooks import WebhookSender, callback_url_problem

log = get_logger("gateway")

#: the SSE id of a job's outcome event, whichever process sends it
OUTCOME_ID = "outcome"
#: where the API serves stored images (previews and results)
IMAGE_ROUTE = "/v1/images/"
#: how long a job's webhook claim is kept (a second delivery of the same outcome sends nothing)
WEBHOOK_CLAIM_S = 7 * 24 * 3600.0


def image_url(ref: ImageRef) -> str:
    """The API path serving ``ref`` (same token as every route)."""
    return IMAGE_ROUTE + ref.path


def _with_url(image: dict[str, Any]) -> dict[str, Any]:
    return {**image, "url": IMAGE_ROUTE + str(image["path"])}


def public(event: JobEvent) -> dict[str, Any]:
    """An event as the API shows it: its JSON, with a ``url`` next to every image."""
    data: dict[str, Any] = event.model_dump(mode="json")
    if isinstance(event, Preview):
        data["image"] = _with_url(data["image"])
    elif isinstance(event, Succeeded):
        data["images"] = [_with_url(i) for i in data["images"]]
    return data


def outcome_from_record(record: JobRecord) -> JobEvent | None:
    """The outcome event a finished job's record stands for (None while it has not finished)."""
    return outcome_of(record) if record.state.terminal else None


@dataclass
class JobLog:
    """One job's events as this process saw them: numbered progress, and the outcome apart."""

    events: deque[tuple[int, dict[str, Any]]]
    seq: int = 0
    outcome: dict[str, Any] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class JobEvents:
    """Consumes ``subscribe("http")``, keeps recent events per job, sends webhooks on the outcome."""

    def __init__(
        self,
        gateway: Gateway,
        webhooks: WebhookSender | None = None,
        *,
        keep_jobs: int = 2000,
        keep_events: int = 100,
    ) -> None:
        self.gateway = gateway
        self.webhooks = webhooks
        self.keep_jobs = keep_jobs
        self.keep_events = keep_events
        #: names this process's event ids: an id of another process (or of before a restart) is not ours
        self.epoch = secrets.token_hex(4)
        self.closing = asyncio.Event()
        self._jobs: OrderedDict[str, JobLog] = OrderedDict()
        self._taps: set[asyncio.Queue[JobEvent]] = set()
        self._task: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._consume(), name="http-events")

    async def stop(self) -> None:
        """Stop consuming; open streams end; webhook deliveries under way are cancelled (an outcome not
        yet marked handled is redelivered to the next subscriber by a durable store)."""
        self.closing.set()
        for job in self.logs():
            job.changed.set()
        tasks = [t for t in (self._task, *self._deliveries) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _consume(self) -> None:
        while not self.closing.is_set():
            try:
                async with contextlib.aclosing(self.gateway.subscribe("http", consumer="http-api")) as events:
                    async for event in events:
                        self.add(event)
                        for tap in self._taps:
                            tap.put_nowait(event)
                        if isinstance(event, TERMINAL_EVENTS):
                            task = asyncio.create_task(self._finish(event))
                            self._deliveries.add(task)
                            task.add_done_callback(self._deliveries.discard)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store hiccuped: keep consuming
                log.error("http_events_failed", error=repr(exc))
                await asyncio.sleep(1.0)

    def tap(self) -> AsyncGenerator[JobEvent, None]:
        """Every ``http`` event this process consumes from now on (for tests and tools)."""
        queue: asyncio.Queue[JobEvent] = asyncio.Queue()
        self._taps.add(queue)
        return self._drain(queue)

    async def _drain(self, queue: asyncio.Queue[JobEvent]) -> AsyncGenerator[JobEvent, None]:
        try:
            while True:
                yield await queue.get()
        finally:
            self._taps.discard(queue)

    # --- the per-job logs -----------------------------------------------------------------------
    def log_of(self, job_id: str) -> JobLog:
        found = self._jobs.get(job_id)
        if found is None:
            found = self._jobs[job_id] = JobLog(events=deque(maxlen=self.keep_events))
            while len(self._jobs) > self.keep_jobs:
                self._jobs.popitem(last=False)
        else:
            self._jobs.move_to_end(job_id)
        return found

    def logs(self) -> list[JobLog]:
        return list(self._jobs.values())

    def add(self, event: JobEvent) -> bool:
        """Keep ``event``; False (and nothing kept) for an outcome already known."""
        job = self.log_of(event.job_id)
        if isinstance(event, TERMINAL_EVENTS):
            if job.outcome is not None:
                return False
            job.outcome = public(event)
        else:
            if job.outcome is not None:
                return False  # a late progress event after the end says nothing new
            job.seq += 1
            job.events.append((job.seq, public(event)))
        job.changed.set()
        return True

    def event_id(self, seq: int) -> str:
        return f"{self.epoch}.{seq}"

    def after(self, last_event_id: str | None) -> int:
        """The sequence number a client's ``Last-Event-ID`` resumes after (0: from the start)."""
        if not last_event_id:
            return 0
        epoch, _, seq = last_event_id.partition(".")
        if epoch != self.epoch or not seq.isdigit():
            return 0  # not ours: send what we have (progress again is harmless; the outcome is once)
        return int(seq)

    # --- the outcome ----------------------------------------------------------------------------
    async def _finish(self, event: JobEvent) -> None:
        with structlog.contextvars.bound_contextvars(request_id=event.request_id, job_id=event.job_id):
            try:
                await self._webhook(event)
            except Exception as exc:
                log.error("webhook_error", error=repr(exc))
            finally:
                with contextlib.suppress(Exception):
                    await self.gateway.event_handled("http", event.job_id)

    async def _webhook(self, event: JobEvent) -> None:
        if self.webhooks is None:
            return
        record = await self.gateway.get_job(event.job_id)
        url = None if record is None else record.request.reply_to.get("callback_url")
        if url is None or callback_url_problem(url) is not None:
            return
        if not await self.gateway.store.claim_once(f"webhook:{event.job_id}", WEBHOOK_CLAIM_S):
            return  # another process (or an earlier delivery of this event) sends it
        await self.webhooks.deliver(str(url), public(event), request_id=event.request_id, job_id=event.job_id)


def sse(event_id: str, data: dict[str, Any]) -> bytes:
    """One Server-Sent Event: ``id``, ``event`` (the kind) and the JSON ``data`` on one line."""
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (
        event_id.encode(),
        str(data.get("kind", "message")).encode(),
        orjson.dumps(data),
    )


__all__ = [
    "IMAGE_ROUTE",
    "OUTCOME_ID",
    "JobEvents",
    "JobLog",
    "image_url",
    "outcome_from_record",
    "public",
    "sse",
]
