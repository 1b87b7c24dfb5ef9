"""A starting Telegram front end brings the job messages a stopped process left open to their job's true
state (issue: reconciliation at startup). Shared Redis, a front-end-only process (no worker), the real
aiogram client against the fake Bot API:

- a job whose record was lost (Redis evicted it) shows "interrupted" with a Run again button instead of
  "In the queue" and a Cancel that can no longer cancel anything; Run again is the owner's alone, and it
  runs the same request when a worker is there;
- a job that failed long ago whose outcome event was lost shows its failure from the record.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from bot.telegram.app import TelegramFrontend
from comfy import ComfyClient
from comfy.workflows import WorkflowRegistry
from core.config import TelegramSettings
from gateway.app import WorkerOptions, run_gateway
from gateway.finishing import Finisher
from gateway.models import FailureCode
from gateway.redis_store import RedisStore
from gateway.storage import ImageStore
from tests.conftest import RedisServer
from tests.fakes.comfyui import running_fake_comfyui
from tests.fakes.telegram import FakeTelegram, StoredMessage
from tests.gateway.conftest import CHECKPOINTS

OWNER, OTHER, GROUP = 7301, 7302, -100_7300


@asynccontextmanager
async def front_end(
    url: str, telegram: FakeTelegram, registry: WorkflowRegistry, data_dir: Path
) -> AsyncIterator[None]:
    """A front-end-only process: its own Redis connection, no worker."""
    async with (
        RedisStore(url) as store,
        run_gateway(store, registry, ImageStore(data_dir), [], workers=False) as gateway,
    ):
        settings = TelegramSettings(bot_token=telegram.token, api_base=telegram.url, previews=False)
        async with TelegramFrontend(settings, gateway, registry, bot=telegram.make_bot(), polling_timeout=1):
            yield


def _job_of(msg: StoredMessage) -> str:
    """The job id in the message's Cancel button (``j:c:<job>``)."""
    rows = (msg.reply_markup or {}).get("inline_keyboard", [])
    data = next(b["callback_data"] for row in rows for b in row if b["callback_data"].startswith("j:c:"))
    return str(data.split(":")[2])


async def _shown(telegram: FakeTelegram, message_id: int, needle: str) -> StoredMessage:
    """The group's message ``message_id`` once its text holds ``needle``."""
    await telegram.wait_until(lambda: needle in (telegram.message(GROUP, message_id).text or ""), timeout=20)
    return telegram.message(GROUP, message_id)


def _buttons(msg: StoredMessage) -> list[dict[str, str]]:
    return [b for row in (msg.reply_markup or {}).get("inline_keyboard", []) for b in row]


async def _queued_then_stopped(
    url: str, telegram: FakeTelegram, registry: WorkflowRegistry, data_dir: Path
) -> StoredMessage:
    async with front_end(url, telegram, registry, data_dir):
        telegram.send_text(OWNER, GROUP, "/generate a lighthouse at dusk --seed 7", chat_type="supergroup")
        await telegram.wait_until(lambda: telegram.bot_messages(GROUP), timeout=20)
        (msg,) = telegram.bot_messages(GROUP)
        return await _shown(telegram, msg.message_id, "queue")


@pytest.mark.redis
async def test_a_lost_job_is_shown_interrupted_and_runs_again_for_its_owner(
    data_dir: Path, registry: WorkflowRegistry, redis_server: RedisServer
) -> None:
    async with FakeTelegram() as telegram:
        queued = await _queued_then_stopped(redis_server.url, telegram, registry, data_dir)
        job_id = _job_of(queued)
        redis = Redis.from_url(redis_server.url)
        try:
            assert await redis.delete(f"comfybot:job:{job_id}") == 1  # evicted while no front end ran
        finally:
            await redis.aclose()

        async with front_end(redis_server.url, telegram, registry, data_dir):
            msg = await _shown(telegram, queued.message_id, "interrupted")
            labels = [b["text"] for b in _buttons(msg)]
            assert labels == ["🔁 Run again"], "no Cancel for a job that cannot be cancelled"
            again = _buttons(msg)[0]["callback_data"]

            telegram.press_button(OTHER, GROUP, msg.message_id, again)  # someone else in the group
            await telegram.wait_until(
                lambda: any(
                    "Only the person" in str(a.get("text")) for a in telegram.answered_callbacks.values()
                ),
                timeout=20,
            )
            async with (
                running_fake_comfyui(checkpoints=CHECKPOINTS) as comfy,
                aiohttp.ClientSession() as session,
                RedisStore(redis_server.url) as store,
                ComfyClient(comfy.url, session, name="comfy0") as client,
                run_gateway(
                    store, registry, ImageStore(data_dir), [client], options=WorkerOptions(lease_s=2)
                ),
            ):
                presses = [telegram.press_button(OWNER, GROUP, msg.message_id, again) for _ in range(2)]
                ids = [p.data["callback_query"]["id"] for p in presses]  # a double tap: one job
                await telegram.wait_until(
                    lambda: (
                        sorted(str(telegram.answered_callbacks.get(i, {}).get("text")) for i in ids)
                        == ["Queued ✅", "⏳ Already started — one press is enough."]
                    ),
                    timeout=20,
                )
                await telegram.wait_until(
                    lambda: any(m.photo for m in telegram.bot_messages(GROUP)), timeout=30
                )
                prompts = [str(p["prompt"]) for p in comfy.received_prompts]
                assert len(prompts) == 1 and "a lighthouse at dusk" in prompts[0], "the owner's, once"


@pytest.mark.redis
async def test_an_outcome_whose_event_was_lost_is_shown_from_the_record(
    data_dir: Path, registry: WorkflowRegistry, redis_server: RedisServer
) -> None:
    async with FakeTelegram() as telegram:
        queued = await _queued_then_stopped(redis_server.url, telegram, registry, data_dir)
        job_id = _job_of(queued)
        async with RedisStore(redis_server.url) as store:
            record = await store.get(job_id)
            assert record is not None and await store.remove_queued(job_id)
            record.finished_at = time.time() - 3600  # failed an hour ago, while no front end ran
            await Finisher(store).failed(record, FailureCode.COMFY_REJECTED, "node missing")
        redis = Redis.from_url(redis_server.url)
        try:
            await redis.delete("comfybot:events:telegram")  # the event is gone (trimmed, a lost AOF tail)
        finally:
            await redis.aclose()

        async with front_end(redis_server.url, telegram, registry, data_dir):
            msg = await _shown(telegram, queued.message_id, "❌")
        assert not _buttons(msg), "the failure has no Cancel left"
        assert [m.message_id for m in telegram.bot_messages(GROUP)] == [queued.message_id]
