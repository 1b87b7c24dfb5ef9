"""Model-affinity routing (gateway/affinity.py): the real worker over fake ComfyUIs that charge a load
when the checkpoint changes. Capacity 1 per server, so "free" means "idle" and choices are plain."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
from structlog.testing import capture_logs

from comfy.workflows import WorkflowRegistry
from gateway.models import JobEvent, Succeeded
from gateway.service import Accepted
from tests.gateway.conftest import FAST, Harness, harness, request

A, B, C = "v1-5-pruned-emaonly.safetensors", "sd15.safetensors", "sdxl_base.safetensors"
CHECKPOINTS = {"checkpoints": [A, B, C]}


def rig(
    session: aiohttp.ClientSession, registry: WorkflowRegistry, data_dir: Path, wait_s: float = 30.0
) -> Any:
    return harness(
        session,
        registry,
        data_dir,
        servers=2,
        capacity=1,
        fake_options=CHECKPOINTS,
        options=replace(FAST, affinity_wait_s=wait_s),
    )


async def submit(h: Harness, ckpt: str, name: str) -> str:
    job = await h.gateway.submit(request(name, user=name, checkpoint=ckpt))
    assert isinstance(job, Accepted)
    return job.job_id


async def run(h: Harness, ckpt: str, name: str) -> Succeeded:
    done = await h.log.terminal(await submit(h, ckpt, name))
    assert isinstance(done, Succeeded)
    return done


async def warm(h: Harness) -> None:
    """comfy0 loads A, comfy1 (never loaded: a first load swaps nothing out) loads B."""
    assert (await run(h, A, "warm-a")).backend == "comfy0"
    assert (await run(h, B, "warm-b")).backend == "comfy1"


async def until(predicate: Callable[[], bool]) -> None:
    """Poll state outside the event log (the fake's running prompt, the worker's jobs)."""
    async with asyncio.timeout(20):
        while not predicate():  # noqa: ASYNC110  # the fake's and the worker's state have no Event
            await asyncio.sleep(0.01)


def chosen(logs: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    return [(e["backend"], e["affinity"]) for e in logs if e["event"] == "server_chosen"]


def loads(h: Harness) -> list[list[str]]:
    return [[ckpt for _, ckpt in fake.model_loads] for fake in h.fakes]


def finished_order(h: Harness) -> list[str]:
    events: list[JobEvent] = h.log.events
    return [e.job_id for e in events if isinstance(e, Succeeded)]


async def test_a_job_goes_to_the_free_server_that_has_its_model(session, registry, data_dir) -> None:
    async with rig(session, registry, data_dir) as h:
        await warm(h)
        with capture_logs() as logs:
            for ckpt in (B, A, B, A):  # least busy alone would send every one to comfy0
                await run(h, ckpt, f"job-{ckpt}")
        assert chosen(logs) == [("comfy1", "hit"), ("comfy0", "hit"), ("comfy1", "hit"), ("comfy0", "hit")]
        assert loads(h) == [[A], [B]]


async def test_waits_the_bounded_time_for_the_busy_server_with_its_model(session, registry, data_dir) -> None:
    async with rig(session, registry, data_dir, wait_s=30.0) as h:
        await warm(h)
        h.fakes[0].run_time_s = 1.0
        with capture_logs() as logs:
            first = await submit(h, A, "first")
            await until(lambda: h.fakes[0].running_prompt_id is not None)
            second = await h.log.terminal(await submit(h, A, "second"))
            assert isinstance(second, Succeeded) and second.backend == "comfy0"
        assert finished_order(h)[-2] == first
        assert chosen(logs) == [("comfy0", "hit"), ("comfy0", "waited")]
        assert loads(h) == [[A], [B]]  # comfy1 idled a moment rather than swap B out


async def test_does_not_wait_when_the_setting_is_0(session, registry, data_dir) -> None:
    async with rig(session, registry, data_dir, wait_s=0.0) as h:
        await warm(h)
        h.fakes[0].run_time_s = 3.0
        with capture_logs() as logs:
            first = await submit(h, A, "first")
            await until(lambda: h.fakes[0].running_prompt_id is not None)
            second = await h.log.terminal(await submit(h, A, "second"))
            assert isinstance(second, Succeeded) and second.backend == "comfy1"
            await h.log.terminal(first)
        assert finished_order(h)[-2:] == [second.job_id, first]
        assert chosen(logs) == [("comfy0", "hit"), ("comfy1", "miss")]
        assert loads(h) == [[A], [B, A]]


async def test_does_not_wait_when_no_server_has_the_model(session, registry, data_dir) -> None:
    async with rig(session, registry, data_dir, wait_s=30.0) as h:
        await warm(h)
        h.fakes[0].run_time_s = 3.0
        with capture_logs() as logs:
            first = await submit(h, A, "first")
            await until(lambda: h.fakes[0].running_prompt_id is not None)
            other = await h.log.terminal(await submit(h, C, "other"))
            assert isinstance(other, Succeeded) and other.backend == "comfy1"
            await h.log.terminal(first)
        assert finished_order(h)[-2:] == [other.job_id, first]
        assert chosen(logs) == [("comfy0", "hit"), ("comfy1", "miss")]
        assert loads(h) == [[A], [B, C]]


async def test_an_idle_gpu_takes_the_waiting_jobs_it_can_run(session, registry, data_dir) -> None:
    """A job waiting for its model's busy server does not keep the idle one from a job of its model."""
    async with rig(session, registry, data_dir, wait_s=30.0) as h:
        await warm(h)
        h.fakes[0].run_time_s = 2.0
        first = await submit(h, A, "first")
        await until(lambda: h.fakes[0].running_prompt_id is not None)
        waiting = await submit(h, A, "waiting")  # waits for comfy0, which has A
        await until(lambda: h.gateway.worker is not None and waiting in h.gateway.worker.jobs)
        behind = await submit(h, B, "behind")  # queued behind it; comfy1 has B and is idle
        for job_id in (first, waiting, behind):
            await h.log.terminal(job_id)
        assert finished_order(h)[-3:] == [behind, first, waiting]
        assert loads(h) == [[A], [B]]
