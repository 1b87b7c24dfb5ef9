"""``/settings [workflow] [ar]``: a user's defaults for /generate, kept in the gateway's settings store.

Without options it shows them; with options it saves them. The language is the Discord client's.
"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.app_commands import locale_str as _
from discord.ext import commands

from bot.discord.cogs.generate import ASPECT_CHOICES, MAX_CHOICES
from bot.discord.context import DiscordContext, begin_request, user_key
from bot.discord.errors import command_failed
from bot.parsing import normalize_aspect
from core.logs import get_logger

__all__ = ["SettingsCog"]

log = get_logger("discord")


class SettingsCog(commands.Cog):
    """The /settings command."""

    def __init__(self, ctx: DiscordContext) -> None:
        self.ctx = ctx

    def _text(self, locale: str, saved: dict[str, Any]) -> str:
        return self.ctx.t(
            locale,
            "settings.text",
            workflow=saved.get("workflow") or self.ctx.default_workflow,
            ar=saved.get("ar") or self.ctx.t(locale, "settings.auto"),
            language=self.ctx.t(locale, f"lang.{locale}"),
        )

    @app_commands.command(name="settings", description=_("Your defaults", key="cmd.settings"))
    @app_commands.describe(
        workflow=_("Your default workflow for /generate", key="discord.opt.default_workflow"),
        ar=_("Your default aspect ratio W:H, e.g. 3:2", key="discord.opt.default_ar"),
    )
    async def settings(
        self, interaction: discord.Interaction[Any], workflow: str | None = None, ar: str | None = None
    ) -> None:
        ctx = self.ctx
        request = begin_request(ctx, interaction, command="settings")
        log.info("command_received", command="settings", workflow=workflow, ar=ar)
        locale = request.locale
        saved = await ctx.user_defaults(interaction.user.id)
        if workflow is not None:
            name = workflow.strip().lower()
            if name not in ctx.registry:
                log.info("validation_error", field="workflow", reason="unknown", workflow=name)
                names = ", ".join(ctx.registry.names())
                text = ctx.t(locale, "error.unknown_workflow_named", name=name, names=names)
                await interaction.response.send_message(text, ephemeral=True)
                return
            saved["workflow"] = name
        if ar is not None:
            aspect = normalize_aspect(ar)
            if aspect is None:
                log.info("validation_error", field="ar", reason="bad_aspect")
                text = ctx.renderer.param_error(locale, "ar", "bad_aspect")
                await interaction.response.send_message(text, ephemeral=True)
                return
            saved["ar"] = aspect
        text = self._text(locale, saved)
        if workflow is not None or ar is not None:
            await ctx.gateway.settings.set(user_key(interaction.user.id), saved)
            log.info("settings_saved", workflow=saved.get("workflow"), ar=saved.get("ar"))
            text = ctx.t(locale, "settings.saved") + "\n" + text
        await interaction.response.send_message(text[:2000], ephemeral=True)
        log.info("response_sent", kind="settings", bytes=len(text.encode()))

    @settings.autocomplete("workflow")
    async def workflow_choices(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        needle = current.strip().lower()
        names = [n for n in self.ctx.registry.names() if needle in n]
        return [app_commands.Choice(name=n, value=n) for n in names][:MAX_CHOICES]

    @settings.autocomplete("ar")
    async def aspect_choices(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=a, value=a) for a in ASPECT_CHOICES if current.strip() in a][
            :MAX_CHOICES
        ]

    async def cog_app_command_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        await command_failed(self.ctx, interaction, error)
