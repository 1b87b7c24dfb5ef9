"""``run_discord`` runs until cancelled and closes what it opened; a missing token is one clear error."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import discord
import pytest
import yarl
from aiohttp import web
from structlog.testing import capture_logs

from bot.discord.app import DiscordFrontend, run_discord
from bot.discord.client import RateLimitLogFilter
from bot.startup import Backoff, StartupRefused
from comfy.workflows import WorkflowRegistry
from core.config import DiscordSettings
from gateway.memory import MemoryStore
from gateway.service import Gateway
from gateway.storage import ImageStore
from tests.fakes.discord import FakeDiscord


async def test_run_discord_until_cancelled(tmp_path: Path, registry: WorkflowRegistry) -> None:
    async with FakeDiscord() as fake, MemoryStore() as backend:
        gateway = Gateway(backend, registry, ImageStore(tmp_path))
        task = asyncio.create_task(run_discord(fake.settings(), gateway, registry))
        await fake.wait_for(lambda: fake.commands and fake.identified)
        inter = await fake.slash(1, 2, "workflows")
        await fake.wait_for(lambda: fake.original(inter))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_missing_token_is_a_clear_error(tmp_path: Path, registry: WorkflowRegistry) -> None:
    gateway = Gateway(MemoryStore(), registry, ImageStore(tmp_path))
    with pytest.raises(ValueError, match="discord.bot_token"):
        DiscordFrontend(DiscordSettings(), gateway, registry)


async def test_bad_token_fails_at_start_and_leaks_nothing(tmp_path: Path, registry: WorkflowRegistry) -> None:
    async with FakeDiscord() as fake, MemoryStore() as backend:
        fake.reject_token = True
        gateway = Gateway(backend, registry, ImageStore(tmp_path))
        frontend = DiscordFrontend(fake.settings(bot_token="x" * 30), gateway, registry)
        with pytest.raises(StartupRefused, match="DISCORD_BOT_TOKEN was refused"):
            await frontend.start()
        assert len(fake.calls_of("me")) == 1  # a refused token is not retried
        # Regression: a failed start left its rate-limit log filter behind, doubling discord_rate_limited.
        assert not [
            f
            for f in logging.getLogger("discord.webhook.async_").filters
            if isinstance(f, RateLimitLogFilter)
        ]


async def test_discord_failing_at_startup_is_retried_until_it_answers(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """Regression: a 5xx on the login's ``users/@me`` ended the process; a failed first gateway connection
    crashed inside discord.py (``AttributeError`` on its missing websocket)."""
    async with FakeDiscord() as fake, MemoryStore() as backend:
        fake.inject_error("me", 503, 0, "503: Service Unavailable", times=2)
        fake.inject_error("gateway", 503, 0, "503: Service Unavailable", times=1)
        gateway = Gateway(backend, registry, ImageStore(tmp_path))
        quick = Backoff(initial_s=0.05, cap_s=0.2)
        settings = fake.settings()
        with capture_logs() as logs:
            async with DiscordFrontend(settings, gateway, registry, startup_backoff=quick) as frontend:
                await frontend.wait_ready()
                inter = await fake.slash(1, 2, "workflows")
                await fake.wait_for(lambda: fake.original(inter))
    retries = [e for e in logs if e["event"] == "frontend_start_retry"]
    assert [(e["platform"], e["step"], e["attempt"]) for e in retries] == [
        ("discord", "login", 1),
        ("discord", "login", 2),
        ("discord", "gateway", 1),
    ]
    assert all("503" in e["error"] for e in retries), retries


@asynccontextmanager
async def rest_proxy(upstream: str) -> AsyncIterator[tuple[str, list[str]]]:
    """A rate-limit proxy as large bots put in front of Discord's REST API (nirn-proxy, twilight's
    http-proxy): it forwards every request as it is and answers what Discord answered. Yields its URL and
    the paths it forwarded."""
    seen: list[str] = []
    async with aiohttp.ClientSession() as session:

        async def forward(request: web.Request) -> web.Response:
            seen.append(request.path)
            keep = {"authorization", "content-type", "user-agent", "x-audit-log-reason"}
            headers = {k: v for k, v in request.headers.items() if k.lower() in keep}
            async with session.request(
                request.method, upstream + request.path_qs, data=await request.read(), headers=headers
            ) as resp:
                body = await resp.read()
                back = {k: v for k, v in resp.headers.items() if k.lower() in {"content-type", "retry-after"}}
                return web.Response(body=body, status=resp.status, headers=back)

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        try:
            yield f"http://127.0.0.1:{port}", seen
        finally:
            await runner.cleanup()


async def test_rest_goes_through_the_configured_api_base(tmp_path: Path, registry: WorkflowRegistry) -> None:
    """DISCORD_API_BASE routes every REST call — login, command sync, interaction callbacks, webhook
    edits — through a rate-limit proxy; DISCORD_GATEWAY_URL names the websocket. discord.py keeps both
    process-wide: they are put back when the front end stops."""
    defaults = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    assert defaults == ("https://discord.com/api/v10", yarl.URL("wss://gateway.discord.gg/"))
    async with FakeDiscord() as fake, MemoryStore() as backend, rest_proxy(fake.url) as (proxy, seen):
        gateway = Gateway(backend, registry, ImageStore(tmp_path))
        settings = fake.settings(api_base=proxy)
        async with DiscordFrontend(settings, gateway, registry) as frontend:
            await frontend.wait_ready()
            inter = await fake.slash(1, 2, "generate", {"prompt": "a lighthouse", "workflow": "nope"})
            await fake.wait_for(lambda: fake.original(inter))
            inter = await fake.slash(1, 2, "workflows")
            await fake.wait_for(lambda: fake.original(inter))
        assert defaults == (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    assert fake.identified == 1  # the gateway: DISCORD_GATEWAY_URL, straight to the fake
    assert {"me", "commands", "callback"} <= {c.kind for c in fake.calls}
    assert sorted(p.removeprefix("/api/v10") for p in seen) == sorted(c.path for c in fake.calls)
