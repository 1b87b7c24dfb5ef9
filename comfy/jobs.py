"""Where is a prompt, and stop it: one lookup for every ComfyUI version.

Current ComfyUI answers ``GET /api/jobs/{id}`` (history, running and pending in one lookup) and
``POST /api/jobs/{id}/cancel`` (interrupt-or-dequeue under the queue lock). ComfyUI 0.3.x has neither
(its aiohttp answers a plain-text 404): there the lookup is ``/history`` → ``/queue`` → ``/history``
and the stop is ``/queue`` then ``/queue delete`` or ``/interrupt``. The first answer decides which
this server speaks; see docs/COMFYUI_VERSIONS.md.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from comfy.errors import ComfyExecutionError, ComfyInterrupted, ComfyResponseError
from comfy.http import ComfyHTTP
from comfy.results import PromptResult

__all__ = ["ComfyJobs", "Location", "Where", "location_of_job"]


class Where(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"  # finished with outputs (``result``)
    FAILED = "failed"  # finished with an execution error (``result.failure``)
    CANCELLED = "cancelled"  # interrupted
    UNKNOWN = "unknown"  # the server does not know the id (never got it, restarted, history trimmed)


@dataclass(frozen=True)
class Location:
    """The answer of :meth:`JobsAPI.locate`."""

    where: Where
    result: PromptResult | None = None  # set when finished (DONE / FAILED / CANCELLED)
    position: int | None = None  # in the queue: 0 is running (0.3.x path only)

    @property
    def finished(self) -> bool:
        return self.result is not None

    @property
    def known(self) -> bool:
        return self.where is not Where.UNKNOWN


def _finished(result: PromptResult, backend: str) -> Location:
    failure = result.failure(backend)
    if isinstance(failure, ComfyInterrupted):
        return Location(Where.CANCELLED, result)
    if isinstance(failure, ComfyExecutionError):
        return Location(Where.FAILED, result)
    return Location(Where.DONE, result)


def location_of_job(prompt_id: str, job: dict[str, Any], backend: str) -> Location:
    """A ``GET /api/jobs/{id}`` answer as a Location (statuses of ``comfy_execution/jobs.py``)."""
    status = job.get("status")
    if status == "pending":
        return Location(Where.QUEUED)
    if status == "in_progress":
        return Location(Where.RUNNING, position=0)
    entry = {"outputs": job.get("outputs") or {}, "status": job.get("execution_status") or {}}
    result = PromptResult.from_history(prompt_id, entry)
    if status == "cancelled":
        return Location(Where.CANCELLED, result)
    if status == "failed" and result.failure(backend) is None:
        return Location(Where.FAILED, result)
    return _finished(result, backend)


def route_missing(status: int, body: bytes) -> bool:
    """A 404 of a server without the jobs routes (plain text), not a JSON 'Job not found'."""
    if status != 404:
        return False
    try:
        answer = json.loads(body)
    except ValueError:
        return True
    return not (isinstance(answer, dict) and "error" in answer)


class ComfyJobs(ComfyHTTP):
    """ComfyHTTP plus :meth:`locate` and :meth:`cancel`, each picking the route this server has."""

    #: None until the first answer; True when the server has ``/api/jobs``.
    jobs_api: bool | None = None

    async def locate(self, prompt_id: str) -> Location:
        """Where ``prompt_id`` is on this server. Raises ComfyError when the server can't tell."""
        if self.jobs_api is not False:
            status, body = await self._request("GET", f"/api/jobs/{prompt_id}", ok=(200, 404))
            if status == 200:
                self.jobs_api = True
                return location_of_job(prompt_id, _job(body, self.name), self.name)
            if not route_missing(status, body):
                self.jobs_api = True
                return Location(Where.UNKNOWN)
            self.jobs_api = False
        return await self._locate_legacy(prompt_id)

    async def _locate_legacy(self, prompt_id: str) -> Location:
        result = await self.history(prompt_id)
        if result is None:
            queue = await self.queue()
            if prompt_id in queue:
                position = queue.position(prompt_id)
                return Location(Where.RUNNING if position == 0 else Where.QUEUED, position=position)
            result = await self.history(prompt_id)  # it may have left the queue between the two asks
            if result is None:
                return Location(Where.UNKNOWN)
        return _finished(result, self.name)

    async def cancel(self, prompt_id: str) -> bool:
        """Stop ``prompt_id``: interrupt it when running, dequeue it when pending; True if it was either.

        Atomic on a server with ``/api/jobs/{id}/cancel``; on 0.3.x two requests with a race between.
        """
        if self.jobs_api is not False:
            status, body = await self._request("POST", f"/api/jobs/{prompt_id}/cancel", ok=(200, 404))
            if status == 200:
                self.jobs_api = True
                answer = _loads(body)
                return bool(answer.get("cancelled")) if isinstance(answer, dict) else False
            if route_missing(status, body) or status == 405:
                self.jobs_api = False
        queue = await self.queue()
        if prompt_id in queue.pending:
            await self.delete_queued([prompt_id])
            return True
        await self.interrupt(prompt_id)
        return prompt_id in queue


def _loads(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _job(body: bytes, backend: str) -> dict[str, Any]:
    answer = _loads(body)
    if not isinstance(answer, dict):
        raise ComfyResponseError(
            "GET /api/jobs: answer is not a JSON object", backend=backend, status=200, path="/api/jobs"
        )
    return answer
