"""The Telegram front end restarts while a job runs (shared Redis): the user's job message is still found
and replaced by the result — not left behind at "Sampling 40%" beside the picture."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from bot.telegram.app import TelegramFrontend
from comfy.workflows import WorkflowRegistry
from core.config import TelegramSettings
from gateway.app import run_gateway
from gateway.redis_store import RedisStore
from gateway.storage import ImageStore
from tests.bot.conftest import bench
from tests.conftest import RedisServer

USER = CHAT = 7117


@pytest.mark.redis
async def test_front_end_restart_mid_job_edits_the_same_message(
    data_dir: Path, registry: WorkflowRegistry, redis_server: RedisServer
) -> None:
    async with bench(
        data_dir, registry, backend=RedisStore(redis_server.url), comfy_options={"step_delay_s": 0.15}
    ) as b:
        b.fake.send_text(USER, CHAT, "/generate a harbour in fog --steps 20")
        await b.until(lambda: b.comfy.running_prompt_id is not None)
        [job_message] = b.bot_msgs(CHAT)
        await b.frontend.stop()  # the process dies mid-job; the worker and ComfyUI go on

        settings = TelegramSettings(bot_token=b.fake.token, api_base=b.fake.url, previews=False)
        async with TelegramFrontend(settings, b.gateway, registry, bot=b.fake.make_bot(), polling_timeout=1):
            result = await b.result(CHAT)
        # A text message cannot become a photo: the result is sent and the job message removed, as without
        # a restart. Before, the restarted process did not know that message and left it stale.
        assert b.fake.message(CHAT, job_message.message_id).deleted, "the stale progress message is gone"
        assert b.bot_msgs(CHAT) == [result]


@pytest.mark.redis
async def test_result_the_front_end_could_not_send_before_it_died_is_sent_after_restart(
    data_dir: Path, registry: WorkflowRegistry, redis_server: RedisServer
) -> None:
    """The job finishes while the front end cannot send (Telegram answers 500), then the front end stops
    for good. A new front-end process (its own store connection, no worker) gets the outcome again —
    it was never acknowledged — and the user gets the picture, once."""
    async with bench(data_dir, registry, backend=RedisStore(redis_server.url)) as b:
        b.fake.fail_next("sendPhoto", 500, "Internal Server Error: injected", times=1000)
        b.fake.send_text(USER, CHAT, "/generate a harbour in fog")
        await b.until(lambda: b.fake.calls_of("sendPhoto", CHAT, ok=False))
        await b.frontend.stop()
        b.fake.clear_faults()
        assert not [m for m in b.bot_msgs(CHAT) if m.photo or m.document]

        async with (
            RedisStore(redis_server.url) as store,
            run_gateway(store, registry, ImageStore(data_dir), [], workers=False) as gateway,
        ):
            settings = TelegramSettings(bot_token=b.fake.token, api_base=b.fake.url, previews=False)
            async with TelegramFrontend(
                settings, gateway, registry, bot=b.fake.make_bot(), polling_timeout=1
            ):
                result = await b.result(CHAT)
                assert [m for m in b.bot_msgs(CHAT) if m.photo or m.document] == [result]


async def _owed(url: str) -> int:
    """Outcomes read from the Telegram channel and not yet acknowledged by a front end."""
    redis = Redis.from_url(url)
    try:
        summary = await redis.xpending("comfybot:events:telegram", "frontends")
        return int(summary["pending"])
    finally:
        await redis.aclose()


@pytest.mark.redis
@pytest.mark.parametrize("blocked", [False, True], ids=["refused", "blocked"])
async def test_result_telegram_refuses_for_good_is_told_and_not_retried(
    data_dir: Path, registry: WorkflowRegistry, redis_server: RedisServer, blocked: bool
) -> None:
    """A 400 on every upload: the job message says the picture could not be sent (localized). A bot the
    user blocked (403) can show nothing. Either way the outcome is let go — a restart does not retry
    what would fail alike — and ``result_not_delivered`` is logged."""
    async with bench(data_dir, registry, backend=RedisStore(redis_server.url)) as b:
        uploads = ("sendPhoto", "sendDocument", "editMessageMedia", "sendMediaGroup")
        if not blocked:
            for method in uploads:
                b.fake.fail_next(method, 400, "Bad Request: injected", times=1000)
        b.fake.send_text(USER, CHAT, "/generate a harbour in fog")
        if blocked:
            await b.until(lambda: b.bot_msgs(CHAT))
            b.fake.block_bot(CHAT)
            await b.until(lambda: any(b.fake.calls_of(m, CHAT, ok=False) for m in uploads))
        else:
            want = b.frontend.ctx.t("en", "error.result_not_delivered")
            await b.until(lambda: any(m.text == want for m in b.bot_msgs(CHAT)))
        for _ in range(200):  # the tracker lets the outcome go right after the failed upload
            if await _owed(redis_server.url) == 0:
                break
            await asyncio.sleep(0.05)
        assert await _owed(redis_server.url) == 0
        assert not [m for m in b.bot_msgs(CHAT) if m.photo or m.document]


async def test_a_result_telegram_fails_for_a_moment_is_sent_again_in_process(
    data_dir: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More 500s on the upload than the sender absorbs, then Telegram is back: the same process sends
    the picture, once, without waiting for a restart; a failed try is logged with when the next comes."""
    monkeypatch.setattr("bot.consumer.SEND_RETRY_FIRST_S", 0.05)
    async with bench(data_dir, registry) as b:
        b.fake.fail_next("sendPhoto", 500, "Internal Server Error: injected", times=6)
        with capture_logs() as logs:
            b.fake.send_text(USER, CHAT, "/generate a harbour in fog")
            result = await b.result(CHAT)
            await b.until(lambda: b.bot_msgs(CHAT) == [result])  # and the job's text message removed
        assert len(b.fake.calls_of("sendPhoto", CHAT, ok=True)) == 1
        tries = [e for e in logs if e["event"] == "result_not_delivered"]
        assert tries and all(e["reason"] == "transient" and e["retry_in_s"] for e in tries)
        assert [e["attempt"] for e in tries] == list(range(1, len(tries) + 1))
