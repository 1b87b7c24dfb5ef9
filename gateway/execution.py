"""One attempt of one job on one ComfyUI server: upload, render, submit, follow, collect.

The worker (``gateway/worker.py``) decides *where* and *whether again*; this module does the work
on the server it was given and reports the outcome by returning the stored images or raising a
``comfy.errors`` error, :class:`JobTimeout`, or ``CancelledError`` (the worker's cancel).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import structlog

from comfy import ComfyError, ComfyPromptLost, ComfyUnreachable, PromptResult, Where
from comfy import events as ce
from comfy.workflows import Workflow
from core.logs import get_logger
from gateway.models import ImageRef, Preview, Started
from gateway.progress import ProgressModel
from gateway.records import JobRecord
from gateway.servers import ComfyServer
from gateway.storage import ImageStore
from gateway.store import RecordsEvents

log = get_logger("gateway")


def _preview_done(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("preview_dropped", error=repr(exc))


class JobTimeout(Exception):
    """The workflow's ``timeout_s`` ran out; the prompt was stopped in ComfyUI."""

    def __init__(self, after_s: float) -> None:
        super().__init__(f"timed out after {after_s:g} s")
        self.after_s = after_s


@dataclass(eq=False)
class JobRun:
    """A job this worker holds: its record, workflow, and where its prompt is right now."""

    record: JobRecord
    workflow: Workflow
    server: ComfyServer | None = None
    started: bool = False  # execution began in ComfyUI (else it waits in ComfyUI's queue)
    cancel_by: str | None = None
    finishing: bool = False
    reserved: bool = False  # holds a slot reservation of the take loop, not yet handed to acquire
    task: asyncio.Task[Any] | None = field(default=None, repr=False)
    # Called once the prompt is done in ComfyUI, before its images are fetched: the worker frees the
    # server's slot there, so the next prompt is posted while this one's images download and store.
    prompt_done: Callable[[], Awaitable[None]] | None = field(default=None, repr=False)

    async def _prompt_done(self) -> None:
        if self.prompt_done is not None:
            await self.prompt_done()


class Executor:
    """Runs attempts; publishes started/progress/preview events on the way."""

    def __init__(
        self,
        store: RecordsEvents,
        images: ImageStore,
        *,
        preview_interval_s: float = 1.0,
        progress_interval_s: float = 0.25,
        poll_interval_s: float = 0.5,
        dead_after_s: float = 15.0,
    ) -> None:
        self.store = store
        self.images = images
        self.preview_interval_s = preview_interval_s
        self.progress_interval_s = progress_interval_s
        self.poll_interval_s = poll_interval_s
        self.dead_after_s = dead_after_s

    async def run(self, job: JobRun, server: ComfyServer) -> list[ImageRef]:
        """A fresh attempt: new prompt id, inputs uploaded, graph rendered and posted, then followed."""
        rec, client = job.record, server.client
        prompt_id = str(uuid.uuid4())
        rec.submit(prompt_id, server.name)
        job.server, job.started = server, False
        # Saved BEFORE the POST: a worker that dies right after it leaves the prompt id to its successor,
        # which then finds the prompt in ComfyUI instead of running it twice. The save is sent first and
        # runs while the inputs are uploaded and the graph rendered; the POST waits for its answer.
        saving = asyncio.create_task(self.store.save(rec))
        await asyncio.sleep(0)  # let it send now: rendering below does not yield
        try:
            images: dict[str, str] = {}
            for name, ref in rec.request.inputs.items():
                data = await self.images.read(ref)
                images[name] = await client.upload_image(data, PurePosixPath(ref.path).name)
            graph = job.workflow.render(rec.values, images)
            log.info("workflow_rendered", workflow=job.workflow.name, nodes=len(graph))
        except BaseException:
            saving.cancel()  # nothing will be posted; the attempt's outcome is written by the worker
            saving.add_done_callback(lambda t: t.cancelled() or t.exception())
            raise
        await saving
        structlog.contextvars.bind_contextvars(prompt_id=prompt_id, backend=server.name)
        extra = {"request_id": rec.request.request_id, "job_id": rec.job_id}
        async with client.track(prompt_id) as tracker:
            await client.submit(graph, prompt_id=prompt_id, extra_data=extra)
            result = await self._follow(job, server, graph, tracker)
        await job._prompt_done()
        return await self.collect(job, server, result)

    async def resume(self, job: JobRun, server: ComfyServer) -> list[ImageRef]:
        """Follow a prompt another worker posted (it died): poll ``locate`` until it finished."""
        rec = job.record
        assert rec.prompt_id is not None
        job.server = server
        job.started = rec.started_at is not None  # the dead worker may have announced the start already
        structlog.contextvars.bind_contextvars(prompt_id=rec.prompt_id, backend=server.name)
        deadline = asyncio.get_running_loop().time() + job.workflow.timeout_s
        while True:
            found = await server.client.locate(rec.prompt_id)
            if found.result is not None:
                await job._prompt_done()
                return await self.collect(job, server, found.result)
            if not found.known:
                raise ComfyPromptLost(backend=server.name, prompt_id=rec.prompt_id)
            if found.where is Where.RUNNING and not job.started:
                await self._mark_started(job, server)
            if asyncio.get_running_loop().time() > deadline:
                await self.stop_in_comfy(job)
                raise JobTimeout(job.workflow.timeout_s)
            await asyncio.sleep(self.poll_interval_s)  # no websocket events reach us for their prompt

    async def _follow(
        self, job: JobRun, server: ComfyServer, graph: dict[str, Any], tracker: Any
    ) -> PromptResult:
        rec = job.record
        timeout_s = job.workflow.timeout_s
        progress = ProgressModel(
            job.workflow,
            graph,
            job_id=rec.job_id,
            request_id=rec.request.request_id,
            recent_ms=await self.store.durations(job.workflow.name),
        )
        last_progress = last_preview = 0.0
        last_label = ""
        loop = asyncio.get_running_loop()
        events = aiter(tracker)
        # A preview is stored and published beside the event loop below, one at a time: a slow disk must
        # not hold up reading the prompt's events (its end among them). Frames that come while one is
        # being stored are skipped, and one still in flight when the prompt ends is dropped.
        previewing: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(timeout_s) as scope:
                while (event := await self._next_event(events, server)) is not None:
                    if isinstance(event, ce.ExecutionStart):
                        # The clock runs from the start of execution, not from the wait in ComfyUI's queue.
                        scope.reschedule(loop.time() + timeout_s)
                        await self._mark_started(job, server)
                    if isinstance(event, ce.PreviewImage):
                        now = loop.time()
                        if now - last_preview >= self.preview_interval_s and (
                            previewing is None or previewing.done()
                        ):
                            last_preview = now
                            previewing = asyncio.create_task(self._preview(job, event))
                            previewing.add_done_callback(_preview_done)
                        continue
                    update = progress.feed(event)
                    if update is None:
                        continue
                    now = loop.time()
                    if update.node_label != last_label or now - last_progress >= self.progress_interval_s:
                        last_label, last_progress = update.node_label, now
                        await self.store.publish(rec.events_channel, update)
        except TimeoutError:
            await self.stop_in_comfy(job)
            raise JobTimeout(timeout_s) from None
        finally:
            if previewing is not None:
                previewing.cancel()  # a preview after the result (or a failure) would only confuse
        assert tracker.result is not None
        result: PromptResult = tracker.result
        return result

    async def _next_event(self, events: Any, server: ComfyServer) -> Any:
        """The tracker's next event, or None at its end; raises ComfyUnreachable once the server is
        held down longer than dead_after_s."""
        while True:
            try:
                # Wake now and then to look at the server's health; rarely, this cuts short a
                # /history check of the tracker, which then simply checks again later.
                async with asyncio.timeout(max(1.0, self.dead_after_s / 3)):
                    return await anext(events)
            except StopAsyncIteration:
                return None
            except TimeoutError:
                # Quiet is normal (a long node); a server the health checks hold down is not.
                if not server.healthy and server.down_for() > self.dead_after_s:
                    detail = f"down for {server.down_for():.0f} s: {server.down_reason}"
                    raise ComfyUnreachable(detail, backend=server.name) from None

    async def _mark_started(self, job: JobRun, server: ComfyServer) -> None:
        rec = job.record
        job.started = True
        rec.start()
        await self.store.save(rec)
        await self.store.publish(
            rec.events_channel,
            Started(job_id=rec.job_id, request_id=rec.request.request_id, backend=server.name),
        )

    async def _preview(self, job: JobRun, event: ce.PreviewImage) -> None:
        rec = job.record
        try:
            ref = await self.images.save_preview(rec.job_id, event.data, event.mime)
        except Exception as exc:  # a bad preview frame must never fail the job
            log.warning("preview_dropped", error=repr(exc))
            return
        await self.store.publish(
            rec.events_channel, Preview(job_id=rec.job_id, request_id=rec.request.request_id, image=ref)
        )

    async def collect(self, job: JobRun, server: ComfyServer, result: PromptResult) -> list[ImageRef]:
        """Raise the prompt's failure, else download its output images and store them."""
        failure = result.failure(server.name)
        if failure is not None:
            raise failure
        rec = job.record
        if rec.started_at is None:  # the start was missed (history-only path)
            rec.start(at=rec.submitted_at)
        outputs = result.images_of(job.workflow.outputs) or [i for i in result.images if i.type == "output"]
        stored: list[ImageRef] = []
        for index, image in enumerate(outputs):
            data = await server.client.view(image)
            stored.append(await self.images.save_output(rec.job_id, index, data))
        return stored

    async def stop_in_comfy(self, job: JobRun) -> None:
        """Stop the job's prompt: interrupt it if running, delete it if it still waits in ComfyUI's queue."""
        server, prompt_id = job.server, job.record.prompt_id
        if server is None or prompt_id is None:
            return
        try:
            async with asyncio.timeout(10):
                await server.client.cancel(prompt_id)
        except (ComfyError, TimeoutError) as exc:
            log.warning("comfyui_stop_failed", prompt_id=prompt_id, error=repr(exc))


__all__ = ["Executor", "JobRun", "JobTimeout"]
