"""``run_discord`` runs until cancelled and closes what it opened; a missing token is one clear error."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import discord
import pytest

from bot.discord.app import DiscordFrontend, run_discord
from bot.discord.client import RateLimitLogFilter
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
        with pytest.raises(discord.LoginFailure):
            await frontend.start()
        # Regression: a failed start left its rate-limit log filter behind, doubling discord_rate_limited.
        assert not [
            f
            for f in logging.getLogger("discord.webhook.async_").filters
            if isinstance(f, RateLimitLogFilter)
        ]
