"""Fixtures for gateway tests: fake ComfyUI servers, a session, and a running gateway with an event log."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from comfy import ComfyClient
from comfy.workflows import WorkflowRegistry, load_workflows
from gateway.app import WorkerOptions, run_gateway
from gateway.limits import AccessPolicy, Limits
from gateway.memory import MemoryStore
from gateway.models import TERMINAL_EVENTS, JobEvent, JobRequest
from gateway.redis_store import RedisStore
from gateway.service import Gateway
from gateway.sqlite_store import SqliteStore
from gateway.storage import ImageStore
from gateway.store import Store
from tests.fakes.comfyui import FakeComfyUI, running_fake_comfyui

CHECKPOINTS = ("v1-5-pruned-emaonly.safetensors", "sd15.safetensors")
FAST = WorkerOptions(
    lease_s=3.0,
    retry_backoff_s=0.05,
    health_interval_s=0.3,
    cleanup_interval_s=3600,
    retry_acquire_timeout_s=1.0,
)


def request(
    prompt: str = "a lighthouse at dusk", *, user: str = "u1", workflow: str = "txt2img", **params: Any
) -> JobRequest:
    return JobRequest(
        platform="telegram",
        user_id=user,
        chat_id="c1",
        workflow=workflow,
        params={"prompt": prompt, "steps": 4, **params},
        reply_to={"message_id": 7},
    )


@dataclass
class EventLog:
    """Every event of one platform, collected by a background subscriber; wait on conditions."""

    events: list[JobEvent] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def collect(self, source: AsyncGenerator[JobEvent, None]) -> None:
        async with contextlib.aclosing(source) as events:
            async for event in events:
                async with self.changed:
                    self.events.append(event)
                    self.changed.notify_all()

    def of(self, job_id: str, kind: str | None = None) -> list[JobEvent]:
        return [e for e in self.events if e.job_id == job_id and (kind is None or e.kind == kind)]

    async def wait_for(self, predicate: Callable[[], Any], timeout_s: float = 20.0) -> Any:
        async with self.changed:
            async with asyncio.timeout(timeout_s):
                await self.changed.wait_for(predicate)
        return predicate()

    async def terminal(self, job_id: str, timeout_s: float = 20.0) -> JobEvent:
        def found() -> JobEvent | None:
            return next((e for e in self.of(job_id) if isinstance(e, TERMINAL_EVENTS)), None)

        result: JobEvent = await self.wait_for(found, timeout_s)
        return result


@dataclass
class Harness:
    gateway: Gateway
    backend: Store
    fakes: list[FakeComfyUI]
    clients: list[ComfyClient]
    log: EventLog
    store: ImageStore


@pytest.fixture(scope="session")
def registry() -> WorkflowRegistry:
    return load_workflows()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@asynccontextmanager
async def harness(
    session: aiohttp.ClientSession,
    registry: WorkflowRegistry,
    data_dir: Path,
    *,
    servers: int = 1,
    backend: Store | None = None,
    fake_options: dict[str, Any] | None = None,
    server_options: list[dict[str, Any]] | None = None,
    capacity: int = 2,
    limits: Limits | None = None,
    access: AccessPolicy | None = None,
    options: WorkerOptions = FAST,
    ws_stall_timeout_s: float = 2.0,
    down: bool = False,
) -> AsyncIterator[Harness]:
    """``down``: every fake ComfyUI refuses connections from the start (``accept_connections`` to bring
    one up)."""
    async with AsyncExitStack() as stack:
        per_server = server_options or [{} for _ in range(servers)]
        fakes = [
            await stack.enter_async_context(
                running_fake_comfyui(**{"checkpoints": CHECKPOINTS, **(fake_options or {}), **extra})
            )
            for extra in per_server
        ]
        if down:
            for fake in fakes:
                await fake.refuse_connections()
        backend = await stack.enter_async_context(backend or MemoryStore())
        store = ImageStore(data_dir)
        clients = [
            await stack.enter_async_context(
                ComfyClient(
                    f.url,
                    session,
                    name=f"comfy{i}",
                    ws_stall_timeout_s=ws_stall_timeout_s,
                    request_timeout_s=5.0,
                )
            )
            for i, f in enumerate(fakes)
        ]
        gateway = await stack.enter_async_context(
            run_gateway(
                backend,
                registry,
                store,
                clients,
                capacity=capacity,
                limits=limits,
                access=access,
                options=options,
            )
        )
        log = EventLog()
        collector = asyncio.create_task(log.collect(gateway.subscribe("telegram")))
        try:
            yield Harness(gateway, backend, fakes, clients, log, store)
        finally:
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    if request.param == "memory":
        return MemoryStore
    if request.param == "sqlite":
        return lambda: SqliteStore(tmp_path / "store" / "comfybot.db")
    srv = request.getfixturevalue("redis_server")
    return lambda: RedisStore(srv.url, retry_for_s=20)
