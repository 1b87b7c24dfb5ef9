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

    @property
    def user_id(self) -> str:
        return self.request.user_id

    @property
    def platform(self) -> str:
        return self.request.platform

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


__all__ = ["JobRecord", "new_job_id"]
