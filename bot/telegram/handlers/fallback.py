"""What is left in a private chat: plain text is a prompt; an unknown command gets the help text."""

from __future__ import annotations

from typing import Any

from aiogram import F, Router
from aiogram.types import CallbackQuery, Message

from bot.telegram.context import BotContext
from bot.telegram.handlers.basic import answer_callback
from bot.telegram.handlers.generate import start_generation
from bot.telegram.replies import reply_text
from core.logs import get_logger

__all__ = ["make_router"]

log = get_logger("telegram")


async def plain_text(
    message: Message,
    ctx: BotContext,
    locale: str,
    user_settings: dict[str, Any],
    request_id: str,
    received_at: float,
) -> None:
    """In a private chat, a message without a command is what the user wants drawn."""
    log.info("command_received", command="text", chat_id=message.chat.id, chars=len(message.text or ""))
    await start_generation(
        ctx,
        message,
        message.text or "",
        locale=locale,
        settings=user_settings,
        request_id=request_id,
        received_at=received_at,
        image_message=message.reply_to_message,
    )


async def unknown_command(message: Message, ctx: BotContext, locale: str, received_at: float) -> None:
    log.info("command_received", command="unknown", chat_id=message.chat.id)
    await reply_text(ctx, message, ctx.t(locale, "help.text"), kind="help", received_at=received_at)


async def stale_button(query: CallbackQuery, ctx: BotContext, locale: str, request_id: str) -> None:
    """A press no feature router matched (forged data, or a button from an older version): answer it anyway,
    so the client's spinner stops."""
    log.info("callback_unmatched", request_id=request_id, chars=len(query.data or ""))
    await answer_callback(query, ctx.t(locale, "button.stale"))


def make_router() -> Router:
    """Included last, so every feature router had its chance first."""
    router = Router(name=__name__)
    router.message.filter(F.chat.type == "private")
    router.message.register(unknown_command, F.text.startswith("/"))
    router.message.register(plain_text, F.text)
    router.callback_query.register(stale_button)
    return router
