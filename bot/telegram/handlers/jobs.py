"""/cancel, /queue, /history and the admin's /stats."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.jobs import queue_text, stats_text, user_history
from bot.telegram.callbacks import JobAction, JobCb
from bot.telegram.context import MESSAGE_LIMIT, BotContext
from bot.telegram.filters import Addressed
from bot.telegram.replies import reply_text
from core.logs import get_logger
from gateway.models import JobState, Role

__all__ = ["make_router"]

log = get_logger("telegram")


async def _latest_live_job(ctx: BotContext, user_id: int) -> str | None:
    for record in await ctx.gateway.recent_jobs(str(user_id), 20):
        if not JobState(record.state).terminal:
            return str(record.job_id)
    return None


async def cancel(message: Message, ctx: BotContext, locale: str, received_at: float) -> None:
    assert message.from_user is not None
    log.info("command_received", command="cancel", chat_id=message.chat.id)
    job_id: str | None = None
    replied = message.reply_to_message
    if replied is not None:
        job_id = ctx.messages.job_of(message.chat.id, replied.message_id)
    if job_id is None:
        job_id = await _latest_live_job(ctx, message.from_user.id)
    if job_id is None:
        await reply_text(
            ctx, message, ctx.t(locale, "cancel.nothing"), kind="cancel", received_at=received_at
        )
        return
    admin = ctx.role_of(message.from_user.id) is Role.ADMIN
    ok = await ctx.gateway.cancel(job_id, by=str(message.from_user.id), admin=admin)
    log.info("cancel_requested", job_id=job_id, ok=ok)
    # On success the job's own message turns into "Cancelled"; a second message would be noise in groups.
    if not ok:
        await reply_text(ctx, message, ctx.t(locale, "cancel.failed"), kind="cancel", received_at=received_at)
    elif message.chat.type == "private" and ctx.messages.get(job_id) is None:
        await reply_text(ctx, message, ctx.t(locale, "cancel.done"), kind="cancel", received_at=received_at)


async def queue(message: Message, ctx: BotContext, locale: str, received_at: float) -> None:
    assert message.from_user is not None
    log.info("command_received", command="queue", chat_id=message.chat.id)
    info = await ctx.gateway.queue_info(str(message.from_user.id))
    text = queue_text(ctx, locale, info, MESSAGE_LIMIT)
    await reply_text(ctx, message, text, kind="queue", received_at=received_at)


async def history(message: Message, ctx: BotContext, locale: str, received_at: float) -> None:
    assert message.from_user is not None
    log.info("command_received", command="history", chat_id=message.chat.id)
    got = await user_history(ctx, locale, str(message.from_user.id), MESSAGE_LIMIT)
    buttons = [
        InlineKeyboardButton(text=f"🔁 {n}", callback_data=JobCb(action=JobAction.REROLL, job=job_id).pack())
        for n, job_id in got.rerolls
    ]
    markup = (
        InlineKeyboardMarkup(inline_keyboard=[buttons[i : i + 5] for i in range(0, len(buttons), 5)])
        if buttons
        else None
    )
    await reply_text(ctx, message, got.text, markup=markup, kind="history", received_at=received_at)


async def stats(message: Message, ctx: BotContext, locale: str, received_at: float) -> None:
    assert message.from_user is not None
    log.info("command_received", command="stats", chat_id=message.chat.id)
    if ctx.role_of(message.from_user.id) is not Role.ADMIN:
        log.info("access_denied", reason="not_admin", command="stats")
        await reply_text(
            ctx, message, ctx.t(locale, "error.admin_only"), kind="denied", received_at=received_at
        )
        return
    text = await stats_text(ctx, locale, MESSAGE_LIMIT)
    await reply_text(ctx, message, text, kind="stats", received_at=received_at)


def make_router() -> Router:
    """A fresh router (a router attaches to one dispatcher; tests and restarts build several)."""
    router = Router(name=__name__)
    router.message.filter(Addressed())
    router.message.register(cancel, Command("cancel"))
    router.message.register(queue, Command("queue"))
    router.message.register(history, Command("history"))
    router.message.register(stats, Command("stats"))
    return router
