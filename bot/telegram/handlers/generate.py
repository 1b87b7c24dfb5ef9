"""/generate (/g, /imagine), and photos with a caption: parse, pick the workflow, submit."""

from __future__ import annotations

from typing import Any

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot.parsing import ParseError, parse_prompt
from bot.telegram.context import BotContext
from bot.telegram.filters import Addressed
from bot.telegram.images import fetch_image, image_source
from bot.telegram.jobs import Origin, submit_job
from bot.telegram.replies import reply_text
from comfy.workflows import Workflow
from comfybot.logs import get_logger
from gateway.models import ImageRef

__all__ = ["make_router", "start_generation"]

log = get_logger("telegram")


def _image_workflow(ctx: BotContext, settings: dict[str, Any]) -> str | None:
    """For a photo without ``--wf``: the user's default if it takes a picture, else img2img-like."""
    preferred = settings.get("workflow")
    if isinstance(preferred, str) and preferred in ctx.registry and ctx.registry.get(preferred).images:
        return preferred
    if "img2img" in ctx.registry:
        return "img2img"
    return next((wf.name for wf in ctx.registry if wf.kind == "img2img"), None) or next(
        (wf.name for wf in ctx.registry if wf.images), None
    )


def _prompt_required(wf: Workflow) -> bool:
    if not wf.prompt_param:
        return False
    return bool(getattr(wf.params.get(wf.prompt_param), "required", False))


async def start_generation(
    ctx: BotContext,
    message: Message,
    text: str,
    *,
    locale: str,
    settings: dict[str, Any],
    request_id: str,
    received_at: float,
    image_message: Message | None,
) -> None:
    """Everything between "the user asked" and "the gateway answered", for commands and captions."""
    bot = message.bot
    assert bot is not None and message.from_user is not None  # set on every incoming message

    async def answer(body: str) -> None:
        await reply_text(ctx, message, body, kind="error", received_at=received_at)

    try:
        parsed = parse_prompt(text)
    except ParseError as exc:
        log.info("validation_error", field=exc.flag, reason=exc.code)
        await answer(ctx.renderer.parse_error(locale, exc))
        return
    source = image_source(image_message)
    if parsed.workflow is not None:
        name: str | None = parsed.workflow
    elif source is not None:
        name = _image_workflow(ctx, settings)
    else:
        preferred = settings.get("workflow")
        # A default that needs a picture (img2img) is for photos; a text prompt gets the text default.
        reg = ctx.registry
        if isinstance(preferred, str) and preferred in reg and not reg.get(preferred).images:
            name = preferred
        else:
            name = ctx.default_workflow
    if name is None or name not in ctx.registry:
        log.info("validation_error", field="workflow", reason="unknown", workflow=name)
        await answer(
            ctx.t(
                locale,
                "error.unknown_workflow_named",
                name=name or "?",
                names=", ".join(ctx.registry.names()),
            )
        )
        return
    wf = ctx.registry.get(name)
    params: dict[str, Any] = dict(parsed.params)
    if wf.prompt_param and parsed.prompt:
        params[wf.prompt_param] = parsed.prompt
    elif not parsed.prompt and _prompt_required(wf):
        log.info("validation_error", field="prompt", reason="required")
        own_photo = image_message is message and source is not None  # a photo without a caption
        await answer(ctx.t(locale, "prompt.missing_photo" if own_photo else "prompt.missing"))
        return
    default_ar = settings.get("ar")
    if "ar" not in params and isinstance(default_ar, str) and "ar" in wf.params:
        params["ar"] = default_ar
    inputs: dict[str, ImageRef] = {}
    if wf.images:
        if source is None:
            log.info("validation_error", field="image", reason="required")
            await answer(ctx.t(locale, "error.needs_image", workflow=name))
            return
        got = await fetch_image(ctx, bot, source, locale)
        if isinstance(got, str):
            await answer(got)
            return
        inputs[next(iter(wf.images))] = got
    origin = Origin(
        user_id=message.from_user.id,
        chat_id=message.chat.id,
        locale=locale,
        request_id=request_id,
        received_at=received_at,
        reply_to_message_id=message.message_id,
        thread_id=message.message_thread_id if message.is_topic_message else None,
    )
    await submit_job(ctx, bot, origin, name, params, inputs)


async def generate(
    message: Message,
    command: CommandObject,
    ctx: BotContext,
    locale: str,
    user_settings: dict[str, Any],
    request_id: str,
    received_at: float,
) -> None:
    replied = message.reply_to_message
    own = image_source(message)
    log.info(
        "command_received",
        command=command.command,
        chat_id=message.chat.id,
        chars=len(command.args or ""),
        with_image=own is not None or image_source(replied) is not None,
    )
    await start_generation(
        ctx,
        message,
        command.args or "",
        locale=locale,
        settings=user_settings,
        request_id=request_id,
        received_at=received_at,
        image_message=message if own is not None else replied,
    )


def _caption_text(message: Message) -> str:
    """A caption minus a leading ``/generate@Bot`` (or any command), which only addresses the bot."""
    caption = (message.caption or "").strip()
    if caption.startswith("/"):
        parts = caption.split(maxsplit=1)
        return parts[1] if len(parts) > 1 else ""
    return caption


async def picture(
    message: Message,
    ctx: BotContext,
    locale: str,
    user_settings: dict[str, Any],
    request_id: str,
    received_at: float,
) -> None:
    log.info(
        "command_received",
        command="photo" if message.photo else "document",
        chat_id=message.chat.id,
        chars=len(message.caption or ""),
        with_image=True,
    )
    await start_generation(
        ctx,
        message,
        _caption_text(message),
        locale=locale,
        settings=user_settings,
        request_id=request_id,
        received_at=received_at,
        image_message=message,
    )


def make_router() -> Router:
    """A fresh router (a router attaches to one dispatcher; tests and restarts build several)."""
    router = Router(name=__name__)
    router.message.filter(Addressed())
    router.message.register(generate, Command("generate", "g", "imagine"))
    router.message.register(picture, F.photo | F.document)
    return router
