"""Buttons under job messages: ✖️ Cancel, 🔁 Reroll, 🎲 Variations, ⬆️ Upscale, ℹ️ Info."""

from __future__ import annotations

from typing import Any

from aiogram import Router
from aiogram.types import CallbackQuery, Message

from bot.jobs import upscale_workflow
from bot.render import format_duration, truncate
from bot.telegram.callbacks import JobAction, JobCb
from bot.telegram.context import BotContext
from bot.telegram.handlers.basic import answer_callback
from bot.telegram.jobs import Origin, submit_job
from comfybot.logs import get_logger
from gateway.models import Role, short_id

__all__ = ["make_router"]

log = get_logger("telegram")

VARIATIONS = 4
_INFO_PARAMS = ("steps", "cfg", "ar", "batch", "denoise", "sampler")


def _info_text(ctx: BotContext, locale: str, record: Any) -> str:
    req = record.request
    values: dict[str, Any] = dict(record.values or req.params)
    shown = " ".join(
        f"{k}={_number(values[k])}" for k in _INFO_PARAMS if k in values and values[k] not in (None, "")
    )
    text = ctx.t(
        locale,
        "info.text",
        rid=short_id(req.request_id),
        workflow=req.workflow,
        seed="–" if record.seed is None else record.seed,
        params=shown or "–",
        backend=record.backend or "–",
        wait=format_duration(record.wait_ms / 1000),
        run=format_duration(record.run_ms / 1000),
    )
    return truncate(text, 200)


def _number(value: Any) -> Any:
    """``7.0`` → ``7``, ``0.75`` stays: a toast has 200 characters and no room for noise."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


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
    record = await ctx.gateway.get_job(job_id)
    if record is None:
        await answer_callback(query, ctx.t(locale, "button.gone"), alert=True)
        return
    if action is JobAction.INFO:
        await answer_callback(query, _info_text(ctx, locale, record), alert=True)
        return
    msg = query.message
    if not isinstance(msg, Message) or msg.bot is None:
        await answer_callback(query, ctx.t(locale, "button.gone"), alert=True)
        return
    req = record.request
    origin = Origin(
        user_id=user_id,
        chat_id=msg.chat.id,
        locale=locale,
        request_id=request_id,
        received_at=received_at,
        reply_to_message_id=msg.message_id,
        thread_id=msg.message_thread_id if msg.is_topic_message else None,
        role=ctx.role_of(user_id),
    )
    if action is JobAction.UPSCALE:
        name = upscale_workflow(ctx)
        images = list(record.images or [])
        if name is None:
            await answer_callback(query, ctx.t(locale, "button.no_upscale"), alert=True)
            return
        if not 0 <= callback_data.idx < len(images):
            await answer_callback(query, ctx.t(locale, "button.gone"), alert=True)
            return
        wf = ctx.registry.get(name)
        await answer_callback(query, ctx.t(locale, "button.queued"))
        await submit_job(ctx, msg.bot, origin, name, {}, {next(iter(wf.images)): images[callback_data.idx]})
        return
    # Reroll / Variations: the same request with a new seed (Variations: several at once).
    if req.workflow not in ctx.registry:
        await answer_callback(query, ctx.t(locale, "button.gone"), alert=True)
        return
    wf = ctx.registry.get(req.workflow)
    params = dict(req.params)
    params.pop(wf.seed_param or "seed", None)
    if action is JobAction.VARIATIONS and "batch" in wf.params:
        top = getattr(wf.params["batch"], "max", VARIATIONS)
        params["batch"] = max(1, min(VARIATIONS, int(top if top is not None else VARIATIONS)))
    await answer_callback(query, ctx.t(locale, "button.queued"))
    await submit_job(ctx, msg.bot, origin, req.workflow, params, dict(req.inputs))


def make_router() -> Router:
    """A fresh router (a router attaches to one dispatcher; tests and restarts build several)."""
    router = Router(name=__name__)
    router.callback_query.register(job_button, JobCb.filter())
    return router
