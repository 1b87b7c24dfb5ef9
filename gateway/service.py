"""``Gateway``: what front ends call. Submit, cancel, follow events, read jobs, store images.

Every refusal is a :class:`Refused` value with a stable code, never an exception for the user.
The gateway does not run jobs itself; workers (``gateway/worker.py``) do, in this process or others.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from comfy.workflow_errors import ParamError, UnknownWorkflow
from comfy.workflows import Workflow, WorkflowRegistry
from core.logs import get_logger
from gateway import metrics
from gateway.errors import (
    AccessDenied,
    GatewayError,
    InputInvalid,
    LimitExceeded,
    ShuttingDown,
    StorageError,
)
from gateway.finishing import Finisher
from gateway.images import inspect_and_clean_async
from gateway.limits import AccessPolicy, Limits
from gateway.models import Blocked, FailureCode, Held, ImageRef, JobRequest, Role
from gateway.positions import RecentDurations, estimate_wait_s
from gateway.quotas import QuotaExceeded, quota_counted
from gateway.records import JobRecord
from gateway.servers import ServerPool
from gateway.service_views import GatewayReads, GatewayStats, QueueInfo, ServerStatus
from gateway.storage import ImageStore
from gateway.store import SettingsStore, Store

if TYPE_CHECKING:
    from gateway.worker import Worker

log = get_logger("gateway")

_LIMIT_CODES = frozenset(
    {
        FailureCode.RATE_LIMITED,
        FailureCode.TOO_MANY_PENDING,
        FailureCode.QUEUE_FULL,
        FailureCode.QUOTA_EXCEEDED,
    }
)
#: presses of one button on one message within this many seconds are one press (:meth:`Gateway.first_press`)
PRESS_WINDOW_S = 5.0


@dataclass(frozen=True)
class Accepted:
    """The job is queued: ``position`` 1 runs next; ``eta_s`` is a rough wait (None: no history yet)."""

    job_id: str
    position: int
    depth: int
    eta_s: float | None = None
    blocked: Blocked | None = None  # why no healthy server can run it now (it waits, up to a bound)


@dataclass(frozen=True)
class Refused:
    """The job was not queued. ``code`` picks the user's message; ``detail`` is for logs and admins.

    ``field``/``reason`` name the offending parameter for ``invalid_input`` (``reason`` is ParamError's
    stable code: ``too_large``, ``not_in_options``...); ``retry_after_s`` is set when waiting helps.
    """

    code: FailureCode
    detail: str = ""
    retry_after_s: float | None = None
    field: str | None = None
    reason: str | None = None


class Gateway(GatewayReads):
    """The front ends' API. Built by the startup module (``gateway/app.py``) with its resources."""

    def __init__(
        self,
        store: Store,
        registry: WorkflowRegistry,
        images: ImageStore,
        *,
        limits: Limits | None = None,
        access: AccessPolicy | None = None,
        pool: ServerPool | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.images = images
        self.limits = limits or Limits()
        self.access = access or AccessPolicy()
        self.pool = pool  # only for the ETA; a front-end-only process has none
        self._finisher = Finisher(store)
        self._durations = RecentDurations(store)
        self.worker: Worker | None = None  # set when this process also runs jobs
        self.closing = False  # set by :meth:`shut_down`
        # This process's name among front ends sharing the store, and the lease on what it shows
        # (:meth:`lease_view`, the event subscription); ``open_gateway`` sets both from the settings.
        self.replica = "main"
        self.replica_lease_s = 30.0

    @property
    def settings(self) -> SettingsStore:
        """Per-user settings: ``await gateway.settings.get(key)`` / ``.set(key, dict)``."""
        return self.store.settings

    # --- submit ---------------------------------------------------------------------------------
    async def submit(self, req: JobRequest) -> Accepted | Refused:
        """Check the request against access, workflow bounds and limits, then queue it."""
        with structlog.contextvars.bound_contextvars(request_id=req.request_id):
            try:
                result = await self._submit(req)
            except (GatewayError, ParamError, UnknownWorkflow) as exc:
                result = self._refused(exc, req)
            except Exception as exc:  # the queue is unreachable: answer, do not crash the front end
                log.error("submit_failed", error=repr(exc))
                result = Refused(FailureCode.INTERNAL, "queue unavailable", retry_after_s=5.0)
            if isinstance(result, Refused):
                metrics.job_refused(result.code)
            else:
                metrics.JOBS_SUBMITTED.labels(req.workflow, req.platform).inc()
            return result

    def check(self, req: JobRequest, *, coming: Collection[str] = ()) -> Refused | None:
        """What :meth:`submit` would refuse without asking the queue: the workflow, its parameters, the
        prompt filter and which image inputs it takes — ``coming`` names those the front end is still
        downloading — but not the rate and queue limits. Fast and local, so a front end can answer a
        refusal privately before it shows anything public; ``submit`` checks all of it again."""
        with structlog.contextvars.bound_contextvars(request_id=req.request_id):
            try:
                self._validate(req, {*req.inputs, *coming})
            except (GatewayError, ParamError, UnknownWorkflow) as exc:
                return self._refused(exc, req)
            return None

    def _validate(self, req: JobRequest, inputs: Collection[str]) -> dict[str, Any]:
        """The workflow's typed values for ``req.params`` with the image ``inputs`` it will get; raises
        what :meth:`_refused` answers."""
        workflow = self.registry.get(req.workflow)
        values = workflow.validate(req.params)
        if workflow.prompt_param and isinstance(values.get(workflow.prompt_param), str):
            self.limits.prompt_filter.check(values[workflow.prompt_param], field=workflow.prompt_param)
        for name in inputs:
            if name not in workflow.images:
                raise InputInvalid(name, "unknown_image_input")
        for name, ref in req.inputs.items():
            self._check_ref(name, ref)
        for name, spec in workflow.images.items():
            if spec.required and name not in inputs:
                raise InputInvalid(name, "required")
        return values

    def _refused(self, exc: GatewayError | ParamError | UnknownWorkflow, req: JobRequest) -> Refused:
        if isinstance(exc, GatewayError):
            return self._refusal(exc, req.user_id)
        if isinstance(exc, ParamError):
            log.info("validation_error", field=exc.field, reason=exc.reason, workflow=req.workflow)
            return Refused(
                FailureCode.INVALID_INPUT, f"{exc.field}: {exc.reason}", field=exc.field, reason=exc.reason
            )
        log.info("validation_error", field="workflow", reason="unknown", workflow=req.workflow)
        return Refused(FailureCode.UNKNOWN_WORKFLOW, str(exc), field="workflow", reason="unknown")

    async def _submit(self, req: JobRequest) -> Accepted | Refused:
        if self.closing and not self.store.durable:
            raise ShuttingDown("stopping, and the memory store would not keep the job")
        role = self.access.check(req.user_id, req.chat_id)
        if req.role is Role.ADMIN and role is not Role.ADMIN:
            role = Role.USER  # a front end cannot promote anyone; the policy decides
        values = self._validate(req, req.inputs)
        record = JobRecord(request=req.model_copy(update={"role": role}), values=values)
        # The quota is counted first (atomically), and given back if the enqueue refuses the job.
        async with quota_counted(self.limits.quotas, self.store, record.job_id, req.user_id, role):
            where = await self.store.enqueue(  # queue cap, pending cap and rate: atomic, one round trip
                record,
                max_depth=self.limits.queue_cap,
                max_pending=self.limits.pending_cap(role),
                rate=self.limits.rate_rule(req.user_id, role),
            )
            if where is None:
                raise LimitExceeded(f"queue cap {self.limits.queue_cap}", code=FailureCode.QUEUE_FULL)
        eta = None
        blocked = self.blocker(self.registry.get(req.workflow), values)
        if self.pool is not None and blocked is None:
            eta = await estimate_wait_s(self._durations, self.pool, req.workflow, where.position)
        structlog.contextvars.bind_contextvars(job_id=record.job_id)
        log.info(
            "job_enqueued",
            position=where.position,
            depth=where.depth,
            workflow=req.workflow,
            platform=req.platform,
            user_id=req.user_id,
            eta_s=eta,
            blocked=None if blocked is None else blocked.reason,
        )
        structlog.contextvars.unbind_contextvars("job_id")
        return Accepted(record.job_id, where.position, where.depth, eta, blocked)

    def blocker(self, workflow: Workflow, values: Mapping[str, Any]) -> Blocked | None:
        """Why no healthy server of this process's worker can run it now (None: one can, or this process
        runs no worker and knows nothing of the servers' health)."""
        if self.pool is None or self.worker is None:
            return None
        return self.pool.blocker(workflow, values)

    def _check_ref(self, name: str, ref: ImageRef) -> None:
        """Refuse at submit an image reference that is not one of ours (``../../etc/passwd``, an absolute
        path): a client of the HTTP API hears it now, naming the field, not from the worker later."""
        try:
            self.images.path(ref)
        except StorageError:
            raise InputInvalid(f"inputs.{name}.path", "bad_image_ref") from None

    def _refusal(self, exc: GatewayError, user_id: str) -> Refused:
        retry_after = exc.retry_after_s if isinstance(exc, LimitExceeded) else None
        field_name = exc.field if isinstance(exc, InputInvalid) else None
        reason = exc.reason if isinstance(exc, InputInvalid) else None
        if isinstance(exc, QuotaExceeded):
            reason = exc.window  # "hour" or "day": the front end says which quota and when it resets
        if isinstance(exc, AccessDenied):
            pass  # AccessPolicy logs access_denied itself
        elif exc.code in _LIMIT_CODES:
            log.info(
                "rate_limited",
                code=exc.code.value,
                detail=exc.detail,
                user_id=user_id,
                retry_after_s=retry_after,
            )
        else:
            log.info(
                "validation_error", code=exc.code.value, field=field_name, reason=reason, detail=exc.detail
            )
        return Refused(exc.code, exc.detail, retry_after, field_name, reason)

    # --- shutdown -------------------------------------------------------------------------------
    async def shut_down(self, grace_s: float) -> None:
        """SIGTERM: stop taking jobs, give running prompts up to ``grace_s`` to finish, and tell the chat
        what became of each job this process cannot finish. A durable store keeps them (a restart, or
        another worker with Redis, continues each one): they get a ``Held`` notice. The memory store
        would forget them: they fail with ``shutting_down``, so no message is left waiting forever.

        Front ends keep running meanwhile (results finished in the grace period are delivered) and
        are stopped after this returns."""
        self.closing = True
        durable = self.store.durable
        log.info("shutdown_started", grace_s=grace_s, store=self.store.name)
        if self.worker is None:
            return
        left = await self.worker.drain(grace_s, stop_prompts=not durable)
        waiting: list[JobRecord] = []
        if not self.store.shared:  # the embedded queue: nobody else will take these until a restart
            ids = await self.store.waiting(self.limits.queue_cap + 1000)
            waiting = [r for r in [await self.store.get(i) for i in ids] if r is not None]
        running = {r.job_id for r in left}
        for record in [*left, *waiting]:
            with structlog.contextvars.bound_contextvars(
                request_id=record.request.request_id, job_id=record.job_id
            ):
                if durable:
                    held = Held(job_id=record.job_id, request_id=record.request.request_id)
                    await self.store.publish(record.events_channel, held)
                    log.info("job_held", running=record.job_id in running)
                elif record.job_id in running or await self.store.remove_queued(record.job_id):
                    await self._finisher.failed(record, FailureCode.SHUTTING_DOWN, "process stopped")
        log.info("shutdown_drained", unfinished=len(left), waiting=len(waiting))

    # --- cancel ---------------------------------------------------------------------------------
    async def cancel(self, job_id: str, *, by: str, admin: bool = False) -> bool:
        """Cancel a job of ``by`` (any job if ``admin``). A queued job is removed at once; a running
        one is interrupted by its worker. False if unknown, finished, or not theirs."""
        record = await self.store.get(job_id)
        if record is None or record.state.terminal:
            return False
        with structlog.contextvars.bound_contextvars(request_id=record.request.request_id, job_id=job_id):
            if record.user_id != by and not (admin or self.access.role_of(by) is Role.ADMIN):
                log.info("access_denied", reason="not_owner", user_id=by, action="cancel")
                return False
            if await self.store.remove_queued(job_id):
                record.finished_at = time.time()
                await self._finisher.cancelled(record, by)
                return True
            await self.store.request_cancel(job_id, by)
            log.info("job_cancel_requested", by=by)
            return True

    # --- buttons --------------------------------------------------------------------------------
    async def first_press(self, platform: str, message: str, button: str) -> bool:
        """Whether this press of ``button`` on ``message`` is the first in :data:`PRESS_WINDOW_S`: a double
        tap, or a second tap while the first one's answer is on its way, is one press. Held by the store,
        so it holds across front-end processes (Redis). A store that cannot answer lets the press through:
        the submit that follows will say what is wrong."""
        try:
            return await self.store.claim_once(f"press:{platform}:{message}:{button}", PRESS_WINDOW_S)
        except Exception as exc:
            log.warning("press_check_failed", error=repr(exc))
            return True

    # --- images ---------------------------------------------------------------------------------
    async def store_image(self, data: bytes) -> ImageRef:
        """Decode, check, strip metadata, re-encode and store an upload; raises ``ImageRejected``."""
        clean = await inspect_and_clean_async(
            data,
            max_bytes=self.limits.max_image_bytes,
            max_pixels=self.limits.max_image_pixels,
            max_side=self.limits.max_input_side,
        )
        ref = await self.images.save_input(clean)
        log.info("image_stored", bytes=ref.bytes, width=ref.width, height=ref.height)
        return ref

    def image_path(self, ref: ImageRef) -> Path:
        """Where ``ref`` is (or would be) on this machine's disk."""
        return self.images.path(ref)

    async def read_image(self, ref: ImageRef) -> bytes:
        """A stored image's bytes, wherever it was stored (see :meth:`ImageStore.read`)."""
        return await self.images.read(ref)


__all__ = ["PRESS_WINDOW_S", "Accepted", "Gateway", "GatewayStats", "QueueInfo", "Refused", "ServerStatus"]
