"""/generate (/g, /imagine), and photos with a caption: parse, pick the workflow, submit."""

from __future__ import annotations

from typing import Any

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot.parsing import ParseError, parse_prompt
from bot.requests import Problem, draft_job
from bot.telegram.context import BotContext
from bot.telegram.filters import Addressed
from bot.telegram.images import fetch_image, image_source
from bot.telegram.jobs import Origin, submit_job
from bot.telegram.replies import reply_text
from core.logs import get_logger
from gateway.models import ImageRef

__all__ = ["make_router", "start_generation"]

log = get_logger("telegram")


def _problem_text(ctx: BotContext, locale: str, problem: Problem, *, own_photo: bool) -> str:
    if problem.field == "prompt":
        return ctx.t(locale, "prompt.missing_photo" if own_photo else "prompt.missing")
    if problem.field == "image":
        return ctx.t(locale, "error.needs_image", workflow=problem.workflow)
    names = ", ".join(ctx.registry.names())
    return ctx.t(locale, "error.unknown_workflow_named", name=problem.workflow or "?", names=names)


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
    draft = draft_job(
        ctx.registry,
        ctx.default_workflow,
        settings,
        named=parsed.workflow,
        prompt=parsed.prompt,
        params=parsed.params,
        with_image=source is not None,
    )
    if isinstance(draft, Problem):
        log.info("validation_error", field=draft.field, reason=draft.reason, workflow=draft.workflow)
        own_photo = image_message is message and source is not None  # a photo without a caption
        await answer(_problem_text(ctx, locale, draft, own_photo=own_photo))
        return
    inputs: dict[str, ImageRef] = {}
    if source is not None and draft.image_input is not None:
        got = await fetch_image(ctx, bot, source, locale)
        if isinstance(got, str):
            await answer(got)
            return
        inputs[draft.image_input] = got
    origin = Origin(
        user_id=message.from_user.id,
        chat_id=message.chat.id,
        locale=locale,
        request_id=request_id,
        received_at=received_at,
        reply_to_message_id=message.message_id,
        thread_id=message.message_thread_id if message.is_topic_message else None,
    )
    await submit_job(ctx, bot, origin, draft.workflow, draft.params, inputs)


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
