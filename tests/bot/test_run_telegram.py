"""``run_telegram`` as the startup module uses it: own Bot session from the settings, clean cancel."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from bot.telegram.app import run_telegram
from comfy import ComfyClient
from comfy.workflows import WorkflowRegistry
from core.config import TelegramSettings
from gateway.app import run_gateway
from gateway.memory import MemoryStore
from gateway.storage import ImageStore
from tests.bot.conftest import CHECKPOINTS, FAST
from tests.fakes.comfyui import running_fake_comfyui
from tests.fakes.telegram import FakeTelegram


async def test_run_telegram_serves_and_stops_on_cancel(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with (
        running_fake_comfyui(checkpoints=CHECKPOINTS) as comfy,
        aiohttp.ClientSession() as session,
        MemoryStore() as backend,
        ComfyClient(comfy.url, session, name="c0") as client,
        run_gateway(backend, registry, ImageStore(data_dir), [client], options=FAST) as gateway,
        FakeTelegram() as fake,
    ):
        settings = TelegramSettings(bot_token=fake.token, api_base=fake.url + "/")
        task = asyncio.create_task(run_telegram(settings, gateway, registry, polling_timeout=1))
        fake.send_text(1, 1, "/generate a small boat --steps 2")
        await fake.wait_until(lambda: any(m.photo for m in fake.bot_messages(1)), timeout=20)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled() or task.exception() is None
