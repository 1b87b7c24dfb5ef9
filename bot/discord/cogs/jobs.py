"""``/workflows``, ``/cancel`` and ``/queue``: short ephemeral answers about workflows and the user's jobs."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.context import DiscordContext, Request, begin_request
from bot.discord.errors import command_failed
from comfybot.logs import get_logger

__all__ = ["JobsCog"]

log = get_logger("discord")


class JobsCog(commands.Cog):
    """What is installed, what is mine, and stopping it."""

    def __init__(self, ctx: DiscordContext) -> None:
        self.ctx = ctx

    async def _answer(self, interaction: discord.Interaction[Any], request: Request, text: str) -> None:
        await interaction.response.send_message(text[:2000], ephemeral=True)
        log.info("response_sent", kind="text", bytes=len(text.encode()))

    @app_commands.command(name="workflows", description="List the installed workflows")
    async def workflows(self, interaction: discord.Interaction[Any]) -> None:
        request = begin_request(self.ctx, interaction, command="workflows")
        log.info("command_received", command="workflows")
        locale, ctx = request.locale, self.ctx
        if not len(ctx.registry):
            await self._answer(interaction, request, ctx.t(locale, "workflows.empty"))
            return
        lines = [ctx.t(locale, "discord.workflows_header")]
        for wf in ctx.registry:
            line = ctx.t(locale, "workflows.line", name=wf.name, description=wf.description or wf.kind)
            if wf.name == ctx.default_workflow:
                line += " " + ctx.t(locale, "workflows.default_mark")
            lines.append(line)
        await self._answer(interaction, request, "\n".join(lines))

    @app_commands.command(name="cancel", description="Cancel your waiting and running jobs")
    async def cancel(self, interaction: discord.Interaction[Any]) -> None:
        request = begin_request(self.ctx, interaction, command="cancel")
        log.info("command_received", command="cancel")
        user_id = str(interaction.user.id)
        info = await self.ctx.gateway.queue_info(user_id)
        cancelled = 0
        for job_id, _ in info.mine:
            cancelled += await self.ctx.gateway.cancel(job_id, by=user_id)
        key = "cancel.done" if cancelled else "cancel.nothing"
        await self._answer(interaction, request, self.ctx.t(request.locale, key))

    @app_commands.command(name="queue", description="Show your jobs in the queue")
    async def queue(self, interaction: discord.Interaction[Any]) -> None:
        request = begin_request(self.ctx, interaction, command="queue")
        log.info("command_received", command="queue")
        ctx, locale = self.ctx, request.locale
        info = await ctx.gateway.queue_info(str(interaction.user.id))
        if not info.mine:
            await self._answer(interaction, request, ctx.t(locale, "queue.empty", depth=info.depth))
            return
        lines = [ctx.t(locale, "queue.header", depth=info.depth)]
        for _, position in info.mine:
            lines.append(
                ctx.t(locale, "queue.running")
                if position == 0
                else ctx.t(locale, "queue.line", position=position)
            )
        await self._answer(interaction, request, "\n".join(lines))

    async def cog_app_command_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        await command_failed(self.ctx, interaction, error)
