"""``/generate``: prompt plus typed options (workflow with autocomplete, ar, seed, steps, negative, image,
batch). The options become ``JobRequest.params``; the gateway validates them against the manifest.

The options are registered with the bounds the installed workflows allow (:func:`option_bounds`), so the
Discord client stops a bad value before sending it. What a workflow refuses besides is found before the
interaction is deferred (``Gateway.check``), so that refusal is ephemeral from the start; only the image
download and the queue (rate, pending and queue limits) come after the public "thinking…"."""

from __future__ import annotations

import asyncio
import dataclasses
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
from bot.requests import Problem, draft_job
from comfy.text import clean_text
from comfy.workflow_params import RANDOM_SEED_BOUND, IntParam, SeedParam, TextParam
from comfy.workflows import WorkflowRegistry
from core.logs import get_logger
from gateway.limits import Limits
from gateway.models import ImageRef

__all__ = ["ASPECT_CHOICES", "GenerateCog", "option_bounds"]

log = get_logger("discord")

ASPECT_CHOICES: tuple[str, ...] = ("1:1", "4:3", "3:4", "3:2", "2:3", "16:9", "9:16", "21:9")
MAX_CHOICES = 25
#: Discord's STRING option length limit
MAX_OPTION_LENGTH = 6000


def option_bounds(registry: WorkflowRegistry, limits: Limits) -> dict[str, tuple[int, int]]:
    """``/generate``'s option → (min, max) as registered, so the Discord client refuses a value outside
    them before sending it: for numbers the widest range any workflow allows (each workflow's own is
    checked by the gateway), for text a length. The seed stops below 2^53, Discord's INTEGER limit; every
    seed the bot draws and shows is below it, so each can be typed back."""
    bounds: dict[str, tuple[int, int]] = {}
    for wf in registry:
        for name in ("steps", "batch"):
            spec = wf.params.get(name)
            if isinstance(spec, IntParam):
                lo, hi = bounds.get(name, (spec.min, spec.max))
                bounds[name] = (min(lo, spec.min), max(hi, spec.max))
        for name, spec in wf.params.items():
            if isinstance(spec, SeedParam) and name == wf.seed_param:
                bounds["seed"] = (0, RANDOM_SEED_BOUND - 1)
            elif isinstance(spec, TextParam) and name in ("negative", wf.prompt_param):
                option = "negative" if name == "negative" else "prompt"
                top = min(spec.max_length, MAX_OPTION_LENGTH)
                if option == "prompt":
                    top = min(top, limits.prompt_filter.max_length)
                bounds[option] = (1, max(top, bounds.get(option, (1, 1))[1]))
    return bounds


def _bound(command: app_commands.Command[Any, ..., Any], bounds: dict[str, tuple[int, int]]) -> None:
    """Register ``bounds`` on this cog's copy of the command (min/max_value, or min/max_length for
    text). discord.py fixes them in annotations (``app_commands.Range``); ours come from the workflows
    installed, so they are set on the copy's parameters, which the class's command does not share."""
    params = command._params  # noqa: SLF001 - no public setter; the copy's own dict (Command._copy_with)
    for name, (lo, hi) in bounds.items():
        if name in params:
            params[name] = dataclasses.replace(params[name], min_value=lo, max_value=hi)


def _options(**given: Any) -> dict[str, Any]:
    """The typed options as job parameters: an aspect ratio normalised, the negative prompt cleaned."""
    ar = given.get("ar")
    given["ar"] = (normalize_aspect(ar) or ar) if ar else None
    if given.get("negative") is not None:
        given["negative"] = clean_text(given["negative"])
    return given


class GenerateCog(commands.Cog):
    """The /generate command."""

    def __init__(self, ctx: DiscordContext) -> None:
        self.ctx = ctx
        _bound(self.generate, option_bounds(ctx.registry, ctx.gateway.limits))

    def _problem_text(self, locale: str, problem: Problem) -> str:
        if problem.field == "prompt":  # the option's own words: Discord's client shows no flags
            field, reason = self.ctx.t(locale, "field.prompt"), self.ctx.t(locale, "reason.required")
            return self.ctx.t(locale, "error.param", field=field, reason=reason)
        if problem.field == "image":
            return self.ctx.t(locale, "discord.needs_image", workflow=problem.workflow)
        names = ", ".join(self.ctx.registry.names())
        return self.ctx.t(locale, "error.unknown_workflow_named", name=problem.workflow or "?", names=names)

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
        draft = draft_job(
            ctx.registry,
            ctx.default_workflow,
            defaults,
            named=workflow,
            prompt=clean_text(prompt),  # cleaned here too, so the job's message shows what ComfyUI gets
            params=_options(ar=ar, seed=seed, steps=steps, negative=negative, batch=batch),
            with_image=image is not None,
        )
        if isinstance(draft, Problem):
            log.info("validation_error", field=draft.field, reason=draft.reason, workflow=draft.workflow)
            await reply_error(interaction, self._problem_text(locale, draft), request)
            return
        image_input = draft.image_input or "image"
        if image is not None:
            refused = check_image(ctx, image, locale)
            if refused is not None:
                await reply_error(interaction, refused, request)
                return
        req = job_request(ctx, interaction, request, draft.workflow, draft.params)
        refusal = ctx.gateway.check(req, coming=[image_input] if image is not None else [])
        if refusal is not None:
            await refuse(ctx, interaction, request, req, refusal)
            return
        if not interaction.response.is_done():
            await interaction.response.defer(thinking=True)
        inputs: dict[str, ImageRef] = {}
        got = await fetch_image(ctx, image, locale) if image is not None else None
        if isinstance(got, str):
            await reply_error(interaction, got, request)
            return
        if got is not None:
            inputs[image_input] = got
        await submit_job(ctx, interaction, request, draft.workflow, draft.params, inputs)

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

    @generate.autocomplete("batch")
    async def batch_choices(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[int]]:
        """How many pictures the chosen workflow (or the user's default) makes per job: 1..its max, or a
        single "makes one picture per job" for a workflow without ``batch``."""
        locale = self.ctx.locale_of(interaction)
        chosen = str(getattr(interaction.namespace, "workflow", None) or "").strip().lower()
        if chosen not in self.ctx.registry:
            saved = (await self.ctx.user_defaults(interaction.user.id)).get("workflow")
            chosen = (
                saved if isinstance(saved, str) and saved in self.ctx.registry else self.ctx.default_workflow
            )
        if chosen not in self.ctx.registry:
            return []
        spec = self.ctx.registry.get(chosen).params.get("batch")
        if not isinstance(spec, IntParam):
            label = self.ctx.t(locale, "discord.batch_one", workflow=chosen)
            return [app_commands.Choice(name=label[:100], value=1)]
        typed = str(current).strip()
        values = [n for n in range(spec.min, spec.max + 1) if typed in str(n)]
        return [app_commands.Choice(name=str(n), value=n) for n in values][:MAX_CHOICES]

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
