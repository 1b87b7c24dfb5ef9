"""The worker: takes jobs from the store while ComfyUI slots are free and sees each one to its end.

Per job: pick a server (``ServerPool.acquire``), run an attempt (``Executor``), and turn the outcome into
exactly one terminal event. Connection failures (``ComfyUnreachable``, ``ComfyPromptLost``) are retried
with backoff, on another server when one can take it; a graph ComfyUI rejected or a failed execution is
never retried. Background loops renew this worker's leases, claim the jobs of dead workers (recovery,
``gateway/recovery.py``), act on cancel requests and publish queue positions.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import structlog

from comfy import ComfyRejected, ComfyUnreachable
from comfy.workflow_errors import UnknownWorkflow
from comfy.workflows import WorkflowRegistry
from core.logs import get_logger
from gateway import metrics
from gateway.execution import Executor, JobRun, JobTimeout
from gateway.failures import RETRYABLE, failure_of, retry_failure
from gateway.finishing import Finisher
from gateway.models import FailureCode, ImageRef
from gateway.positions import PositionNotifier
from gateway.records import JobRecord
from gateway.recovery import Recovery, recover
from gateway.servers import ComfyServer, NoBackend, ServerPool
from gateway.store import Jobs

log = get_logger("gateway")
EARLY_CANCELS_MAX = 1024  # cancel requests remembered for jobs this worker does not (yet) hold


def default_consumer_name() -> str:
    """Unique per process and machine, readable in ``XINFO CONSUMERS``."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class _Slot:
    """A job's slot on a server, released once: when its prompt is done in ComfyUI, or when the attempt
    ends, whichever comes first."""

    def __init__(self, pool: ServerPool, server: ComfyServer) -> None:
        self.pool, self.server, self.held = pool, server, True

    async def release(self) -> None:
        if self.held:
            self.held = False
            await self.pool.release(self.server)


class Worker:
    """Runs jobs from ``store`` on ``pool``'s servers. ``await worker.run()`` until cancelled."""

    def __init__(
        self,
        store: Jobs,
        pool: ServerPool,
        registry: WorkflowRegistry,
        executor: Executor,
        *,
        consumer: str | None = None,
        lease_s: float = 30.0,
        max_attempts: int = 3,
        retry_backoff_s: float = 0.5,
        queue_timeout_s: float = 600.0,
        retry_acquire_timeout_s: float = 10.0,
    ) -> None:
        self.store = store
        self.pool = pool
        self.registry = registry
        self.executor = executor
        self.consumer = consumer or default_consumer_name()
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        self.queue_timeout_s = queue_timeout_s  # how long a job may wait with no server able to run it
        self.retry_acquire_timeout_s = retry_acquire_timeout_s
        self.finisher = Finisher(store)
        self.positions = PositionNotifier(store, pool, registry=registry, queue_timeout_s=queue_timeout_s)
        self.jobs: dict[str, JobRun] = {}
        # A broadcast cancel can outrun the job it names: taken (so the canceller could not remove it
        # from the queue) but not yet registered in ``jobs``. Kept here, read when the job registers.
        self._early_cancels: OrderedDict[str, str] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._taking = True  # False once :meth:`drain` began: no job is taken after that
        self._loops: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        """Take and run jobs; on cancellation stop taking and cancel running jobs (their leases lapse,
        so another worker recovers them)."""
        log.info("worker_started", consumer=self.consumer, servers=[s.name for s in self.pool.servers])
        try:
            async with asyncio.TaskGroup() as group:
                self._loops = [
                    group.create_task(self._take_loop(), name="worker-take"),
                    group.create_task(self._lease_loop(), name="worker-lease"),
                    group.create_task(self._cancel_loop(), name="worker-cancel"),
                    group.create_task(self.positions.run(), name="worker-positions"),
                ]
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            log.info("worker_stopped", consumer=self.consumer)

    async def drain(self, grace_s: float, *, stop_prompts: bool = False) -> list[JobRecord]:
        """Stop taking jobs and let the running ones finish for up to ``grace_s``; then stop the rest and
        return their records (each still leased to this worker: the store keeps it for a restart, or
        another worker recovers it with Redis). Leases are renewed and cancels honoured meanwhile.
        ``stop_prompts``: nothing will resume them (the memory store), so their prompts are stopped in
        ComfyUI rather than left to run for no one."""
        self._taking = False
        for loop in self._loops:
            if loop.get_name() in ("worker-take", "worker-positions"):
                loop.cancel()  # positions: the jobs left in the queue get one "held" notice instead
        running = list(self._tasks)
        log.info("worker_draining", consumer=self.consumer, running=len(running), grace_s=grace_s)
        if running and grace_s > 0:
            await asyncio.wait(running, timeout=grace_s)
        left = [job.record for job in self.jobs.values()]
        if stop_prompts:
            await asyncio.gather(*(self.executor.stop_in_comfy(j) for j in self.jobs.values()))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        left = [r for r in left if not r.state.terminal]
        try:  # another worker (Redis) takes them at its next lease check instead of after the lease
            await self.store.release(self.consumer, [r.job_id for r in left])
        except Exception as exc:  # they lapse on their own then
            log.warning("worker_release_failed", error=repr(exc))
        return left

    # --- loops --------------------------------------------------------------------------------------
    async def _take_loop(self) -> None:
        while self._taking:
            if not await self.pool.reserve(timeout_s=1.0):
                continue
            try:
                record = await self.store.take(self.consumer, 1.0)
            except Exception as exc:  # Redis gone for longer than its retry window: keep trying
                await self.pool.unreserve()
                log.error("worker_take_failed", error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            if record is None:
                await self.pool.unreserve()
                continue
            self.positions.changed()
            self._spawn(record, self._run_new, reserved=True)

    async def _lease_loop(self) -> None:
        """Renew our leases, catch missed cancel requests, and claim jobs whose worker died."""
        while True:
            await asyncio.sleep(self.lease_s / 3)  # a lease heartbeat is a timer by nature
            try:
                await self.store.renew(self.consumer, list(self.jobs))
                for job_id, job in list(self.jobs.items()):
                    if job.cancel_by is None and (by := await self.store.cancel_requested(job_id)):
                        self.cancel_local(job_id, by)
                for record in await self.store.claim_stale(self.consumer, self.lease_s):
                    if record.job_id not in self.jobs:
                        self._spawn(record, self._run_recovered)
            except Exception as exc:
                log.error("worker_lease_failed", error=repr(exc))

    async def _cancel_loop(self) -> None:
        while True:
            try:
                async for job_id, by in self.store.cancel_requests():
                    self.cancel_local(job_id, by)
            except Exception as exc:
                log.error("worker_cancel_listen_failed", error=repr(exc))
                await asyncio.sleep(1.0)

    def cancel_local(self, job_id: str, by: str) -> bool:
        """Cancel a job this worker runs: its task stops, the prompt is stopped in ComfyUI."""
        job = self.jobs.get(job_id)
        if job is None:
            self._early_cancels[job_id] = by
            if len(self._early_cancels) > EARLY_CANCELS_MAX:
                self._early_cancels.popitem(last=False)
            return False
        if job.finishing or job.cancel_by is not None or job.task is None:
            return False
        job.cancel_by = by
        job.task.cancel()
        return True

    # --- one job ------------------------------------------------------------------------------------
    def _spawn(
        self, record: JobRecord, body: Callable[[JobRun], Awaitable[None]], *, reserved: bool = False
    ) -> None:
        async def main() -> None:
            with structlog.contextvars.bound_contextvars(
                request_id=record.request.request_id, job_id=record.job_id
            ):
                try:
                    workflow = self.registry.get(record.request.workflow)
                except UnknownWorkflow as exc:  # removed since it was queued
                    if reserved:
                        await self.pool.unreserve()
                    await self.finisher.failed(record, FailureCode.UNKNOWN_WORKFLOW, str(exc))
                    return
                job = JobRun(record, workflow, task=asyncio.current_task(), reserved=reserved)
                self.jobs[record.job_id] = job
                job.cancel_by = self._early_cancels.pop(record.job_id, None)
                try:
                    await body(job)
                finally:
                    self.jobs.pop(record.job_id, None)
                    if job.reserved:  # ended before asking for a server (finished, cancelled, shutdown)
                        await asyncio.shield(self.pool.unreserve())

        task = asyncio.create_task(main(), name=f"job-{record.job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_new(self, job: JobRun) -> None:
        rec = job.record
        if rec.state.terminal:
            await self.store.ack(rec.job_id)
            return
        wait_ms = int((time.time() - rec.enqueued_at) * 1000)
        metrics.WAIT_SECONDS.labels(rec.request.workflow).observe(wait_ms / 1000)
        log.info("job_dequeued", wait_ms=wait_ms, workflow=rec.request.workflow, consumer=self.consumer)
        await self._attempts(job, resume=None, recovered=False)

    async def _run_recovered(self, job: JobRun) -> None:
        outcome, server = await recover(job, self.pool, self.store)
        if outcome is Recovery.DONE:
            return
        if outcome is Recovery.LOST:
            detail = f"prompt {job.record.prompt_id} lost twice"
            await self.finisher.failed(job.record, FailureCode.COMFY_LOST_PROMPT, detail)
            return
        await self._attempts(job, resume=server, recovered=True)

    async def _attempts(self, job: JobRun, *, resume: ComfyServer | None, recovered: bool) -> None:
        """Attempts until one outcome; every path ends in exactly one ``finisher`` call (or a shutdown).

        A job just taken from the queue needs no look at the cancel flag: a cancel that came before the
        take removed it from the queue, one after it reached ``cancel_local``. A recovered job's cancel
        may have gone to the worker that died, so its flag is read."""
        rec = job.record
        try:
            by = job.cancel_by
            if by is None and recovered:
                by = await self.store.cancel_requested(rec.job_id)
            if by is not None:
                await self.finisher.cancelled(rec, by)
                return
            images = await self._until_done(job, resume)
            if images is None:
                return  # failed after its retries; the finisher has been told
            job.finishing = True  # the result is in: a cancel arriving now is too late
            seed_param = job.workflow.seed_param
            seed = rec.values.get(seed_param) if seed_param else None
            await self.finisher.succeeded(rec, images, seed if isinstance(seed, int) else None)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if job.cancel_by is None or task is None:
                raise  # shutdown: leave the job to the lease, another worker recovers it
            task.uncancel()
            await self.executor.stop_in_comfy(job)
            await self.finisher.cancelled(rec, job.cancel_by)
        except JobTimeout as exc:
            await self.finisher.timed_out(rec, exc.after_s)
        except Exception as exc:
            failure = failure_of(exc)
            if failure is not None:
                await self.finisher.failed(rec, *failure)
                return
            log.exception("job_crashed", error=repr(exc))
            with contextlib.suppress(Exception):
                await self.finisher.failed(rec, FailureCode.INTERNAL, repr(exc))

    async def _until_done(self, job: JobRun, resume: ComfyServer | None) -> list[ImageRef] | None:
        """Run the job (resume it on ``resume`` first, when given) until it has its images; a
        retryable error tries again, elsewhere when it can. None: it failed, and the finisher knows."""
        avoid: set[str] = set()
        last_error: Exception | None = None
        resuming = resume is not None
        while True:
            server = resume if resume is not None else await self._server_for(job, last_error, avoid)
            resume = None
            if server is None:
                assert last_error is not None
                detail = f"{last_error}; no server left"
                await self.finisher.failed(job.record, retry_failure(last_error), detail)
                return None
            try:
                return await self._run_once(job, server, resuming=resuming)
            except ComfyRejected as exc:
                self.pool.refused(server, exc)  # maybe a node or model gone: /object_info is re-read
                raise
            except RETRYABLE as exc:
                last_error = exc
                if not await self._may_retry(job, server, exc, avoid):
                    return None
            resuming = False

    async def _server_for(
        self, job: JobRun, last_error: Exception | None, avoid: set[str]
    ) -> ComfyServer | None:
        """A server for the next attempt. The first waits its turn (the queue timeout, less what the
        job already waited blocked); a retry takes another server, None when every one is down."""
        rec = job.record
        if last_error is None:
            reserved, job.reserved = job.reserved, False  # acquire consumes it, come what may
            return await self.pool.acquire(
                job.workflow,
                rec.values,
                reserved=reserved,
                timeout_s=self.queue_timeout_s - self.positions.blocked_for(rec.job_id),
                on_blocked=functools.partial(self.positions.taken_blocked, rec),
            )
        try:
            return await self.pool.acquire(
                job.workflow, rec.values, avoid=avoid, timeout_s=self.retry_acquire_timeout_s
            )
        except NoBackend:  # every server that could take it is down
            return None

    async def _run_once(self, job: JobRun, server: ComfyServer, *, resuming: bool) -> list[ImageRef]:
        """One attempt on ``server``: its slot is held until the prompt is done, and freed whatever
        happens."""
        slot = _Slot(self.pool, server)
        job.prompt_done = slot.release
        try:
            if resuming:
                return await self.executor.resume(job, server)
            return await self.executor.run(job, server)
        finally:
            await slot.release()

    async def _may_retry(self, job: JobRun, server: ComfyServer, exc: Exception, avoid: set[str]) -> bool:
        """After a retryable error: mark a server that went away, wait the backoff and say True; when
        the attempts are used up, fail the job and say False."""
        rec = job.record
        if isinstance(exc, ComfyUnreachable):
            await self.pool.mark_down(server, str(exc))
        avoid.add(server.name)
        if rec.attempts >= self.max_attempts:
            await self.finisher.failed(rec, retry_failure(exc), str(exc))
            return False
        backoff = self.retry_backoff_s * 2 ** max(0, rec.attempts - 1)
        log.warning(
            "job_retry",
            attempt=rec.attempts,
            error=str(exc),
            error_type=type(exc).__name__,
            backoff_s=backoff,
        )
        await asyncio.sleep(backoff)
        return True


__all__ = ["Worker", "default_consumer_name"]
