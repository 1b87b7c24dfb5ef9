"""Jobs end to end through the gateway against the fake ComfyUI: events, pipelining, cancel, timeout."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from comfy.workflows import load_workflows
from gateway.models import (
    Cancelled,
    Failed,
    JobState,
    Preview,
    Progress,
    Queued,
    Started,
    Succeeded,
    TimedOut,
)
from gateway.service import Accepted
from tests.gateway.conftest import harness, request
from workflows import SHIPPED_DIR


async def test_job_runs_end_to_end(session, registry, data_dir, backend_factory) -> None:
    async with harness(session, registry, data_dir, backend=backend_factory()) as h:
        req = request(seed=1234)
        accepted = await h.gateway.submit(req)
        assert isinstance(accepted, Accepted) and accepted.position >= 1
        done = await h.log.terminal(accepted.job_id)
        assert isinstance(done, Succeeded), done
        assert done.seed == 1234 and done.images and done.backend == "comfy0"
        assert done.request_id == req.request_id
        for image in done.images:
            assert h.gateway.image_path(image).is_file()
        kinds = [e.kind for e in h.log.of(accepted.job_id)]
        assert kinds.index("started") < kinds.index("progress") < kinds.index("succeeded")
        labels = {e.node_label for e in h.log.of(accepted.job_id) if isinstance(e, Progress)}
        assert "Sampling" in labels
        record = await h.gateway.get_job(accepted.job_id)
        assert record is not None and record.state is JobState.SUCCEEDED and record.images == done.images
        assert record.request.reply_to == {"message_id": 7}
        posted = h.fakes[0].received_prompts
        assert len(posted) == 1
        assert posted[0]["extra_data"]["request_id"] == req.request_id
        assert [r.job_id for r in await h.gateway.recent_jobs("u1")] == [accepted.job_id]
        assert await h.gateway.mark_delivered(accepted.job_id)
        assert not await h.gateway.mark_delivered(accepted.job_id)
        info = await h.gateway.queue_info("u1")
        assert info.mine == []


async def test_logs_carry_request_id_through_the_job(session, registry, data_dir) -> None:
    async with harness(session, registry, data_dir) as h:
        req = request()
        with capture_logs(processors=[merge_contextvars]) as logs:
            accepted = await h.gateway.submit(req)
            assert isinstance(accepted, Accepted)
            await h.log.terminal(accepted.job_id)
        mine = [e for e in logs if e.get("request_id") == req.request_id]
        names = [e["event"] for e in mine]
        for expected in (
            "job_enqueued",
            "job_dequeued",
            "server_chosen",
            "workflow_rendered",
            "comfyui_prompt_sent",
            "image_retrieved",
            "job_succeeded",
        ):
            assert expected in names, (expected, names)
        succeeded = next(e for e in mine if e["event"] == "job_succeeded")
        assert succeeded["duration_ms"] >= succeeded["run_ms"] >= 0
        assert succeeded["job_id"] == accepted.job_id and succeeded["prompt_id"]
        assert succeeded["backend"] == "comfy0"


async def test_previews_are_stored_and_throttled(session, registry, data_dir) -> None:
    async with harness(session, registry, data_dir, fake_options={"step_delay_s": 0.01}) as h:
        accepted = await h.gateway.submit(request(steps=20))
        assert isinstance(accepted, Accepted)
        await h.log.terminal(accepted.job_id)
        previews = h.log.of(accepted.job_id, "preview")
        assert 1 <= len(previews) < 20  # one per second at most, the run takes well under that
        assert isinstance(previews[0], Preview) and previews[0].image.path.startswith("previews/")


async def test_pipelining_queues_the_next_prompt_inside_comfyui(session, registry, data_dir) -> None:
    """Capacity 2: while the first prompt runs, the second is already in ComfyUI's own queue."""
    async with harness(session, registry, data_dir, fake_options={"run_time_s": 0.6}) as h:
        jobs = [await h.gateway.submit(request(f"job {i}")) for i in range(3)]
        ids = [j.job_id for j in jobs if isinstance(j, Accepted)]
        fake = h.fakes[0]
        await h.log.wait_for(lambda: h.log.of(ids[0], "started"))
        await h.log.wait_for(lambda: len(fake.received_prompts) >= 2 or h.log.of(ids[0], "succeeded"))
        assert len(fake.received_prompts) >= 2 and not h.log.of(ids[0], "succeeded")
        assert len(fake.received_prompts) == 2  # capacity 2: the third waits in our queue
        for job_id in ids:
            assert isinstance(await h.log.terminal(job_id), Succeeded)


async def test_waiting_jobs_get_position_updates(session, registry, data_dir) -> None:
    async with harness(session, registry, data_dir, capacity=1, fake_options={"run_time_s": 0.3}) as h:
        jobs = [await h.gateway.submit(request(f"job {i}")) for i in range(3)]
        ids = [j.job_id for j in jobs if isinstance(j, Accepted)]
        assert [j.position for j in jobs if isinstance(j, Accepted)] == [1, 2, 3]

        def moved_up() -> bool:
            return any(isinstance(e, Queued) and e.position == 1 for e in h.log.of(ids[2]))

        await h.log.wait_for(moved_up)
        for job_id in ids:
            assert isinstance(await h.log.terminal(job_id), Succeeded)


async def test_cancel_queued_job(session, registry, data_dir, backend_factory) -> None:
    async with harness(
        session, registry, data_dir, backend=backend_factory(), capacity=1, fake_options={"run_time_s": 1.0}
    ) as h:
        first = await h.gateway.submit(request("first"))
        second = await h.gateway.submit(request("second"))
        assert isinstance(first, Accepted) and isinstance(second, Accepted)
        assert not await h.gateway.cancel(second.job_id, by="someone-else")
        assert await h.gateway.cancel(second.job_id, by="u1")
        ended = await h.log.terminal(second.job_id)
        assert isinstance(ended, Cancelled) and ended.by == "u1"
        assert isinstance(await h.log.terminal(first.job_id), Succeeded)
        assert len(h.fakes[0].received_prompts) == 1
        record = await h.gateway.get_job(second.job_id)
        assert record is not None and record.state is JobState.CANCELLED


async def test_cancel_running_job_interrupts_it(session, registry, data_dir, backend_factory) -> None:
    async with harness(
        session, registry, data_dir, backend=backend_factory(), fake_options={"run_time_s": 5.0}
    ) as h:
        job = await h.gateway.submit(request())
        assert isinstance(job, Accepted)
        await h.log.wait_for(lambda: h.log.of(job.job_id, "progress"))
        assert await h.gateway.cancel(job.job_id, by="admin-7", admin=True)
        ended = await h.log.terminal(job.job_id)
        assert isinstance(ended, Cancelled) and ended.by == "admin-7"
        assert h.fakes[0].interrupts  # the prompt was interrupted in ComfyUI
        await h.fakes[0].wait_idle()


async def test_cancel_pipelined_job_deletes_it_from_comfyui_queue(session, registry, data_dir) -> None:
    async with harness(session, registry, data_dir, fake_options={"run_time_s": 2.0}) as h:
        first = await h.gateway.submit(request("first"))
        second = await h.gateway.submit(request("second"))
        assert isinstance(first, Accepted) and isinstance(second, Accepted)
        fake = h.fakes[0]
        await h.log.wait_for(lambda: h.log.of(first.job_id, "started"))
        await h.log.wait_for(lambda: len(fake.pending_prompt_ids) == 1)
        pending = fake.pending_prompt_ids[0]
        assert await h.gateway.cancel(second.job_id, by="u1")
        assert isinstance(await h.log.terminal(second.job_id), Cancelled)
        assert pending in fake.deleted
        assert not fake.interrupts  # the running prompt of the first job was left alone
        assert isinstance(await h.log.terminal(first.job_id), Succeeded)


async def test_cancel_broadcast_that_outruns_its_job_still_cancels_it(
    session, registry, data_dir, backend_factory
) -> None:
    """The race the worker must not lose: the job was taken (so the canceller could not remove it from the
    queue and broadcast instead), and the broadcast reached the worker before the job registered there.
    Shown by delivering the broadcast while the job still waits; the job must end cancelled, unposted."""
    async with harness(
        session, registry, data_dir, backend=backend_factory(), capacity=1, fake_options={"run_time_s": 0.5}
    ) as h:
        first = await h.gateway.submit(request("first"))
        second = await h.gateway.submit(request("second"))
        assert isinstance(first, Accepted) and isinstance(second, Accepted)
        await h.log.wait_for(lambda: h.log.of(first.job_id, "started"))
        assert h.gateway.worker is not None
        assert not h.gateway.worker.cancel_local(second.job_id, "u1")  # not held yet: remembered
        ended = await h.log.terminal(second.job_id)
        assert isinstance(ended, Cancelled) and ended.by == "u1"
        assert isinstance(await h.log.terminal(first.job_id), Succeeded)
        assert len(h.fakes[0].received_prompts) == 1


async def test_next_prompt_is_posted_while_the_last_images_download(
    session, registry, data_dir, backend_factory
) -> None:
    """A server's slot is freed when its prompt is done in ComfyUI, not when the images are stored: with
    capacity 1, the second job's prompt reaches ComfyUI while the first job's download is held."""
    async with harness(session, registry, data_dir, backend=backend_factory(), capacity=1) as h:
        fake = h.fakes[0]
        gate = fake.hold_views()
        first = await h.gateway.submit(request("first"))
        second = await h.gateway.submit(request("second"))
        assert isinstance(first, Accepted) and isinstance(second, Accepted)
        await h.log.wait_for(lambda: len(fake.received_prompts) == 2)
        assert not h.log.of(first.job_id, "succeeded")  # still downloading
        gate.set()
        assert isinstance(await h.log.terminal(first.job_id), Succeeded)
        assert isinstance(await h.log.terminal(second.job_id), Succeeded)
        record = await h.gateway.get_job(first.job_id)
        assert record is not None and record.attempts == 1  # no download timed out and ran it again
        assert len(fake.received_prompts) == 2


@pytest.fixture
def slow_registry(tmp_path: Path):
    """txt2img as ``quick``, with a 0.5 s timeout."""
    d = tmp_path / "wf"
    d.mkdir()
    shutil.copy(SHIPPED_DIR / "txt2img.json", d / "quick.json")
    manifest = json.loads((SHIPPED_DIR / "txt2img.manifest.json").read_text())
    manifest.update(name="quick", timeout_s=0.5)
    (d / "quick.manifest.json").write_text(json.dumps(manifest))
    return load_workflows([d])


async def test_timeout_interrupts_prompt(session, slow_registry, data_dir) -> None:
    async with harness(session, slow_registry, data_dir, fake_options={"run_time_s": 5.0}) as h:
        job = await h.gateway.submit(request(workflow="quick"))
        assert isinstance(job, Accepted)
        ended = await h.log.terminal(job.job_id)
        assert isinstance(ended, TimedOut) and ended.after_s == 0.5
        assert h.fakes[0].interrupts
        record = await h.gateway.get_job(job.job_id)
        assert record is not None and record.state is JobState.TIMED_OUT


async def test_started_event_names_the_backend(session, registry, data_dir) -> None:
    async with harness(session, registry, data_dir) as h:
        job = await h.gateway.submit(request())
        assert isinstance(job, Accepted)
        await h.log.terminal(job.job_id)
        started = h.log.of(job.job_id, "started")
        assert len(started) == 1 and isinstance(started[0], Started) and started[0].backend == "comfy0"
        assert not any(isinstance(e, Failed) for e in h.log.events)


async def test_shutdown_with_jobs_in_flight_is_clean(session, registry, data_dir) -> None:
    async with harness(session, registry, data_dir, fake_options={"run_time_s": 5.0}) as h:
        job = await h.gateway.submit(request())
        assert isinstance(job, Accepted)
        await h.log.wait_for(lambda: h.log.of(job.job_id, "started"))
    await asyncio.sleep(0)
