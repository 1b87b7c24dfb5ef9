"""``run_discord`` runs until cancelled and closes what it opened; a missing token is one clear error."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bot.discord.app import DiscordFrontend, run_discord
from bot.discord.client import RateLimitLogFilter
from bot.startup import Backoff, StartupRefused
from comfy.workflows import WorkflowRegistry
from comfybot.config import DiscordSettings
from gateway.memory import MemoryStore
from gateway.service import Gateway
from gateway.storage import ImageStore
from tests.fakes.discord import FakeDiscord


async def test_run_discord_until_cancelled(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeDiscord() as fake, MemoryStore() as backend:
        fake.patch(monkeypatch)
        gateway = Gateway(backend, registry, ImageStore(tmp_path))
        task = asyncio.create_task(run_discord(DiscordSettings(bot_token=fake.token), gateway, registry))
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


async def test_bad_token_fails_at_start_and_leaks_nothing(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeDiscord() as fake, MemoryStore() as backend:
        fake.patch(monkeypatch)
        fake.reject_token = True
        gateway = Gateway(backend, registry, ImageStore(tmp_path))
        frontend = DiscordFrontend(DiscordSettings(bot_token="x" * 30), gateway, registry)
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
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a 5xx on the login's ``users/@me`` ended the process; a failed first gateway connection
    crashed inside discord.py (``AttributeError`` on its missing websocket)."""
    async with FakeDiscord() as fake, MemoryStore() as backend:
        fake.patch(monkeypatch)
        fake.inject_error("me", 503, 0, "503: Service Unavailable", times=2)
        fake.inject_error("gateway", 503, 0, "503: Service Unavailable", times=1)
        gateway = Gateway(backend, registry, ImageStore(tmp_path))
        quick = Backoff(initial_s=0.05, cap_s=0.2)
        settings = DiscordSettings(bot_token=fake.token)
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
