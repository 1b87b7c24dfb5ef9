"""Buttons under job messages: ✖️ Cancel, 🔁 Reroll, 🎲 Variations, ⬆️ Upscale, ℹ️ Info.

The buttons are :class:`~bot.discord.views.JobButton` dynamic items, registered when this Cog loads, so
they work on messages sent before a restart; a press nothing handles gets ``button.stale``. A user the
access policy refuses gets its refusal (:func:`~bot.discord.access.admit`), as for commands. Reroll,
Variations and Upscale answer with ``defer(thinking=True)``: the new job's message is the button
interaction's own response. They count once per message in ``PRESS_WINDOW_S`` (``Gateway.first_press``):
a double click starts one job, and the second click hears, privately, that it already started.
"""

from __future__ import annotations

from typing import Any

import discord
from discord.ext import commands

from bot.discord.access import admit
from bot.discord.context import DiscordContext, Request, begin_request
from bot.discord.errors import command_failed
from bot.discord.jobs import submit_job
from bot.discord.views import JobAction, JobButton, dispatched
from bot.jobs import info_text
from bot.requests import FOLLOW_UPS, Problem, follow_up
from core.logs import get_logger
from gateway.models import Role

__all__ = ["ButtonsCog"]

log = get_logger("discord")


class ButtonsCog(commands.Cog):
    """Handles every :class:`JobButton` press."""

    def __init__(self, bot: commands.AutoShardedBot, ctx: DiscordContext) -> None:
        self.bot = bot
        self.ctx = ctx

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(JobButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(JobButton)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        """A press no item handles (forged, or a button of an older version): answer it anyway, so the
        client does not show "This interaction failed"."""
        if interaction.type is not discord.InteractionType.component or dispatched(self.bot, interaction):
            return
        request = begin_request(self.ctx, interaction, button="unmatched")
        data: Any = interaction.data or {}
        log.info("callback_unmatched", request_id=request.request_id, chars=len(data.get("custom_id", "")))
        try:
            await self._ephemeral(interaction, self.ctx.t(request.locale, "button.stale"))
        except discord.HTTPException as exc:  # answered too late: nothing more to do
            log.warning("stale_reply_failed", code=exc.code)

    async def handle(
        self, interaction: discord.Interaction[Any], action: JobAction, job_id: str, idx: int = 0
    ) -> None:
        request = begin_request(self.ctx, interaction, button=action.name.lower())
        if not await admit(self.ctx, interaction):  # buttons bypass the command tree's check
            return
        log.info("button_pressed", action=action.name.lower(), job_id=job_id, idx=idx)
        try:
            await self._handle(interaction, request, action, job_id, idx)
        except Exception as exc:
            await command_failed(self.ctx, interaction, exc)

    async def _ephemeral(self, interaction: discord.Interaction[Any], text: str) -> None:
        await interaction.response.send_message(text[:2000], ephemeral=True)
        log.info("response_sent", kind="button_answer", bytes=len(text.encode()))

    async def _handle(
        self,
        interaction: discord.Interaction[Any],
        request: Request,
        action: JobAction,
        job_id: str,
        idx: int,
    ) -> None:
        ctx, locale = self.ctx, request.locale
        user_id = str(interaction.user.id)
        if action is JobAction.CANCEL:
            ok = await ctx.gateway.cancel(job_id, by=user_id)
            await self._ephemeral(interaction, ctx.t(locale, "cancel.done" if ok else "cancel.failed"))
            return
        record = await ctx.gateway.get_job(job_id)
        if record is None:
            await self._ephemeral(interaction, ctx.t(locale, "button.gone"))
            return
        admin = ctx.role_of(user_id) is Role.ADMIN
        if not ctx.gateway.access.may_use_result(user_id, record.request.user_id, record.request.chat_id):
            log.info(
                "button_refused", request_id=request.request_id, action=action.name.lower(), job_id=job_id
            )
            await self._ephemeral(interaction, ctx.t(locale, "button.not_yours"))
            return
        if action is JobAction.INFO:
            await self._ephemeral(interaction, info_text(self.ctx, locale, record, 2000, admin=admin))
            return
        draft = follow_up(ctx.registry, record, FOLLOW_UPS[action], idx)
        if isinstance(draft, Problem):
            text = "button.no_upscale" if draft.reason == "no_upscale" else "button.gone"
            await self._ephemeral(interaction, ctx.t(locale, text))
            return
        message = str(interaction.message.id if interaction.message else interaction.channel_id)
        if not await ctx.gateway.first_press("discord", message, f"{action.value}:{job_id}:{idx}"):
            log.info(
                "button_repeated", request_id=request.request_id, action=action.name.lower(), job_id=job_id
            )
            await self._ephemeral(interaction, ctx.t(locale, "button.already_started"))
            return
        await interaction.response.defer(thinking=True)
        await submit_job(ctx, interaction, request, draft.workflow, draft.params, draft.inputs)
