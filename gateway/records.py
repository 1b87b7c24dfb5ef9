"""The gateway's view of one job over its life: :class:`JobRecord`.

A record is what the backends store (as orjson JSON) and what ``Gateway.get_job`` returns. It holds the
original :class:`~gateway.models.JobRequest`, the validated parameter values (so a retry or a recovery
renders exactly the same graph, same seed), where the job runs (``backend`` + ``prompt_id``) and how it
ended. Records are plain pydantic models, mutable, and never pickled.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from gateway.models import FailureCode, ImageRef, JobRequest, JobState


def new_job_id() -> str:
    """A job id: 16 hex chars. Distinct from the request id: a reroll is a new job of a new request."""
    return secrets.token_hex(8)


class InvalidTransition(RuntimeError):
    """A lifecycle step the record's state does not allow (a bug, never a user's doing)."""

    def __init__(self, state: JobState, to: JobState) -> None:
        super().__init__(f"job in state {state.value} cannot become {to.value}")
        self.state, self.to = state, to


_LIVE = frozenset({JobState.QUEUED, JobState.SUBMITTED, JobState.RUNNING})
_POSTED = frozenset({JobState.SUBMITTED, JobState.RUNNING})


class JobRecord(BaseModel):
    """One job: request, state, attempts, placement, timestamps, result and failure."""

    # extra="ignore": a record written by a newer version still loads in an older worker.
    model_config = ConfigDict(extra="ignore", validate_assignment=False)

    job_id: str = Field(default_factory=new_job_id)
    request: JobRequest
    state: JobState = JobState.QUEUED
    values: dict[str, Any] = Field(default_factory=dict)  # validated params, defaults and seed filled
    attempts: int = 0  # prompts posted to ComfyUI for this job
    resubmitted: bool = False  # a recovery already resubmitted a lost prompt once
    backend: str | None = None
    prompt_id: str | None = None
    enqueued_at: float = Field(default_factory=time.time)
    submitted_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    images: list[ImageRef] = Field(default_factory=list)
    seed: int | None = None
    failure: FailureCode | None = None
    detail: str = ""
    cancelled_by: str | None = None

    # --- transitions: queued → submitted → running → one terminal state ------------------------------
    # A retry posts the prompt again (running/submitted → submitted); nothing leaves a terminal state.

    def submit(self, prompt_id: str, server: str) -> None:
        """A prompt was (about to be) posted to ``server``: one more attempt."""
        self._move(JobState.SUBMITTED, _LIVE)
        self.prompt_id, self.backend = prompt_id, server
        self.attempts += 1
        self.submitted_at = time.time()

    def start(self, at: float | None = None) -> None:
        """ComfyUI began executing it (``at``: when, if known from an earlier moment)."""
        self._move(JobState.RUNNING, _POSTED)
        self.started_at = at or time.time()

    def end(self, state: JobState) -> None:
        """The job's one outcome: a terminal state, stamped with when it ended."""
        if not state.terminal:
            raise InvalidTransition(self.state, state)
        self._move(state, _LIVE)
        self.finished_at = self.finished_at or time.time()

    def _move(self, to: JobState, allowed: frozenset[JobState]) -> None:
        if self.state not in allowed:
            raise InvalidTransition(self.state, to)
        self.state = to

    @property
    def user_id(self) -> str:
        return self.request.user_id

    @property
    def platform(self) -> str:
        return self.request.platform

    @property
    def events_channel(self) -> str:
        """Where this job's events are published (``subscribe`` / ``event_handled`` take the same name)."""
        return self.request.events_channel or self.request.platform

    @property
    def wait_ms(self) -> int:
        """Time from enqueue to the start of execution in ComfyUI (0 until it started)."""
        if self.started_at is None:
            return 0
        return max(0, int((self.started_at - self.enqueued_at) * 1000))

    @property
    def run_ms(self) -> int:
        """Time ComfyUI spent on it, from execution start to the end (0 until both are known)."""
        if self.started_at is None or self.finished_at is None:
            return 0
        return max(0, int((self.finished_at - self.started_at) * 1000))

    @property
    def duration_ms(self) -> int:
        """Total time from enqueue to the end (0 until it ended)."""
        if self.finished_at is None:
            return 0
        return max(0, int((self.finished_at - self.enqueued_at) * 1000))

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> JobRecord:
        return cls.model_validate(orjson.loads(raw))


__all__ = ["InvalidTransition", "JobRecord", "new_job_id"]
