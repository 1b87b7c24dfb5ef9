"""Several workers sharing one Redis queue: every job runs once, live leases are never stolen."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
from structlog.testing import capture_logs

from comfy import ComfyClient
from comfy.workflows import WorkflowRegistry
from gateway.app import WorkerOptions, run_gateway
from gateway.limits import Limits
from gateway.models import Failed, FailureCode, Succeeded
from gateway.redis_store import RedisStore
from gateway.service import Accepted, Gateway
from gateway.storage import ImageStore
from tests.fakes.comfyui import FakeComfyUI, running_fake_comfyui
from tests.gateway.conftest import CHECKPOINTS, EventLog, request

OPTIONS = WorkerOptions(lease_s=1.0, retry_backoff_s=0.05, health_interval_s=0.3, cleanup_interval_s=3600)


async def start_workers(
    stack: AsyncExitStack,
    session: aiohttp.ClientSession,
    registry: WorkflowRegistry,
    data_dir: Path,
    url: str,
    fakes: list[FakeComfyUI],
    count: int,
    *,
    first: int = 0,
    limits: Limits | None = None,
) -> list[Gateway]:
    gateways = []
    for n in range(first, first + count):
        backend = await stack.enter_async_context(RedisStore(url, retry_for_s=20))
        clients = [
            await stack.enter_async_context(
                ComfyClient(f.url, session, name=f"comfy{i}", request_timeout_s=5)
            )
            for i, f in enumerate(fakes)
        ]
        options = WorkerOptions(**{**OPTIONS.__dict__, "consumer": f"worker{n}"})
        gateways.append(
            await stack.enter_async_context(
                run_gateway(backend, registry, ImageStore(data_dir), clients, limits=limits, options=options)
            )
        )
    return gateways


async def test_jobs_shared_by_workers_run_once(session, registry, data_dir, redis_server) -> None:
    async with AsyncExitStack() as stack:
        fakes = [
            await stack.enter_async_context(running_fake_comfyui(checkpoints=CHECKPOINTS, run_time_s=0.2))
            for _ in range(2)
        ]
        gateways = await start_workers(stack, session, registry, data_dir, redis_server.url, fakes, 3)
        log = EventLog()
        collector = asyncio.create_task(log.collect(gateways[0].subscribe("telegram")))
        try:
            jobs = [await gateways[i % 3].submit(request(f"p{i}", user=f"u{i}")) for i in range(10)]
            accepted = [job for job in jobs if isinstance(job, Accepted)]
            assert len(accepted) == len(jobs)
            for job in accepted:
                assert isinstance(await log.terminal(job.job_id, timeout_s=30), Succeeded)
            assert all(len(log.of(j.job_id, "succeeded")) == 1 for j in accepted)
            assert sum(len(f.received_prompts) for f in fakes) == 10
        finally:
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector


async def test_live_lease_is_renewed_not_stolen(session, registry, data_dir, redis_server) -> None:
    """A job running three lease periods long stays with its worker while another worker watches."""
    async with AsyncExitStack() as stack:
        fake = await stack.enter_async_context(running_fake_comfyui(checkpoints=CHECKPOINTS, run_time_s=3.0))
        (first,) = await start_workers(stack, session, registry, data_dir, redis_server.url, [fake], 1)
        log = EventLog()
        collector = asyncio.create_task(log.collect(first.subscribe("telegram")))
        try:
            job = await first.submit(request())
            assert isinstance(job, Accepted)
            await log.wait_for(lambda: log.of(job.job_id, "started"))
            with capture_logs() as logs:
                await start_workers(stack, session, registry, data_dir, redis_server.url, [fake], 1)
                assert isinstance(await log.terminal(job.job_id), Succeeded)
            assert not [e for e in logs if e["event"] == "job_recovered"]
            assert len(fake.received_prompts) == 1
        finally:
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector


async def test_a_stopping_worker_hands_its_job_to_another(session, registry, data_dir, redis_server) -> None:
    """SIGTERM of one worker (``Gateway.shut_down``) with a prompt that outlasts the grace: the chat is
    told the job is kept, the lease is handed back, and the other worker finishes the same prompt."""
    async with AsyncExitStack() as stack:
        fake = await stack.enter_async_context(running_fake_comfyui(checkpoints=CHECKPOINTS, run_time_s=3.0))
        (stopping,) = await start_workers(stack, session, registry, data_dir, redis_server.url, [fake], 1)
        log = EventLog()
        collector = asyncio.create_task(log.collect(stopping.subscribe("telegram")))
        try:
            job = await stopping.submit(request())
            assert isinstance(job, Accepted)
            await log.wait_for(lambda: log.of(job.job_id, "started"))
            await stopping.shut_down(0.1)
            assert log.of(job.job_id, "held") or await log.wait_for(lambda: log.of(job.job_id, "held"))
            assert stopping.worker is not None and not stopping.worker.jobs
            with capture_logs() as logs:
                await start_workers(stack, session, registry, data_dir, redis_server.url, [fake], 1, first=1)
                assert isinstance(await log.terminal(job.job_id), Succeeded)
            recovered = [e for e in logs if e["event"] == "job_recovered"]
            assert len(recovered) == 1, "taken over from the stopped worker"
            assert len(fake.received_prompts) == 1, "its prompt was resumed, not sent again"
            assert not fake.interrupts
        finally:
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector


async def test_a_job_no_server_can_run_is_failed_by_one_worker_once(
    session, registry, data_dir, redis_server
) -> None:
    """Three workers all see the only server down: the job fails no_backend at the queue timeout, with
    one terminal event and one ``job_failed`` line between them."""
    async with AsyncExitStack() as stack:
        fake = await stack.enter_async_context(running_fake_comfyui(checkpoints=CHECKPOINTS))
        await fake.refuse_connections()
        limits = Limits(queue_timeout_s=0.5)
        with capture_logs() as logs:
            gateways = await start_workers(
                stack, session, registry, data_dir, redis_server.url, [fake], 3, limits=limits
            )
            log = EventLog()
            collector = asyncio.create_task(log.collect(gateways[0].subscribe("telegram")))
            try:
                job = await gateways[1].submit(request())
                assert isinstance(job, Accepted) and job.blocked is not None
                failed = await log.terminal(job.job_id)
                assert isinstance(failed, Failed) and failed.code is FailureCode.NO_BACKEND
                # the workers keep passing over the queue meanwhile: the later job fails at its own bound
                later = await gateways[2].submit(request("later", user="u2"))
                assert isinstance(later, Accepted)
                await log.terminal(later.job_id)
            finally:
                collector.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await collector
        assert len(log.of(job.job_id, "failed")) == 1
        failures = [e for e in logs if e["event"] == "job_failed" and e.get("code") == "no_backend"]
        assert len(failures) == 2, failures  # the job and the later one, once each
