"""The last line: an unexpected error in a handler is logged with its request id and answered politely."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import ErrorEvent, Message

from bot.telegram.context import BotContext
from bot.telegram.handlers.basic import answer_callback
from bot.telegram.replies import reply_text
from core.logs import get_logger

__all__ = ["make_router"]

log = get_logger("telegram")


async def on_error(event: ErrorEvent, ctx: BotContext, locale: str = "en", request_id: str = "") -> bool:
    log.error("handler_failed", error=type(event.exception).__name__, exc_info=event.exception)
    text = ctx.renderer.failure(locale, "internal", request_id=request_id or None)
    update = event.update
    if update.callback_query is not None:
        await answer_callback(update.callback_query, text, alert=True)
    elif isinstance(update.message, Message):
        try:
            await reply_text(ctx, update.message, text, kind="error")
        except Exception:  # the chat itself may be the problem; the error is logged above
            log.warning("error_reply_failed", exc_info=True)
    return True


def make_router() -> Router:
    """A fresh router (a router attaches to one dispatcher; tests and restarts build several)."""
    router = Router(name=__name__)
    router.errors.register(on_error)
    return router
