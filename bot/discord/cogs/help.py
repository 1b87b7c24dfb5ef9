"""``/help``: what the bot does and its slash commands with their options, in the user's language.

The list is read from the command tree, so it names exactly the commands Discord offers; each line says
what the command picker says (the same ``cmd.*`` and ``discord.opt.*`` catalogue keys). A command marked
``extras={"admin": True}`` is listed for admins only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import discord
from discord import app_commands
from discord.app_commands import locale_str as _
from discord.ext import commands

from bot.discord.context import MESSAGE_LIMIT, DiscordContext, begin_request
from bot.discord.errors import command_failed
from core.logs import get_logger
from gateway.models import Role

__all__ = ["HelpCog", "help_text"]

log = get_logger("discord")


def _described(ctx: DiscordContext, locale: str, text: app_commands.locale_str | None, fallback: str) -> str:
    key = text.extras.get("key") if text is not None else None
    return ctx.t(locale, key) if isinstance(key, str) and ctx.i18n.has(locale, key) else fallback


def help_text(
    ctx: DiscordContext,
    locale: str,
    tree: Iterable[app_commands.Command[Any, ..., Any] | app_commands.Group | app_commands.ContextMenu],
    *,
    admin: bool = False,
) -> str:
    """The intro, then ``/command — description`` and an indented ``• option — description`` per option,
    within one message ("…and N more" past it)."""
    lines = [ctx.t(locale, "discord.help")]
    for command in tree:
        if not isinstance(command, app_commands.Command) or (command.extras.get("admin") and not admin):
            continue
        key = f"cmd.{command.name}"  # the key each command's description is declared with
        described = ctx.t(locale, key) if ctx.i18n.has(locale, key) else command.description
        lines.append(f"/{command.name} — {described}")
        for param in command.parameters:
            about = _described(ctx, locale, param.locale_description, param.description)
            lines.append(f"  • {param.display_name} — {about}")
    return ctx.renderer.fit_list(locale, lines, MESSAGE_LIMIT)


class HelpCog(commands.Cog):
    """The /help command."""

    def __init__(self, bot: commands.AutoShardedBot, ctx: DiscordContext) -> None:
        self.bot = bot
        self.ctx = ctx

    @app_commands.command(name="help", description=_("How to use the bot", key="cmd.help"))
    async def help_(self, interaction: discord.Interaction[Any]) -> None:
        request = begin_request(self.ctx, interaction, command="help")
        log.info("command_received", command="help")
        admin = self.ctx.role_of(interaction.user.id) is Role.ADMIN
        text = help_text(self.ctx, request.locale, self.bot.tree.get_commands(), admin=admin)
        await interaction.response.send_message(text, ephemeral=True)
        log.info("response_sent", kind="help", bytes=len(text.encode()))

    async def cog_app_command_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        await command_failed(self.ctx, interaction, error)
