"""End-to-end harness: the real discord.py client against FakeDiscord, the real gateway, a fake ComfyUI."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

with warnings.catch_warnings():
    # discord.py 2.7 imports audioop (deprecated since 3.11); filterwarnings=error would fail collection.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord  # noqa: F401

from bot.discord.app import DiscordFrontend  # noqa: E402
from bot.discord.context import DiscordOptions  # noqa: E402
from comfy import ComfyClient  # noqa: E402
from comfy.workflows import WorkflowRegistry  # noqa: E402
from gateway.app import run_gateway  # noqa: E402
from gateway.limits import AccessPolicy, Limits  # noqa: E402
from gateway.memory import MemoryStore  # noqa: E402
from gateway.service import Gateway  # noqa: E402
from gateway.storage import ImageStore  # noqa: E402
from gateway.store import Store  # noqa: E402
from tests.bot.conftest import CHECKPOINTS, FAST, UPSCALERS  # noqa: E402
from tests.fakes.comfyui import FakeComfyUI, running_fake_comfyui  # noqa: E402
from tests.fakes.discord import FakeDiscord, FakeInteraction, StoredMessage  # noqa: E402

USER, OTHER, CHANNEL = 4242, 4343, 7001
RESULT_PREFIX = "comfybot:i:"  # every result has ℹ️ Info


@dataclass
class DBench:
    """Everything a Discord end-to-end test touches."""

    fake: FakeDiscord
    comfy: FakeComfyUI
    gateway: Gateway
    backend: Store
    registry: WorkflowRegistry
    frontend: DiscordFrontend
    options: DiscordOptions
    stack: AsyncExitStack
    frontends: list[DiscordFrontend] = field(default_factory=list)

    async def until(self, condition: Callable[[], Any], timeout: float = 20.0) -> Any:  # noqa: ASYNC109
        return await self.fake.wait_for(condition, timeout)

    async def logged(
        self,
        logs: Sequence[Mapping[str, Any]],
        event: str,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> Mapping[str, Any]:
        """The first captured log entry named ``event`` (logged after the fake's last change, so polled)."""
        async with asyncio.timeout(timeout):
            while True:
                found = next((e for e in logs if e["event"] == event), None)
                if found is not None:
                    return found
                await asyncio.sleep(0.01)

    async def original(self, inter: FakeInteraction, timeout: float = 20.0) -> StoredMessage:  # noqa: ASYNC109
        msg: StoredMessage = await self.until(lambda: self.fake.original(inter), timeout)
        return msg

    def results(self, channel: int = CHANNEL) -> list[StoredMessage]:
        return [
            m
            for m in self.fake.channel_messages(channel)
            if m.attachments and any(c.startswith(RESULT_PREFIX) for c in m.custom_ids)
        ]

    async def result(self, channel: int = CHANNEL, count: int = 1, timeout: float = 20.0) -> StoredMessage:  # noqa: ASYNC109
        """The ``count``-th message in ``channel`` with images and the result buttons."""
        found: list[StoredMessage] = await self.until(
            lambda: len(self.results(channel)) >= count and self.results(channel), timeout
        )
        return found[count - 1]

    async def ephemeral(self, needle: str, channel: int = CHANNEL, timeout: float = 20.0) -> StoredMessage:  # noqa: ASYNC109
        def found() -> StoredMessage | None:
            return next(
                (m for m in self.fake.channel_messages(channel) if m.ephemeral and needle in m.content), None
            )

        msg: StoredMessage = await self.until(found, timeout)
        return msg

    async def restart(self) -> DiscordFrontend:
        """Stop the front end and start a new one (a new discord.py client) on the same gateway."""
        await self.frontend.stop()
        self.frontend = self._make_frontend()
        await self.frontend.start()
        await self.frontend.wait_ready()
        self.frontends.append(self.frontend)
        return self.frontend

    def _make_frontend(self) -> DiscordFrontend:
        settings = self.fake.settings()
        return DiscordFrontend(
            settings, self.gateway, self.registry, options=self.options, drain_timeout_s=2.0
        )


@asynccontextmanager
async def dbench(
    data_dir: Path,
    registry: WorkflowRegistry,
    monkeypatch: pytest.MonkeyPatch,
    *,
    options: DiscordOptions | None = None,
    limits: Limits | None = None,
    access: AccessPolicy | None = None,
    comfy_options: dict[str, Any] | None = None,
    fake_options: dict[str, Any] | None = None,
    capacity: int = 2,
    backend: Store | None = None,
    comfy_down: bool = False,
) -> AsyncIterator[DBench]:
    """The fake's URLs reach the front end as settings (``DISCORD_API_BASE``/``DISCORD_GATEWAY_URL``);
    ``monkeypatch`` is no longer used for them and stays only so callers need not change.
    ``comfy_down``: the fake ComfyUI refuses connections from the start (``accept_connections`` to
    bring it up)."""
    del monkeypatch
    async with AsyncExitStack() as stack:
        comfy = await stack.enter_async_context(
            running_fake_comfyui(
                **{
                    "checkpoints": CHECKPOINTS,
                    "upscale_models": UPSCALERS,
                    "step_delay_s": 0.01,
                    **(comfy_options or {}),
                }
            )
        )
        if comfy_down:
            await comfy.refuse_connections()
        session = await stack.enter_async_context(aiohttp.ClientSession())
        backend = await stack.enter_async_context(backend or MemoryStore())
        client = await stack.enter_async_context(
            ComfyClient(comfy.url, session, name="comfy0", ws_stall_timeout_s=2.0, request_timeout_s=5.0)
        )
        gateway = await stack.enter_async_context(
            run_gateway(
                backend,
                registry,
                ImageStore(data_dir),
                [client],
                capacity=capacity,
                limits=limits,
                access=access,
                options=FAST,
            )
        )
        fake = await stack.enter_async_context(FakeDiscord(**(fake_options or {})))
        bench = DBench(fake, comfy, gateway, backend, registry, None, options or DiscordOptions(), stack)  # type: ignore[arg-type]
        bench.frontend = bench._make_frontend()
        await bench.frontend.start()
        bench.frontends.append(bench.frontend)
        try:
            await bench.frontend.wait_ready()
            await fake.wait_for(lambda: fake.commands)
            yield bench
        finally:
            await bench.frontend.stop()


@pytest.fixture
async def bench(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[DBench]:
    async with dbench(tmp_path, registry, monkeypatch) as b:
        yield b
