"""Who may use the bot: the gateway's access policy, asked once per interaction before anything runs.

Telegram asks it in its update middleware. Here the command tree's ``interaction_check``
(:class:`GuardedTree`) covers every slash command and autocomplete, and the buttons' one handler
(:meth:`~bot.discord.cogs.buttons.ButtonsCog.handle`) asks :func:`admit` before a button does anything.
A banned user, or a stranger in allowlist mode, gets the same localized refusal as on Telegram,
ephemeral; the policy logs ``access_denied``.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot.discord.context import DiscordContext, begin_request
from core.logs import get_logger

if TYPE_CHECKING:
    from bot.discord.client import ComfyBot

__all__ = ["GuardedTree", "admit"]

log = get_logger("discord")


async def admit(ctx: DiscordContext, interaction: discord.Interaction[Any]) -> bool:
    """True when the policy lets this user in, in this channel (the ``chat_id`` of their jobs).

    Otherwise the interaction is answered — an ephemeral refusal, or no choices for autocomplete — and
    False is returned. The caller has bound the request's log context (:func:`begin_request`).
    """
    if interaction.type is discord.InteractionType.autocomplete:
        # Asked on every keystroke: refused quietly (the command itself, if sent, logs the refusal).
        if ctx.gateway.access.permits(interaction.user.id, interaction.channel_id):
            return True
        with contextlib.suppress(discord.HTTPException):
            await interaction.response.autocomplete([])
        return False
    if ctx.allowed(interaction.user.id, interaction.channel_id):
        return True
    try:
        text = ctx.t(ctx.locale_of(interaction), "error.access_denied")
        await interaction.response.send_message(text, ephemeral=True)
        log.info("response_sent", kind="denied", bytes=len(text.encode()))
    except discord.HTTPException as exc:  # late or already answered: the refusal stands anyway
        log.warning("denied_reply_failed", code=exc.code)
    return False


class GuardedTree(app_commands.CommandTree["ComfyBot"]):
    """The command tree, with the access policy checked before every command and autocomplete."""

    async def interaction_check(self, interaction: discord.Interaction[ComfyBot], /) -> bool:
        data: Any = interaction.data or {}
        ctx = self.client.ctx
        # The command binds a fresh request when it runs; this one carries a refusal's log lines.
        begin_request(ctx, interaction, command=str(data.get("name", "")))
        return await admit(ctx, interaction)
