"""/settings: per-user default workflow, aspect ratio and language, kept by the gateway's settings store."""

from __future__ import annotations

from typing import Any

from aiogram import Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot.telegram.callbacks import SetCb, SettingKey
from bot.telegram.context import BotContext
from bot.telegram.filters import Addressed
from bot.telegram.handlers.basic import answer_callback, save_setting
from bot.telegram.keyboards import (
    ASPECT_CHOICES,
    aspect_keyboard,
    language_keyboard,
    settings_keyboard,
    workflow_keyboard,
)
from bot.telegram.replies import reply_text
from bot.telegram.sender import MessageGone
from core.logs import get_logger

__all__ = ["make_router", "settings_text"]

log = get_logger("telegram")


def settings_text(ctx: BotContext, locale: str, settings: dict[str, Any]) -> str:
    workflow = settings.get("workflow") or ctx.default_workflow
    ar = settings.get("ar") or ctx.t(locale, "settings.auto")
    return ctx.t(locale, "settings.text", workflow=workflow, ar=ar, language=ctx.t(locale, f"lang.{locale}"))


async def show_settings(
    message: Message, ctx: BotContext, locale: str, user_settings: dict[str, Any], received_at: float
) -> None:
    log.info("command_received", command="settings", chat_id=message.chat.id)
    await reply_text(
        ctx,
        message,
        settings_text(ctx, locale, user_settings),
        markup=settings_keyboard(ctx.i18n, locale),
        kind="settings",
        received_at=received_at,
    )


async def _edit_menu(ctx: BotContext, query: CallbackQuery, text: str, markup: InlineKeyboardMarkup) -> None:
    msg = query.message
    if not isinstance(msg, Message) or msg.bot is None:
        return
    bot = msg.bot
    try:
        await ctx.sender.edit(
            msg.chat.id,
            msg.message_id,
            lambda: bot.edit_message_text(
                text=text,
                chat_id=msg.chat.id,
                message_id=msg.message_id,
                reply_markup=markup,
                parse_mode=None,
            ),
            final=True,
        )
    except (TelegramAPIError, MessageGone) as exc:
        log.info("edit_failed", error=type(exc).__name__)


async def settings_button(
    query: CallbackQuery, callback_data: SetCb, ctx: BotContext, locale: str, user_settings: dict[str, Any]
) -> None:
    key, value = callback_data.key, callback_data.value
    settings = dict(user_settings)
    if key is SettingKey.WORKFLOW and value:
        if value not in ctx.registry:
            await answer_callback(query)
            return
        settings = await save_setting(ctx, query.from_user.id, "workflow", value)
    elif key is SettingKey.ASPECT and value:
        if value not in ASPECT_CHOICES:
            await answer_callback(query)
            return
        settings = await save_setting(ctx, query.from_user.id, "ar", value)
    elif key is SettingKey.LANGUAGE and value:
        if value not in ctx.i18n.catalogues:
            await answer_callback(query)
            return
        settings = await save_setting(ctx, query.from_user.id, "language", value)
        locale = value
    elif key is SettingKey.WORKFLOW:
        await answer_callback(query)
        current = settings.get("workflow") or ctx.default_workflow
        await _edit_menu(
            ctx,
            query,
            ctx.t(locale, "settings.choose_workflow"),
            workflow_keyboard(ctx.i18n, locale, ctx.registry.names(), current),
        )
        return
    elif key is SettingKey.ASPECT:
        await answer_callback(query)
        await _edit_menu(
            ctx,
            query,
            ctx.t(locale, "settings.choose_ar"),
            aspect_keyboard(ctx.i18n, locale, settings.get("ar", "")),
        )
        return
    elif key is SettingKey.LANGUAGE:
        await answer_callback(query)
        await _edit_menu(
            ctx,
            query,
            ctx.t(locale, "language.choose"),
            language_keyboard(ctx.i18n, locale, locale, in_settings=True),
        )
        return
    if value:
        log.info("setting_changed", key=key.value, value=value)
        await answer_callback(query, ctx.t(locale, "settings.saved"))
    else:
        await answer_callback(query)
    await _edit_menu(ctx, query, settings_text(ctx, locale, settings), settings_keyboard(ctx.i18n, locale))


def make_router() -> Router:
    """A fresh router (a router attaches to one dispatcher; tests and restarts build several)."""
    router = Router(name=__name__)
    router.message.filter(Addressed())
    router.message.register(show_settings, Command("settings"))
    router.callback_query.register(settings_button, SetCb.filter())
    return router
