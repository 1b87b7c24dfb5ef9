"""Submitting a job from an interaction and making its original response the job's message."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import discord

from bot.discord.context import MESSAGE_LIMIT, DiscordContext, Request
from bot.discord.messages import JobMessage, Render
from bot.discord.shards import events_channel
from bot.discord.views import progress_view
from bot.jobs import first_view, refusal_text
from core.logs import get_logger
from gateway.models import ImageRef, JobRequest
from gateway.service import Refused

__all__ = ["job_request", "refuse", "reply_error", "submit_job"]

log = get_logger("discord")


async def reply_error(interaction: discord.Interaction[Any], text: str, request: Request) -> None:
    """An ephemeral answer only the user sees. After a public defer the "thinking" message is removed
    (so what can be checked quickly is checked before deferring: the refusal is then private from the
    start)."""
    started = time.monotonic()
    if not interaction.response.is_done():
        await interaction.response.send_message(text[:MESSAGE_LIMIT], ephemeral=True)
    else:
        await interaction.followup.send(text[:MESSAGE_LIMIT], ephemeral=True)
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


def job_request(
    ctx: DiscordContext,
    interaction: discord.Interaction[Any],
    request: Request,
    workflow: str,
    params: dict[str, Any],
    inputs: dict[str, ImageRef] | None = None,
) -> JobRequest:
    """The gateway's request for this interaction (what :func:`submit_job` submits and
    ``Gateway.check`` checks)."""
    channel_id = interaction.channel_id or 0
    return JobRequest(
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
        events_channel=events_channel(interaction),  # back to this process: it holds the token
    )


async def refuse(
    ctx: DiscordContext,
    interaction: discord.Interaction[Any],
    request: Request,
    req: JobRequest,
    refused: Refused,
) -> None:
    """Log the gateway's refusal and answer it, ephemeral, naming the field and range when it can."""
    if refused.field:
        log.info("validation_error", field=refused.field, reason=refused.reason, code=refused.code.value)
    else:
        log.info("job_refused", code=refused.code.value, retry_after_s=refused.retry_after_s)
    await reply_error(interaction, refusal_text(ctx, request.locale, refused, req), request)


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
    req = job_request(ctx, interaction, request, workflow, params, inputs)
    result = await ctx.gateway.submit(req)
    if isinstance(result, Refused):
        await refuse(ctx, interaction, request, req, result)
        return None
    job_id = result.job_id
    perms = (
        interaction.app_permissions
    )  # the bot's, in this channel (Discord sends them with each interaction)
    can_post = perms.view_channel and perms.send_messages and perms.attach_files
    msg = JobMessage(
        interaction.client,
        channel_id=channel_id,
        interaction=interaction,
        token_deadline=request.monotonic_at + ctx.options.token_ttl_s,
        interval_s=ctx.options.edit_interval_s,
        continued_text=ctx.t(request.locale, "discord.continued"),
        attachment_limit=interaction.filesize_limit,
        can_post=can_post,
        user_id=interaction.user.id,
        dm_text=ctx.t(request.locale, "discord.dm_intro", channel=channel_id),
    )
    ctx.messages.register(job_id, msg)
    if not can_post:  # said once, privately: the job runs, but only the token's 15 minutes can show it
        log.info("channel_not_postable", channel_id=channel_id, permissions=perms.value)
        with contextlib.suppress(discord.HTTPException):
            await interaction.followup.send(ctx.t(request.locale, "discord.cannot_post"), ephemeral=True)
    view, queued = first_view(ctx.registry, workflow, params, request.request_id, result)
    msg.show(
        Render(
            ctx.renderer.queued(request.locale, view, queued), progress_view(ctx.i18n, request.locale, job_id)
        )
    )
    return job_id
