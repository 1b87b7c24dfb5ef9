"""Per-update context: a fresh request id in the log context, the user's locale, access checks.

Registered as an *outer* update middleware, so every line logged while handling an update — by us, by
aiogram, by the gateway we call — carries ``request_id``, ``platform`` and ``user_id``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiogram import BaseMiddleware
from aiogram.exceptions import TelegramAPIError
from aiogram.types import TelegramObject, Update, User

from bot.telegram.context import BotContext
from bot.telegram.jobs import user_key
from bot.telegram.replies import reply_text
from core.logs import get_logger
from gateway.models import new_request_id

__all__ = ["RequestContextMiddleware"]

log = get_logger("telegram")

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class RequestContextMiddleware(BaseMiddleware):
    """Binds ``request_id``/``platform``/``user_id`` and puts ``request_id``, ``received_at``, ``locale``
    and ``user_settings`` into the handler data."""

    def __init__(self, ctx: BotContext) -> None:
        self.ctx = ctx

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        request_id = new_request_id()
        user: User | None = data.get("event_from_user")
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            request_id=request_id,
            platform="telegram",
            user_id=str(user.id) if user is not None else None,
        )
        data["request_id"] = request_id
        data["received_at"] = time.time()
        settings: dict[str, Any] = {}
        if user is not None and not user.is_bot:
            try:
                settings = await self.ctx.gateway.settings.get(user_key(user.id)) or {}
            except Exception:  # settings are a convenience: never fail an update for them
                log.warning("settings_unavailable", exc_info=True)
        data["user_settings"] = settings
        language = settings.get("language")
        if isinstance(language, str) and language in self.ctx.i18n.catalogues:
            data["locale"] = language
        else:
            data["locale"] = self.ctx.i18n.resolve(user.language_code if user is not None else None)
        if isinstance(event, Update) and event.update_id is not None:
            structlog.contextvars.bind_contextvars(update_id=event.update_id)
        try:
            if user is not None and not self.ctx.allowed(user.id, _chat_id(event)):
                await self._deny(event, data["locale"])
                return None
            return await handler(event, data)
        finally:
            structlog.contextvars.clear_contextvars()

    async def _deny(self, event: TelegramObject, locale: str) -> None:
        """A short localized answer in private chats and to button presses; silence in groups."""
        if not isinstance(event, Update):
            return
        text = self.ctx.t(locale, "error.access_denied")
        if event.callback_query is not None:
            with contextlib.suppress(TelegramAPIError):
                await event.callback_query.answer(text[:200], show_alert=True)
            return
        message = event.message
        if (
            message is not None
            and message.chat.type == "private"
            and message.from_user is not None
            and self.ctx.should_notify_rate_limit(f"denied:{message.from_user.id}")
        ):
            await reply_text(self.ctx, message, text, kind="denied")


def _chat_id(event: TelegramObject) -> int | None:
    if isinstance(event, Update):
        if event.message is not None:
            return event.message.chat.id
        query = event.callback_query
        if query is not None and query.message is not None:
            return query.message.chat.id
    return None
