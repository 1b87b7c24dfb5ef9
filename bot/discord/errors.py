"""Errors of commands and buttons: logged with the request id, answered with localized text."""

from __future__ import annotations

from typing import Any

import discord
import structlog

from bot.discord.context import DiscordContext
from core.logs import get_logger

__all__ = ["command_failed"]

log = get_logger("discord")


async def command_failed(
    ctx: DiscordContext, interaction: discord.Interaction[Any], error: Exception
) -> None:
    """Log the error; the user gets the localized "something went wrong" (never ``str(exc)``)."""
    original = getattr(error, "original", error)
    log.error("command_failed", error=type(original).__name__, detail=str(original)[:300])
    locale = ctx.locale_of(interaction)
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    text = ctx.renderer.failure(locale, "internal", request_id=request_id)  # the short id to quote
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
            if (
                interaction.response.type is discord.InteractionResponseType.deferred_channel_message
                and not any(m.interaction is interaction for m in ctx.messages.all())
            ):
                await interaction.delete_original_response()  # no job came of it: drop "thinking…"
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException as exc:
        log.warning("error_reply_failed", code=exc.code)
