"""/start, /help, /workflows and /language."""

from __future__ import annotations

from typing import Any

from aiogram import Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandStart
from aiogram.types import CallbackQuery, Message

from bot.jobs import workflows_text
from bot.telegram.callbacks import LangCb
from bot.telegram.context import MESSAGE_LIMIT, BotContext
from bot.telegram.filters import Addressed
from bot.telegram.jobs import user_key
from bot.telegram.keyboards import language_keyboard
from bot.telegram.replies import reply_text
from core.logs import get_logger

__all__ = ["answer_callback", "make_router"]

log = get_logger("telegram")


async def answer_callback(query: CallbackQuery, text: str | None = None, *, alert: bool = False) -> None:
    """Answer a button press (best effort: a late or rate-limited answer must not fail the handler)."""
    try:
        await query.answer(text[:200] if text else None, show_alert=alert)
    except TelegramAPIError as exc:
        log.info("callback_answer_failed", error=type(exc).__name__, description=exc.message)


async def start(message: Message, ctx: BotContext, locale: str, received_at: float) -> None:
    log.info("command_received", command="start", chat_id=message.chat.id)
    await reply_text(ctx, message, ctx.t(locale, "start.text"), kind="start", received_at=received_at)


async def help_(message: Message, ctx: BotContext, locale: str, received_at: float) -> None:
    log.info("command_received", command="help", chat_id=message.chat.id)
    await reply_text(ctx, message, ctx.t(locale, "help.text"), kind="help", received_at=received_at)


async def workflows(
    message: Message, ctx: BotContext, locale: str, user_settings: dict[str, Any], received_at: float
) -> None:
    log.info("command_received", command="workflows", chat_id=message.chat.id)
    current = user_settings.get("workflow") or ctx.default_workflow
    text = workflows_text(ctx, locale, current, MESSAGE_LIMIT)
    await reply_text(ctx, message, text, kind="workflows", received_at=received_at)


async def language(message: Message, ctx: BotContext, locale: str, received_at: float) -> None:
    log.info("command_received", command="language", chat_id=message.chat.id)
    await reply_text(
        ctx,
        message,
        ctx.t(locale, "language.choose"),
        markup=language_keyboard(ctx.i18n, locale, locale),
        kind="language",
        received_at=received_at,
    )


async def save_setting(ctx: BotContext, user_id: int, key: str, value: Any) -> dict[str, Any]:
    """Read-modify-write one user setting in the gateway's store; returns the new settings."""
    current = dict(await ctx.gateway.settings.get(user_key(user_id)) or {})
    current[key] = value
    await ctx.gateway.settings.set(user_key(user_id), current)
    return current


async def language_chosen(query: CallbackQuery, callback_data: LangCb, ctx: BotContext) -> None:
    code = callback_data.code
    if code not in ctx.i18n.catalogues:
        await answer_callback(query)
        return
    await save_setting(ctx, query.from_user.id, "language", code)
    log.info("setting_changed", key="language", value=code)
    await answer_callback(query, ctx.t(code, "settings.saved"))
    msg = query.message
    if isinstance(msg, Message) and msg.bot is not None:
        bot = msg.bot
        text = ctx.t(code, "language.set")
        try:
            await ctx.sender.edit(
                msg.chat.id,
                msg.message_id,
                lambda: bot.edit_message_text(
                    text=text,
                    chat_id=msg.chat.id,
                    message_id=msg.message_id,
                    reply_markup=language_keyboard(ctx.i18n, code, code),
                    parse_mode=None,
                ),
                final=True,
            )
        except TelegramAPIError as exc:
            log.info("edit_failed", error=type(exc).__name__)
        except Exception as exc:  # MessageGone: the menu was deleted; the setting is saved anyway
            log.info("edit_failed", error=type(exc).__name__)


def make_router() -> Router:
    """A fresh router (a router attaches to one dispatcher; tests and restarts build several)."""
    router = Router(name=__name__)
    router.message.filter(Addressed())
    router.message.register(start, CommandStart())
    router.message.register(help_, Command("help"))
    router.message.register(workflows, Command("workflows"))
    router.message.register(language, Command("language"))
    router.callback_query.register(language_chosen, LangCb.filter())
    return router
