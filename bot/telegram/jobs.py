"""Turn a parsed request into a ``JobRequest``, submit it, and show the answer as the job's message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiogram import Bot

from bot.jobs import first_view, refusal_text
from bot.render import JobView
from bot.telegram.context import BotContext, JobMessage
from bot.telegram.keyboards import progress_keyboard
from bot.telegram.replies import send_text
from bot.telegram.sender import Priority
from core.logs import get_logger
from gateway.models import FailureCode, ImageRef, JobRequest, Queued, Role
from gateway.service import Refused

__all__ = ["Origin", "submit_job", "user_key"]

log = get_logger("telegram")


@dataclass(frozen=True)
class Origin:
    """Who asked, where, and which message to answer."""

    user_id: int
    chat_id: int
    locale: str
    request_id: str
    received_at: float
    reply_to_message_id: int | None = None
    thread_id: int | None = None
    role: Role = Role.USER


_BUSY = frozenset(
    {
        FailureCode.RATE_LIMITED,
        FailureCode.TOO_MANY_PENDING,
        FailureCode.QUEUE_FULL,
        FailureCode.QUOTA_EXCEEDED,
    }
)


def user_key(user_id: int | str) -> str:
    """The key of a Telegram user's settings in the gateway's settings store."""
    return f"telegram:{user_id}"


def open_view(req: JobRequest) -> dict[str, Any]:
    """What a job's view keeps beyond the message: the platform (an open view is reconciled at
    startup) and what "Run again" needs should the job's record be lost."""
    again = req.model_dump(mode="json", include={"workflow", "params", "inputs", "user_id", "locale"})
    return {"platform": "telegram", "again": again}


def _build_request(
    ctx: BotContext,
    origin: Origin,
    workflow: str,
    params: dict[str, Any],
    inputs: dict[str, ImageRef] | None,
) -> JobRequest:
    """The gateway's request for this command: who, where, what, and which message to answer."""
    return JobRequest(
        request_id=origin.request_id,
        platform="telegram",
        user_id=str(origin.user_id),
        chat_id=str(origin.chat_id),
        locale=origin.locale,
        workflow=workflow,
        params=params,
        inputs=inputs or {},
        reply_to={
            "chat_id": origin.chat_id,
            "message_id": origin.reply_to_message_id,
            "thread_id": origin.thread_id,
            "origin": ctx.instance,
        },
        role=origin.role,
        received_at=origin.received_at,
    )


async def _show_refusal(ctx: BotContext, bot: Bot, origin: Origin, result: Refused, req: JobRequest) -> None:
    """Log why the gateway refused and tell the user (a busy refusal at most once per window)."""
    code = result.code
    if code in _BUSY:
        log.info("rate_limited", code=code.value, retry_after_s=result.retry_after_s)
        if not ctx.should_notify_rate_limit(f"{origin.user_id}:{code.value}"):
            return  # one "slow down" per window, not one per command: replies cost rate too
    elif result.field:
        log.info("validation_error", field=result.field, reason=result.reason)
    elif code is FailureCode.ACCESS_DENIED:
        log.info("access_denied")
    else:
        log.info("job_refused", code=code.value)
    await send_text(
        ctx,
        bot,
        origin.chat_id,
        refusal_text(ctx, origin.locale, result, req),
        reply_to=origin.reply_to_message_id,
        kind="refusal",
        received_at=origin.received_at,
        thread_id=origin.thread_id,
    )


async def _show_queued(
    ctx: BotContext,
    bot: Bot,
    origin: Origin,
    req: JobRequest,
    view: JobView,
    queued: Queued,
) -> None:
    """Send the job message (queue position + Cancel), register it, and save its view."""
    job_id = queued.job_id
    if ctx.skip_busy_group_notices and ctx.sender.tight(origin.chat_id):
        # A busy group: its budget goes to results. No job message; the result answers the command.
        log.info("queued_notice_skipped", job_id=job_id, reason="group_budget")
        ctx.messages.register(job_id, None)
        return
    text = ctx.renderer.queued(origin.locale, view, queued)
    msg = await send_text(
        ctx,
        bot,
        origin.chat_id,
        text,
        reply_to=origin.reply_to_message_id,
        markup=progress_keyboard(ctx.i18n, origin.locale, job_id),
        kind="queued",
        received_at=origin.received_at,
        priority=Priority.REPLY,
        thread_id=origin.thread_id,
    )
    ctx.messages.register(
        job_id, None if msg is None else JobMessage(origin.chat_id, msg.message_id, text=text)
    )
    if msg is not None:  # so a restarted front end edits this message instead of leaving it stale
        try:
            shown = {"chat_id": origin.chat_id, "message_id": msg.message_id} | open_view(req)
            await ctx.gateway.set_view(job_id, shown)
        except Exception as exc:  # the job runs anyway; only a restart mid-job would lose the message
            log.warning("job_view_not_saved", job_id=job_id, error=repr(exc))


async def submit_job(
    ctx: BotContext,
    bot: Bot,
    origin: Origin,
    workflow: str,
    params: dict[str, Any],
    inputs: dict[str, ImageRef] | None = None,
) -> str | None:
    """Submit; on acceptance send the job message (queue position + Cancel) and register it.

    Returns the job id, or ``None`` when the gateway refused (the user got the reason).
    """
    req = _build_request(ctx, origin, workflow, params, inputs)
    result = await ctx.gateway.submit(req)
    if isinstance(result, Refused):
        await _show_refusal(ctx, bot, origin, result, req)
        return None
    job_id: str = result.job_id
    view, queued = first_view(ctx.registry, workflow, params, origin.request_id, result)
    await _show_queued(ctx, bot, origin, req, view, queued)
    return job_id
