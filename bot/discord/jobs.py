"""Submitting a job from an interaction and making its original response the job's message."""

from __future__ import annotations

import time
from typing import Any

import discord

from bot.discord.context import DiscordContext, Request
from bot.discord.messages import JobMessage, Render
from bot.discord.views import progress_view
from bot.render import JobView
from comfy.workflows import Workflow
from comfybot.logs import get_logger
from gateway.models import FailureCode, ImageRef, JobRequest, Queued
from gateway.service import Refused

__all__ = ["prompt_of", "refusal_text", "reply_error", "submit_job", "upscale_workflow"]

log = get_logger("discord")


def prompt_of(workflow: Workflow | None, params: dict[str, Any]) -> str:
    """The prompt text of a request (empty when the workflow has none)."""
    name = workflow.prompt_param if workflow is not None else "prompt"
    value = params.get(name or "prompt", "")
    return value if isinstance(value, str) else ""


def upscale_workflow(ctx: DiscordContext) -> str | None:
    """The workflow the ⬆️ button runs: one named ``upscale``, else the first of kind ``upscale``."""
    if "upscale" in ctx.registry:
        return "upscale"
    return next((wf.name for wf in ctx.registry if wf.kind == "upscale"), None)


def _bounds(ctx: DiscordContext, workflow: str, field: str, reason: str, value: Any) -> dict[str, Any]:
    """What the manifest allows for ``field`` — the range a refusal quotes."""
    bounds: dict[str, Any] = {}
    if workflow in ctx.registry:
        spec = ctx.registry.get(workflow).params.get(field)
        for name in ("min", "max", "max_length", "options"):
            got = getattr(spec, name, None)
            if got is not None:
                bounds[name] = got
        max_ratio = getattr(spec, "max_ratio", None)
        if max_ratio is not None:
            bounds["min_ratio"], bounds["max_ratio"] = f"1:{max_ratio:g}", f"{max_ratio:g}:1"
        if getattr(spec, "type", None) == "seed" and reason in ("too_small", "too_large"):
            bounds.setdefault("min", 0)
    if isinstance(value, str):
        bounds["length"] = len(value)
    return bounds


def refusal_text(ctx: DiscordContext, locale: str, refused: Refused, req: JobRequest) -> str:
    """Localized text for a refusal, naming the field and the allowed range when it can."""
    if refused.code is FailureCode.UNKNOWN_WORKFLOW:
        return ctx.t(
            locale, "error.unknown_workflow_named", name=req.workflow, names=", ".join(ctx.registry.names())
        )
    if refused.code is FailureCode.INVALID_INPUT and refused.field and refused.reason:
        bounds = _bounds(ctx, req.workflow, refused.field, refused.reason, req.params.get(refused.field))
        return ctx.renderer.param_error(locale, refused.field, refused.reason, bounds)
    return ctx.renderer.failure(
        locale, refused.code, request_id=req.request_id, retry_after_s=refused.retry_after_s
    )


async def reply_error(interaction: discord.Interaction[Any], text: str, request: Request) -> None:
    """An ephemeral answer only the user sees. After a public defer the "thinking" message is removed."""
    started = time.monotonic()
    if not interaction.response.is_done():
        await interaction.response.send_message(text[:2000], ephemeral=True)
    else:
        await interaction.followup.send(text[:2000], ephemeral=True)
        try:
            await interaction.delete_original_response()
        except discord.HTTPException as exc:
            log.info("thinking_message_not_deleted", code=exc.code)
    log.info(
        "response_sent",
        kind="error",
        bytes=len(text.encode()),
        duration_ms=int((time.monotonic() - request.monotonic_at) * 1000),
        send_ms=int((time.monotonic() - started) * 1000),
    )


async def submit_job(
    ctx: DiscordContext,
    interaction: discord.Interaction[Any],
    request: Request,
    workflow: str,
    params: dict[str, Any],
    inputs: dict[str, ImageRef] | None = None,
) -> str | None:
    """Submit; on acceptance the (deferred) original response becomes the job's message.

    The interaction must already be deferred with ``thinking=True``. Returns the job id, or None when the
    gateway refused (the user got an ephemeral reason).
    """
    channel_id = interaction.channel_id or 0
    req = JobRequest(
        request_id=request.request_id,
        platform="discord",
        user_id=str(interaction.user.id),
        chat_id=str(channel_id),
        locale=request.locale,
        workflow=workflow,
        params=params,
        inputs=inputs or {},
        # No token here: it is a credential and it dies in 15 minutes; a job recovered by another
        # process continues on a channel message instead.
        reply_to={"channel_id": channel_id, "interaction_id": interaction.id, "origin": ctx.instance},
        received_at=request.received_at,
    )
    result = await ctx.gateway.submit(req)
    if isinstance(result, Refused):
        if result.field:
            log.info("validation_error", field=result.field, reason=result.reason, code=result.code.value)
        else:
            log.info("job_refused", code=result.code.value, retry_after_s=result.retry_after_s)
        await reply_error(interaction, refusal_text(ctx, request.locale, result, req), request)
        return None
    job_id = result.job_id
    msg = JobMessage(
        interaction.client,
        channel_id=channel_id,
        interaction=interaction,
        token_deadline=request.monotonic_at + ctx.options.token_ttl_s,
        interval_s=ctx.options.edit_interval_s,
        continued_text=ctx.t(request.locale, "discord.continued"),
        attachment_limit=interaction.filesize_limit,
    )
    ctx.messages.register(job_id, msg)
    wf = ctx.registry.get(workflow) if workflow in ctx.registry else None
    view = JobView(prompt=prompt_of(wf, params), workflow=workflow, request_id=request.request_id)
    queued = Queued(
        job_id=job_id,
        request_id=request.request_id,
        position=max(1, result.position),
        depth=result.depth,
        eta_s=result.eta_s,
    )
    msg.show(
        Render(
            ctx.renderer.queued(request.locale, view, queued), progress_view(ctx.i18n, request.locale, job_id)
        )
    )
    return job_id
