"""Recovery of a job claimed from a dead worker: never spend GPU time twice.

The dead worker saved the prompt id and server *before* posting the prompt, so the claimer asks that
server: finished (in ``/history``) → collect its outputs; still queued or running → keep following it;
unknown to the server → submit it again, once. A job the dead worker never submitted just runs.
"""

from __future__ import annotations

import asyncio
import enum

from comfy import ComfyError
from core.logs import get_logger
from gateway.execution import JobRun
from gateway.servers import ComfyServer, ServerPool
from gateway.store import QueueRecords

log = get_logger("gateway")
CHECK_TRIES = 4  # asks of the dead worker's server (1 s, 2 s, 4 s apart) before its prompt counts as lost
CHECK_BACKOFF_S = 1.0


class Recovery(enum.Enum):
    DONE = "done"  # already finished; nothing to do
    RESUME = "resume"  # the prompt is known to its server: follow it / collect it there
    FRESH = "fresh"  # run a new attempt
    LOST = "lost"  # lost again after the one resubmission: give up


async def recover(job: JobRun, pool: ServerPool, store: QueueRecords) -> tuple[Recovery, ComfyServer | None]:
    """Decide how to continue a claimed job; on ``RESUME`` the server's slot is already occupied."""
    rec = job.record
    if rec.state.terminal:
        await store.ack(rec.job_id)
        log.info("job_recovered", outcome="already_finished", state=rec.state.value)
        return Recovery.DONE, None
    if rec.prompt_id is None:
        log.info("job_recovered", outcome="not_submitted", attempts=rec.attempts)
        return Recovery.FRESH, None
    server = pool.by_name(rec.backend)
    where: str | None = None
    if server is not None:
        # A check that fails says nothing (a busy or restarting server): ask again before deciding the
        # prompt is lost, or a slow answer would send the same prompt twice.
        for attempt in range(CHECK_TRIES):
            try:
                found = await server.client.locate(rec.prompt_id)
                if found.known:
                    where = "finished" if found.finished else "in_queue"
                break
            except ComfyError as exc:
                log.warning(
                    "job_recovery_check_failed", backend=rec.backend, error=str(exc), attempt=attempt + 1
                )
                if attempt + 1 < CHECK_TRIES:
                    await asyncio.sleep(CHECK_BACKOFF_S * 2**attempt)
    if server is not None and where is not None:
        await pool.occupy(server)
        log.info("job_recovered", outcome=where, prompt_id=rec.prompt_id, backend=server.name)
        return Recovery.RESUME, server
    if rec.resubmitted:
        log.warning("job_recovered", outcome="lost_again", prompt_id=rec.prompt_id, backend=rec.backend)
        return Recovery.LOST, None
    rec.resubmitted = True
    await store.save(rec)
    log.info("job_recovered", outcome="resubmitted", prompt_id=rec.prompt_id, backend=rec.backend)
    return Recovery.FRESH, None


__all__ = ["Recovery", "recover"]
