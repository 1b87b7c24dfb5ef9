"""Buttons under job messages: ✖️ Cancel, 🔁 Reroll, 🎲 Variations, ⬆️ Upscale, ℹ️ Info, and 🔁 Run
again under a job that was lost.

A button that starts a job counts once per message in ``PRESS_WINDOW_S`` (``Gateway.first_press``): a
double tap starts one job, and the second tap hears that it already started."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import CallbackQuery, Message

from bot.jobs import info_text
from bot.requests import FOLLOW_UPS, Problem, follow_up
from bot.telegram.callbacks import JobAction, JobCb
from bot.telegram.context import BotContext
from bot.telegram.handlers.basic import answer_callback
from bot.telegram.jobs import Origin, submit_job
from core.logs import get_logger
from gateway.models import ImageRef, Role

__all__ = ["make_router"]

log = get_logger("telegram")


async def job_button(
    query: CallbackQuery,
    callback_data: JobCb,
    ctx: BotContext,
    locale: str,
    request_id: str,
    received_at: float,
) -> None:
    action, job_id = callback_data.action, callback_data.job
    log.info("button_pressed", action=action.name.lower(), job_id=job_id)
    user_id = query.from_user.id
    if action is JobAction.CANCEL:
        ok = await ctx.gateway.cancel(job_id, by=str(user_id), admin=ctx.role_of(user_id) is Role.ADMIN)
        await answer_callback(query, ctx.t(locale, "cancel.done" if ok else "cancel.failed"))
        return
    if action is JobAction.AGAIN:
        await _run_again(query, ctx, job_id, locale, request_id, received_at)
        return
    record = await ctx.gateway.get_job(job_id)
    if record is None:
        await answer_callback(query, ctx.t(locale, "button.gone"), alert=True)
        return
    admin = ctx.role_of(user_id) is Role.ADMIN
    if not ctx.gateway.access.may_use_result(user_id, record.request.user_id, record.request.chat_id):
        log.info("button_refused", request_id=request_id, action=action.name.lower(), job_id=job_id)
        await answer_callback(query, ctx.t(locale, "button.not_yours"), alert=True)
        return
    if action is JobAction.INFO:
        await answer_callback(query, info_text(ctx, locale, record, 200, admin=admin), alert=True)
        return
    msg = query.message
    if not isinstance(msg, Message) or msg.bot is None:
        await answer_callback(query, ctx.t(locale, "button.gone"), alert=True)
        return
    draft = follow_up(ctx.registry, record, FOLLOW_UPS[action], callback_data.idx)
    if isinstance(draft, Problem):
        text = "button.no_upscale" if draft.reason == "no_upscale" else "button.gone"
        await answer_callback(query, ctx.t(locale, text), alert=True)
        return
    origin = _origin(ctx, msg, user_id, locale, request_id, received_at)
    if await _repeated(query, msg, ctx, locale, request_id):
        return
    await answer_callback(query, ctx.t(locale, "button.queued"))
    await submit_job(ctx, msg.bot, origin, draft.workflow, draft.params, draft.inputs)


async def _repeated(
    query: CallbackQuery, msg: Message, ctx: BotContext, locale: str, request_id: str
) -> bool:
    """A second press of this button on this message (``Gateway.first_press``): answered "already
    started", and nothing else is done."""
    if await ctx.gateway.first_press("telegram", f"{msg.chat.id}:{msg.message_id}", query.data or ""):
        return False
    log.info("button_repeated", request_id=request_id, data=query.data)
    await answer_callback(query, ctx.t(locale, "button.already_started"))
    return True


def _origin(
    ctx: BotContext, msg: Message, user_id: int, locale: str, request_id: str, received_at: float
) -> Origin:
    """A new job from a button under ``msg``: it answers that message, in its thread."""
    return Origin(
        user_id=user_id,
        chat_id=msg.chat.id,
        locale=locale,
        request_id=request_id,
        received_at=received_at,
        reply_to_message_id=msg.message_id,
        thread_id=msg.message_thread_id if msg.is_topic_message else None,
        role=ctx.role_of(user_id),
    )


async def _run_again(
    query: CallbackQuery, ctx: BotContext, job_id: str, locale: str, request_id: str, received_at: float
) -> None:
    """ "Run again" under an interrupted job: its request, as its view kept it, submitted anew."""
    view = await ctx.gateway.get_view(job_id)
    again = (view or {}).get("again") or {}
    msg = query.message
    if not again.get("workflow") or not isinstance(msg, Message) or msg.bot is None:
        await answer_callback(query, ctx.t(locale, "button.gone"), alert=True)
        return
    user_id = query.from_user.id
    if str(again.get("user_id")) != str(user_id) and ctx.role_of(user_id) is not Role.ADMIN:
        log.info("button_refused", request_id=request_id, action="again", job_id=job_id)
        await answer_callback(query, ctx.t(locale, "button.not_yours"), alert=True)
        return
    try:
        inputs = {k: ImageRef.model_validate(v) for k, v in dict(again.get("inputs") or {}).items()}
    except ValueError:  # a view written by another version: nothing to run
        await answer_callback(query, ctx.t(locale, "button.gone"), alert=True)
        return
    if await _repeated(query, msg, ctx, locale, request_id):
        return
    await answer_callback(query, ctx.t(locale, "button.queued"))
    origin = _origin(ctx, msg, user_id, locale, request_id, received_at)
    await submit_job(ctx, msg.bot, origin, str(again["workflow"]), dict(again.get("params") or {}), inputs)


def make_router() -> Router:
    """A fresh router (a router attaches to one dispatcher; tests and restarts build several)."""
    router = Router(name=__name__)
    router.callback_query.register(job_button, JobCb.filter())
    return router
