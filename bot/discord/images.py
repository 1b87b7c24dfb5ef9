"""A user's picture from a slash-command attachment: size checked before download, pixels by the gateway."""

from __future__ import annotations

import aiohttp
import discord

from bot.discord.context import DiscordContext
from core.logs import get_logger
from gateway.errors import ImageRejected
from gateway.models import ImageRef

__all__ = ["check_image", "fetch_image", "looks_like_image"]

log = get_logger("discord")

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def looks_like_image(attachment: discord.Attachment) -> bool:
    ctype = (attachment.content_type or "").lower()
    if ctype:
        return ctype.startswith("image/")
    return attachment.filename.lower().endswith(_IMAGE_EXTENSIONS)


def _too_large(ctx: DiscordContext, locale: str, size: int, limit: int) -> str:
    size_text, limit_text = ctx.renderer.size(locale, size), ctx.renderer.size(locale, limit, limit=True)
    return ctx.t(locale, "error.photo_too_large", size=size_text, limit=limit_text)


def check_image(ctx: DiscordContext, attachment: discord.Attachment, locale: str) -> str | None:
    """What can be said of the attachment before downloading it (its type and announced size): the
    localized reason it is refused, or None.

    The bound is our own ``COMFYBOT_MAX_IMAGE_BYTES`` — not ``interaction.filesize_limit``, which is what
    the bot may upload, not what a user may send it."""
    limit = ctx.upload_limit
    if not looks_like_image(attachment):
        log.info(
            "validation_error", field="image", reason="not_an_image", content_type=attachment.content_type
        )
        return ctx.t(locale, "error.not_an_image")
    if attachment.size > limit:
        log.info("validation_error", field="image", reason="too_large", bytes=attachment.size, limit=limit)
        return _too_large(ctx, locale, attachment.size, limit)
    return None


async def fetch_image(ctx: DiscordContext, attachment: discord.Attachment, locale: str) -> ImageRef | str:
    """Download and store the picture (after :func:`check_image`); returns the stored ref, or the
    localized text saying why not."""
    limit = ctx.upload_limit
    refused = check_image(ctx, attachment, locale)  # cheap; the caller may have asked already
    if refused is not None:
        return refused
    try:
        data = await attachment.read()
    except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError) as exc:
        log.info("image_download_failed", error=type(exc).__name__)
        return ctx.t(locale, "discord.download_failed")
    if len(data) > limit:
        log.info("validation_error", field="image", reason="too_large", bytes=len(data), limit=limit)
        return _too_large(ctx, locale, len(data), limit)
    try:
        ref = await ctx.gateway.store_image(data)
    except ImageRejected as exc:
        log.info("validation_error", field="image", reason=exc.code.value, bytes=len(data))
        return ctx.renderer.failure(locale, exc.code)
    log.info("photo_received", bytes=len(data), width=ref.width, height=ref.height)
    return ref
