"""Sending answers through the throttled sender, with the ``response_sent`` log line."""

from __future__ import annotations

import time
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import InlineKeyboardMarkup, Message, ReplyParameters

from bot.telegram.context import BotContext
from bot.telegram.sender import Priority
from core.logs import get_logger

__all__ = ["log_response", "reply_text", "send_text"]

log = get_logger("telegram")


def log_response(kind: str, *, size: int, received_at: float | None, **fields: Any) -> None:
    """``response_sent`` with ``kind``, ``bytes`` and ``duration_ms`` since the user's message arrived."""
    duration_ms = None if received_at is None else max(0, int((time.time() - received_at) * 1000))
    log.info("response_sent", kind=kind, bytes=size, duration_ms=duration_ms, **fields)


async def send_text(
    ctx: BotContext,
    bot: Bot,
    chat_id: int,
    text: str,
    *,
    reply_to: int | None = None,
    markup: InlineKeyboardMarkup | None = None,
    kind: str = "text",
    received_at: float | None = None,
    priority: Priority = Priority.REPLY,
    thread_id: int | None = None,
) -> Message | None:
    """Send ``text`` (plain, no markup parsing) to ``chat_id``; ``None`` when Telegram refused it."""
    params = (
        ReplyParameters(message_id=reply_to, allow_sending_without_reply=True)
        if reply_to is not None
        else None
    )
    try:
        msg = await ctx.sender.send(
            chat_id,
            lambda: bot.send_message(
                chat_id,
                text[:4096],
                reply_parameters=params,
                reply_markup=markup,
                message_thread_id=thread_id,
                parse_mode=None,
            ),
            kind=priority,
        )
    except TelegramAPIError as exc:
        log.warning("reply_failed", chat_id=chat_id, error=type(exc).__name__, description=exc.message)
        return None
    log_response(kind, size=len(text.encode()), received_at=received_at)
    return msg


async def reply_text(
    ctx: BotContext,
    message: Message,
    text: str,
    *,
    markup: InlineKeyboardMarkup | None = None,
    kind: str = "text",
    received_at: float | None = None,
) -> Message | None:
    """Answer a user's message; in groups as a reply so the answer is tied to its command."""
    reply_to = message.message_id if message.chat.type != "private" else None
    bot = message.bot
    assert bot is not None  # aiogram sets it on every incoming message
    return await send_text(
        ctx,
        bot,
        message.chat.id,
        text,
        reply_to=reply_to,
        markup=markup,
        kind=kind,
        received_at=received_at,
        thread_id=message.message_thread_id if message.is_topic_message else None,
    )
