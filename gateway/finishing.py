"""The end of a job: the terminal record, the one terminal event, the log line, the ack.

``Store.finish`` publishes the terminal event at most once per job, so two workers that both
believe they own a job (a recovery racing a worker that was only slow) still produce one result.
"""

from __future__ import annotations

import time
from typing import Any

from core.logs import get_logger
from gateway import metrics
from gateway.models import (
    Cancelled,
    Failed,
    FailureCode,
    ImageRef,
    JobEvent,
    JobState,
    Succeeded,
    TimedOut,
)
from gateway.records import JobRecord
from gateway.store import QueueRecords

log = get_logger("gateway")

# Failures of the servers are errors an operator must look at; the rest are the user's or expected.
_ERROR_CODES = frozenset(
    {
        FailureCode.COMFY_UNREACHABLE,
        FailureCode.COMFY_EXECUTION_ERROR,
        FailureCode.COMFY_LOST_PROMPT,
        FailureCode.NO_BACKEND,
        FailureCode.INTERNAL,
        FailureCode.COMFY_REJECTED,
    }
)


def outcome_of(record: JobRecord) -> JobEvent:
    """The terminal event of a finished ``record``, as its finisher published it (a starting front end
    shows it from the record when the event itself is gone). A timed-out job's limit is not kept: its
    run time stands in."""
    ids: dict[str, Any] = {
        "job_id": record.job_id,
        "request_id": record.request.request_id,
        "at": record.finished_at or time.time(),
    }
    if record.state is JobState.SUCCEEDED:
        return Succeeded(
            **ids,
            images=record.images,
            seed=record.seed,
            duration_ms=record.duration_ms,
            wait_ms=record.wait_ms,
            run_ms=record.run_ms,
            backend=record.backend or "",
        )
    if record.state is JobState.CANCELLED:
        return Cancelled(**ids, by=record.cancelled_by or record.user_id)
    if record.state is JobState.TIMED_OUT:
        return TimedOut(**ids, after_s=record.run_ms / 1000)
    return Failed(**ids, code=record.failure or FailureCode.INTERNAL, detail=record.detail)


class Finisher:
    """Writes outcomes through ``store``; each method returns True if this call ended the job."""

    def __init__(self, store: QueueRecords) -> None:
        self.store = store

    async def _end(self, record: JobRecord, state: JobState, event: JobEvent | None = None) -> bool:
        record.end(state)
        event = outcome_of(record) if event is None else event
        first = await self.store.finish(record, event)
        await self.store.ack(record.job_id)
        if first:
            metrics.job_finished(record.request.workflow, event, record.run_ms)
        else:
            log.warning("job_already_finished", state=state.value)
        return first

    async def succeeded(self, record: JobRecord, images: list[ImageRef], seed: int | None) -> bool:
        record.images, record.seed = images, seed
        first = await self._end(record, JobState.SUCCEEDED)
        if first:
            await self.store.add_duration(record.request.workflow, record.run_ms)
            log.info(
                "job_succeeded",
                duration_ms=record.duration_ms,
                wait_ms=record.wait_ms,
                run_ms=record.run_ms,
                images=len(images),
                attempts=record.attempts,
                backend=record.backend,
                workflow=record.request.workflow,
            )
        return first

    async def failed(self, record: JobRecord, code: FailureCode, detail: str) -> bool:
        record.failure, record.detail = code, detail
        first = await self._end(record, JobState.FAILED)
        if first:
            level = log.error if code in _ERROR_CODES else log.warning
            level(
                "job_failed",
                code=code.value,
                detail=detail,
                attempts=record.attempts,
                duration_ms=record.duration_ms,
            )
        return first

    async def cancelled(self, record: JobRecord, by: str) -> bool:
        record.cancelled_by = by
        first = await self._end(record, JobState.CANCELLED)
        if first:
            log.info("job_cancelled", by=by, was=("running" if record.prompt_id else "queued"))
        return first

    async def timed_out(self, record: JobRecord, after_s: float) -> bool:
        record.failure, record.detail = FailureCode.TIMEOUT, f"timed out after {after_s:g} s"
        event = TimedOut(job_id=record.job_id, request_id=record.request.request_id, after_s=after_s)
        first = await self._end(record, JobState.TIMED_OUT, event)
        if first:
            log.warning("job_timeout", after_s=after_s, duration_ms=record.duration_ms)
        return first


__all__ = ["Finisher", "outcome_of"]
