"""``/generate``: prompt plus typed options (workflow with autocomplete, ar, seed, steps, negative, image,
batch). The options become ``JobRequest.params``; the gateway validates them against the manifest."""

from __future__ import annotations

import asyncio
from typing import Any

import discord
from discord import app_commands
from discord.app_commands import locale_str as _
from discord.ext import commands

from bot.discord.context import DiscordContext, begin_request
from bot.discord.errors import command_failed
from bot.discord.images import check_image, fetch_image
from bot.discord.jobs import job_request, refuse, reply_error, submit_job
from bot.jobs import workflow_description
from bot.parsing import normalize_aspect
from comfybot.logs import get_logger
from gateway.models import ImageRef

__all__ = ["ASPECT_CHOICES", "GenerateCog"]

log = get_logger("discord")

ASPECT_CHOICES: tuple[str, ...] = ("1:1", "4:3", "3:4", "3:2", "2:3", "16:9", "9:16", "21:9")
MAX_CHOICES = 25


class GenerateCog(commands.Cog):
    """The /generate command."""

    def __init__(self, ctx: DiscordContext) -> None:
        self.ctx = ctx

    def _image_workflow(self) -> str | None:
        if "img2img" in self.ctx.registry:
            return "img2img"
        return next((wf.name for wf in self.ctx.registry if wf.kind == "img2img"), None) or next(
            (wf.name for wf in self.ctx.registry if wf.images), None
        )

    @app_commands.command(
        name="generate", description=_("Draw a picture from a text prompt", key="cmd.generate")
    )
    @app_commands.describe(
        prompt=_("What to draw", key="discord.opt.prompt"),
        workflow=_("Workflow (default: txt2img, or img2img with an image)", key="discord.opt.workflow"),
        ar=_("Aspect ratio W:H, e.g. 16:9", key="discord.opt.ar"),
        seed=_("Random seed (same seed, same picture)", key="discord.opt.seed"),
        steps=_("Sampling steps", key="discord.opt.steps"),
        negative=_("What to avoid", key="discord.opt.negative"),
        image=_("A picture to redraw", key="discord.opt.image"),
        batch=_("Pictures per job", key="discord.opt.batch"),
    )
    async def generate(
        self,
        interaction: discord.Interaction[Any],
        prompt: str,
        workflow: str | None = None,
        ar: str | None = None,
        seed: int | None = None,
        steps: int | None = None,
        negative: str | None = None,
        image: discord.Attachment | None = None,
        batch: int | None = None,
    ) -> None:
        ctx = self.ctx
        request = begin_request(ctx, interaction, command="generate")
        log.info(
            "command_received",
            command="generate",
            channel_id=interaction.channel_id,
            chars=len(prompt),
            with_image=image is not None,
            workflow=workflow,
        )
        locale = request.locale
        # What can be checked quickly is checked before deferring, so a refusal is private from the
        # start; only a slow settings store makes us show "thinking…" first.
        defaults = await self._defaults_or_defer(interaction)
        preferred = defaults.get("workflow") if defaults.get("workflow") in ctx.registry else None
        if workflow:
            name: str | None = workflow.strip().lower()
        elif image is not None:
            takes_image = preferred is not None and bool(ctx.registry.get(preferred).images)
            name = preferred if takes_image else self._image_workflow()
        else:
            name = preferred or ctx.default_workflow
        if name is None or name not in ctx.registry:
            log.info("validation_error", field="workflow", reason="unknown", workflow=name)
            text = ctx.t(
                locale,
                "error.unknown_workflow_named",
                name=name or "?",
                names=", ".join(ctx.registry.names()),
            )
            await reply_error(interaction, text, request)
            return
        wf = ctx.registry.get(name)
        given = {
            "ar": normalize_aspect(ar) or ar if ar else None,
            "seed": seed,
            "steps": steps,
            "negative": negative,
            "batch": batch,
        }
        params: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        if "ar" not in params and isinstance(defaults.get("ar"), str) and "ar" in wf.params:
            params["ar"] = defaults["ar"]
        if wf.prompt_param:
            params[wf.prompt_param] = prompt
        image_input = next(iter(wf.images), "image")
        if image is not None:
            refused = check_image(ctx, image, locale)
            if refused is not None:
                await reply_error(interaction, refused, request)
                return
        elif any(spec.required for spec in wf.images.values()):
            log.info("validation_error", field="image", reason="required", workflow=name)
            await reply_error(interaction, ctx.t(locale, "discord.needs_image", workflow=name), request)
            return
        req = job_request(ctx, interaction, request, name, params)
        refusal = ctx.gateway.check(req, coming=[image_input] if image is not None else [])
        if refusal is not None:
            await refuse(ctx, interaction, request, req, refusal)
            return
        if not interaction.response.is_done():
            await interaction.response.defer(thinking=True)
        inputs: dict[str, ImageRef] = {}
        if image is not None:
            got = await fetch_image(ctx, image, locale)
            if isinstance(got, str):
                await reply_error(interaction, got, request)
                return
            inputs[image_input] = got
        await submit_job(ctx, interaction, request, name, params, inputs)

    async def _defaults_or_defer(self, interaction: discord.Interaction[Any]) -> dict[str, Any]:
        """The user's saved settings. Discord wants an answer within 3 seconds: when the store takes
        longer than ``prevalidate_s``, the interaction is deferred meanwhile (checks then answer with a
        followup)."""
        lookup = asyncio.ensure_future(self.ctx.user_defaults(interaction.user.id))
        done, _ = await asyncio.wait({lookup}, timeout=self.ctx.options.prevalidate_s)
        if not done:
            log.info("settings_slow", waited_s=self.ctx.options.prevalidate_s)
            await interaction.response.defer(thinking=True)
        return await lookup

    @generate.autocomplete("workflow")
    async def workflow_choices(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        needle = current.strip().lower()
        locale = self.ctx.locale_of(interaction)
        out = []
        for wf in self.ctx.registry:
            about = workflow_description(self.ctx, locale, wf)  # what /workflows says of it
            if needle and not any(needle in text.lower() for text in (wf.name, about, wf.description)):
                continue
            label = f"{wf.name} — {about}" if about else wf.name
            out.append(app_commands.Choice(name=label[:100], value=wf.name))
        return out[:MAX_CHOICES]

    @generate.autocomplete("ar")
    async def aspect_choices(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        typed = normalize_aspect(current) if current.strip() else None
        values = [a for a in ASPECT_CHOICES if current.strip() in a]
        if typed is not None and typed not in values:
            values.insert(0, typed)  # what the user typed is a fine value too; the gateway checks it
        return [app_commands.Choice(name=a, value=a) for a in values][:MAX_CHOICES]

    async def cog_app_command_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        await command_failed(self.ctx, interaction, error)
