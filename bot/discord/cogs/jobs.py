"""``/workflows``, ``/cancel``, ``/queue``, ``/history`` and the admins' ``/stats``: short ephemeral
answers about workflows and the user's jobs. /workflows, /queue, /history and /stats say what Telegram's
say (``bot.jobs``)."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.app_commands import locale_str as _
from discord.ext import commands

from bot.discord.context import MESSAGE_LIMIT, DiscordContext, Request, begin_request
from bot.discord.errors import command_failed
from bot.discord.views import reroll_view
from bot.jobs import queue_text, stats_text, user_history, workflows_text
from core.logs import get_logger
from gateway.models import JobState, Role

__all__ = ["JobsCog"]

log = get_logger("discord")


class JobsCog(commands.Cog):
    """What is installed, what is mine, and stopping it."""

    def __init__(self, ctx: DiscordContext) -> None:
        self.ctx = ctx

    async def _answer(
        self,
        interaction: discord.Interaction[Any],
        request: Request,
        text: str,
        view: discord.ui.View | None = None,
        *,
        kind: str = "text",
    ) -> None:
        await interaction.response.send_message(
            text[:MESSAGE_LIMIT], ephemeral=True, view=view if view is not None else discord.utils.MISSING
        )
        log.info("response_sent", kind=kind, bytes=len(text.encode()))

    @app_commands.command(name="workflows", description=_("Available workflows", key="cmd.workflows"))
    async def workflows(self, interaction: discord.Interaction[Any]) -> None:
        request = begin_request(self.ctx, interaction, command="workflows")
        log.info("command_received", command="workflows")
        saved = (await self.ctx.user_defaults(interaction.user.id)).get("workflow")
        current = saved if saved in self.ctx.registry else self.ctx.default_workflow
        text = workflows_text(
            self.ctx, request.locale, current, MESSAGE_LIMIT, header="discord.workflows_header"
        )
        await self._answer(interaction, request, text, kind="workflows")

    @app_commands.command(name="cancel", description=_("Cancel your latest job", key="cmd.cancel"))
    async def cancel(self, interaction: discord.Interaction[Any]) -> None:
        request = begin_request(self.ctx, interaction, command="cancel")
        log.info("command_received", command="cancel")
        user_id = str(interaction.user.id)
        job_id = next(
            (
                r.job_id
                for r in await self.ctx.gateway.recent_jobs(user_id, 20)
                if not JobState(r.state).terminal
            ),
            None,
        )
        if job_id is None:
            await self._answer(interaction, request, self.ctx.t(request.locale, "cancel.nothing"))
            return
        ok = await self.ctx.gateway.cancel(job_id, by=user_id)
        log.info("cancel_requested", job_id=job_id, ok=ok)
        await self._answer(
            interaction, request, self.ctx.t(request.locale, "cancel.done" if ok else "cancel.failed")
        )

    @app_commands.command(name="queue", description=_("Your place in the queue", key="cmd.queue"))
    async def queue(self, interaction: discord.Interaction[Any]) -> None:
        request = begin_request(self.ctx, interaction, command="queue")
        log.info("command_received", command="queue")
        info = await self.ctx.gateway.queue_info(str(interaction.user.id))
        text = queue_text(self.ctx, request.locale, info, MESSAGE_LIMIT)
        await self._answer(interaction, request, text, kind="queue")

    @app_commands.command(name="history", description=_("Your recent pictures", key="cmd.history"))
    async def history(self, interaction: discord.Interaction[Any]) -> None:
        request = begin_request(self.ctx, interaction, command="history")
        log.info("command_received", command="history")
        got = await user_history(self.ctx, request.locale, str(interaction.user.id), MESSAGE_LIMIT)
        # 🔁 N are the result buttons' own Reroll: the new job is posted in this channel, as on Telegram.
        view = reroll_view(got.rerolls) if got.rerolls else None
        await self._answer(interaction, request, got.text, view, kind="history")

    @app_commands.command(
        name="stats", description=_("Statistics (admins)", key="cmd.stats"), extras={"admin": True}
    )
    # Offered to the server's administrators only (default_member_permissions "0"; a server may grant it
    # to other roles under Integrations); the bot's own admins are still checked below.
    @app_commands.default_permissions()
    async def stats(self, interaction: discord.Interaction[Any]) -> None:
        request = begin_request(self.ctx, interaction, command="stats")
        log.info("command_received", command="stats")
        user_id = str(interaction.user.id)
        if self.ctx.role_of(user_id) is not Role.ADMIN:
            log.info("access_denied", reason="not_admin", command="stats")
            await self._answer(
                interaction, request, self.ctx.t(request.locale, "error.admin_only"), kind="denied"
            )
            return
        text = await stats_text(self.ctx, request.locale, MESSAGE_LIMIT)
        await self._answer(interaction, request, text, kind="stats")

    async def cog_app_command_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        await command_failed(self.ctx, interaction, error)
