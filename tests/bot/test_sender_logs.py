"""The sender's own log lines (429s, refusals) carry the request_id of whoever queued the operation."""

from __future__ import annotations

import pytest
import structlog
from aiogram.exceptions import TelegramBadRequest
from structlog.contextvars import bound_contextvars, merge_contextvars
from structlog.testing import capture_logs

from bot.telegram.sender import TelegramSender
from tests.bot.test_sender import VirtualClock, edit_text, send_text
from tests.fakes.telegram import FakeTelegram, RateLimits


async def test_retry_after_and_send_failure_lines_carry_the_request_id() -> None:
    clock = VirtualClock(auto=True)
    async with FakeTelegram(clock=clock, limits=RateLimits(slack=0.0)) as fake:
        bot = fake.make_bot()
        async with TelegramSender(bot, clock=clock, sleep=clock.sleep) as sender:
            fake.inject_429("sendMessage", times=1, retry_after=3)
            with capture_logs(processors=[merge_contextvars]) as logs:
                with bound_contextvars(request_id="req-send"):
                    msg = await sender.send(10, send_text(bot, 10, "queued"))
                fake.fail_next("editMessageText", 400, "Bad Request: chat not found")
                edit = edit_text(bot, 10, msg.message_id, "x")
                with bound_contextvars(request_id="req-edit"), pytest.raises(TelegramBadRequest):
                    await sender.edit(10, msg.message_id, edit, final=True)
        await bot.session.close()
    assert structlog.contextvars.get_contextvars() == {}
    retry = [e for e in logs if e["event"] == "telegram_retry_after"]
    assert retry and all(e.get("request_id") == "req-send" for e in retry), retry
    failed = [e for e in logs if e["event"] == "telegram_send_failed"]
    assert failed and all(e.get("request_id") == "req-edit" for e in failed), failed
