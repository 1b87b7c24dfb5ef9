"""Crash recovery with real processes: ``python -m gateway`` killed with SIGKILL mid-job, another finishes it.

The fake ComfyUI runs in the test's loop, Redis is the test's ``redis_server``; the front end is a
``Gateway`` in the test (no workers) submitting through the same Redis and reading the events.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from comfy.workflows import load_workflows
from gateway.models import JobRequest, Succeeded
from gateway.redis_store import RedisStore
from gateway.service import Accepted, Gateway
from gateway.storage import ImageStore
from tests.fakes.comfyui import running_fake_comfyui
from tests.gateway.conftest import CHECKPOINTS, EventLog, request

ROOT = Path(__file__).resolve().parents[2]
LEASE_S = 1.5


@dataclass
class WorkerProcess:
    """One ``python -m gateway`` child; its JSON log lines are parsed as they arrive."""

    proc: asyncio.subprocess.Process
    lines: list[dict[str, object]] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    reader: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            with contextlib.suppress(orjson.JSONDecodeError):
                line = orjson.loads(raw)
                async with self.changed:
                    self.lines.append(line)
                    self.changed.notify_all()

    def events(self, name: str) -> list[dict[str, object]]:
        return [line for line in self.lines if line.get("event") == name]

    async def wait_event(self, name: str, timeout_s: float = 20.0) -> dict[str, object]:
        async with self.changed, asyncio.timeout(timeout_s):
            await self.changed.wait_for(lambda: bool(self.events(name)))
        return self.events(name)[0]


@asynccontextmanager
async def worker_process(env: dict[str, str]) -> AsyncIterator[WorkerProcess]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "--lease-s",
        str(LEASE_S),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    worker = WorkerProcess(proc)
    worker.reader = asyncio.create_task(worker._read())
    try:
        yield worker
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        await worker.reader


@pytest.fixture
def env(tmp_path: Path, data_dir: Path, redis_server) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": redis_server.url,
        "COMFYBOT_DATA_DIR": str(data_dir),
        "LOG_DIR": str(tmp_path / "logs"),
        "LOG_LEVEL": "INFO",
        "COMFYUI_WS_STALL_TIMEOUT": "2",
    }


@asynccontextmanager
async def front_end(redis_url: str, data_dir: Path) -> AsyncIterator[tuple[Gateway, EventLog]]:
    async with RedisStore(redis_url, retry_for_s=20) as backend:
        gateway = Gateway(backend, load_workflows(), ImageStore(data_dir))
        log = EventLog()
        collector = asyncio.create_task(log.collect(gateway.subscribe("telegram")))
        try:
            yield gateway, log
        finally:
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector


async def _killed_mid_job(env: dict[str, str], gateway: Gateway, log: EventLog, req: JobRequest) -> Accepted:
    """Submit ``req``, let a worker process start it inside ComfyUI, then SIGKILL that worker."""
    async with worker_process(env) as first:
        await first.wait_event("worker_started")
        job = await gateway.submit(req)
        assert isinstance(job, Accepted)
        await log.wait_for(lambda: log.of(job.job_id, "started"))  # running inside ComfyUI
        first.proc.send_signal(signal.SIGKILL)
        await first.proc.wait()
    return job


async def test_killed_worker_job_is_finished_by_another_without_running_twice(env, redis_server, data_dir):
    async with running_fake_comfyui(checkpoints=CHECKPOINTS, run_time_s=3.0) as fake:
        env = {**env, "COMFYUI_URLS": fake.url}
        async with front_end(redis_server.url, data_dir) as (gateway, log):
            req = request()
            job = await _killed_mid_job(env, gateway, log, req)
            async with worker_process(env) as second:
                done = await log.terminal(job.job_id, timeout_s=30)
                assert isinstance(done, Succeeded), done
                recovered = await second.wait_event("job_recovered")
                assert recovered["job_id"] == job.job_id and recovered["outcome"] in ("in_queue", "finished")
                assert recovered["request_id"] == req.request_id  # the log line carries the request
            assert len(fake.received_prompts) == 1  # no GPU time spent twice
            assert len(log.of(job.job_id, "succeeded")) == 1
            assert await gateway.mark_delivered(job.job_id)
            assert not await gateway.mark_delivered(job.job_id)
            for image in done.images:
                assert gateway.image_path(image).is_file()


async def test_prompt_unknown_to_comfyui_is_resubmitted_once(env, redis_server, data_dir):
    async with running_fake_comfyui(checkpoints=CHECKPOINTS, run_time_s=3.0) as fake:
        env = {**env, "COMFYUI_URLS": fake.url}
        async with front_end(redis_server.url, data_dir) as (gateway, log):
            job = await _killed_mid_job(env, gateway, log, request())
            await fake.forget_all()  # ComfyUI restarted too: the prompt is gone
            async with worker_process(env) as second:
                done = await log.terminal(job.job_id, timeout_s=30)
                assert isinstance(done, Succeeded), done
                recovered = await second.wait_event("job_recovered")
                assert recovered["outcome"] == "resubmitted"
            assert len(fake.received_prompts) == 2
            assert len(log.of(job.job_id, "succeeded")) == 1
            record = await gateway.get_job(job.job_id)
            assert record is not None and record.resubmitted and record.attempts == 2


async def test_sigterm_stops_the_worker_cleanly(env, redis_server, data_dir):
    async with running_fake_comfyui(checkpoints=CHECKPOINTS) as fake:
        worker_env = {**env, "COMFYUI_URLS": fake.url}
        async with worker_process(worker_env) as worker:
            await worker.wait_event("gateway_ready")
            worker.proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                assert await worker.proc.wait() == 0
            await worker.wait_event("gateway_exit")
            assert worker.events("worker_stopped")


async def test_a_failed_check_of_the_dead_workers_server_is_asked_again_not_resubmitted(
    env, redis_server, data_dir
):
    """The claimer cannot reach the server for a moment when it asks after the dead worker's prompt: a
    failed check says nothing, so it asks again once the server answers and follows the same prompt —
    one prompt at ComfyUI, not a second one sent because the first answer was an error."""
    async with running_fake_comfyui(checkpoints=CHECKPOINTS, run_time_s=6.0) as fake:
        env = {**env, "COMFYUI_URLS": fake.url}
        async with front_end(redis_server.url, data_dir) as (gateway, log):
            job = await _killed_mid_job(env, gateway, log, request())
            await fake.refuse_connections()
            async with worker_process(env) as second:
                await second.wait_event("job_recovery_check_failed")
                await fake.accept_connections()
                done = await log.terminal(job.job_id, timeout_s=60)
                assert isinstance(done, Succeeded), done
                recovered = await second.wait_event("job_recovered")
                assert recovered["outcome"] in ("in_queue", "finished")
            assert len(fake.received_prompts) == 1, "the same prompt, followed, not sent again"
