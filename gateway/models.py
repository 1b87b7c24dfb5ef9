"""The platform-neutral job: what a front end submits and the events the gateway publishes back.

Everything here serialises to JSON with orjson (``to_json``/``from_json``); nothing is pickled, so a
job can cross Redis between processes written at different versions as long as the fields agree.
"""

from __future__ import annotations

import enum
import secrets
import time
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


def new_request_id() -> str:
    """A request id: 16 hex chars, short enough to read aloud, unique enough to grep."""
    return secrets.token_hex(8)


def short_id(request_id: str) -> str:
    """The form shown to users in failure messages and Info (first 8 chars)."""
    return request_id[:8]


class FailureCode(enum.StrEnum):
    """Stable failure codes. Front ends map each to a localized message; never show ``detail`` raw."""

    COMFY_UNREACHABLE = "comfy_unreachable"
    COMFY_REJECTED = "comfy_rejected"
    COMFY_EXECUTION_ERROR = "comfy_execution_error"
    COMFY_LOST_PROMPT = "comfy_lost_prompt"
    NO_BACKEND = "no_backend"
    TIMEOUT = "timeout"
    INVALID_INPUT = "invalid_input"
    INVALID_IMAGE = "invalid_image"
    IMAGE_TOO_LARGE = "image_too_large"
    PROMPT_TOO_LONG = "prompt_too_long"
    PROMPT_BLOCKED = "prompt_blocked"
    UNKNOWN_WORKFLOW = "unknown_workflow"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_PENDING = "too_many_pending"
    QUOTA_EXCEEDED = "quota_exceeded"  # a per-user hourly/daily job quota is used up until it resets
    QUEUE_FULL = "queue_full"
    ACCESS_DENIED = "access_denied"
    SHUTTING_DOWN = "shutting_down"  # the process stopped before the job could run and nothing keeps it
    INTERNAL = "internal"


class JobState(enum.StrEnum):
    QUEUED = "queued"
    SUBMITTED = "submitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT})


class Role(enum.StrEnum):
    ADMIN = "admin"
    USER = "user"
    BANNED = "banned"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ImageRef(_Model):
    """A stored image: a path relative to the gateway's data dir plus what we know about it."""

    path: str
    width: int
    height: int
    bytes: int
    mime: str = "image/png"


class JobRequest(_Model):
    """Everything the gateway needs to run a job, independent of the chat platform.

    ``params`` holds values already parsed by the front end (``--steps 30`` → ``{"steps": 30}``); the gateway
    validates them against the workflow's manifest. ``reply_to`` is opaque to the gateway: the front end that
    owns the chat message puts whatever it needs there (chat id, message id, interaction token) and gets it
    back on every event. ``events_channel`` names the event channel the job's events go to (None: the
    ``platform``'s own): a sharded Discord front end names its shard's, so the events reach the process
    that took the interaction and holds its token.
    """

    request_id: str = Field(default_factory=new_request_id)
    platform: Literal["telegram", "discord", "http"]
    user_id: str
    chat_id: str
    locale: str = "en"
    workflow: str
    params: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, ImageRef] = Field(default_factory=dict)
    reply_to: dict[str, Any] = Field(default_factory=dict)
    role: Role = Role.USER
    received_at: float = Field(default_factory=time.time)
    events_channel: str | None = None


# --- events -------------------------------------------------------------------------------------


class _Event(_Model):
    job_id: str
    request_id: str
    at: float = Field(default_factory=time.time)


class Blocked(_Model):
    """Why no healthy server can run a waiting job now: every server that could is down
    (``servers_down``), or the servers that are up lack what the workflow needs — ``name`` says what:
    a model file (``missing_model``), a node type (``missing_node``), a choice's value (``missing_option``,
    ``name`` is ``param=value``)."""

    reason: Literal["servers_down", "missing_model", "missing_node", "missing_option"]
    name: str = ""


class Queued(_Event):
    kind: Literal["queued"] = "queued"
    position: int  # 1 = next to run
    depth: int
    eta_s: float | None = None
    blocked: Blocked | None = None  # set while no healthy server can run it (it waits, up to a bound)


class Held(_Event):
    """The process running (or about to run) the job is stopping; the job is kept in the durable
    queue and continues when a worker takes it again (a restart, or another worker with Redis)."""

    kind: Literal["held"] = "held"


class Started(_Event):
    kind: Literal["started"] = "started"
    backend: str


class Progress(_Event):
    kind: Literal["progress"] = "progress"
    node_label: str
    done_nodes: int
    total_nodes: int
    value: int = 0
    max: int = 0
    percent: float = 0.0  # overall, 0..100
    eta_s: float | None = None
    activity: str | None = None  # the running node's ComfyUI activity, e.g. "loading" (current ComfyUI)


class Preview(_Event):
    kind: Literal["preview"] = "preview"
    image: ImageRef


class Succeeded(_Event):
    kind: Literal["succeeded"] = "succeeded"
    images: list[ImageRef]
    seed: int | None = None
    duration_ms: int
    wait_ms: int = 0
    run_ms: int = 0
    backend: str = ""


class Failed(_Event):
    kind: Literal["failed"] = "failed"
    code: FailureCode
    detail: str = ""  # for logs and admins; users see the localized text for ``code``
    retry_after_s: float | None = None


class Cancelled(_Event):
    kind: Literal["cancelled"] = "cancelled"
    by: str


class TimedOut(_Event):
    kind: Literal["timed_out"] = "timed_out"
    after_s: float


JobEvent = Annotated[
    Queued | Held | Started | Progress | Preview | Succeeded | Failed | Cancelled | TimedOut,
    Field(discriminator="kind"),
]
TERMINAL_EVENTS = (Succeeded, Failed, Cancelled, TimedOut)

_event_adapter: TypeAdapter[JobEvent] = TypeAdapter(JobEvent)


def event_to_json(event: JobEvent) -> bytes:
    return orjson.dumps(event.model_dump(mode="json"))


def event_from_json(raw: bytes | str) -> JobEvent:
    return _event_adapter.validate_python(orjson.loads(raw))


def request_to_json(req: JobRequest) -> bytes:
    return orjson.dumps(req.model_dump(mode="json"))


def request_from_json(raw: bytes | str) -> JobRequest:
    return JobRequest.model_validate(orjson.loads(raw))
