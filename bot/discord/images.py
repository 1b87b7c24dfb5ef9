"""A user's picture from a slash-command attachment: size checked before download, pixels by the gateway."""

from __future__ import annotations

from typing import Any

import aiohttp
import discord

from bot.discord.context import DEFAULT_ATTACHMENT_LIMIT, DiscordContext
from comfybot.logs import get_logger
from gateway.errors import ImageRejected
from gateway.models import ImageRef

__all__ = ["fetch_image", "looks_like_image"]

log = get_logger("discord")

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def looks_like_image(attachment: discord.Attachment) -> bool:
    ctype = (attachment.content_type or "").lower()
    if ctype:
        return ctype.startswith("image/")
    return attachment.filename.lower().endswith(_IMAGE_EXTENSIONS)


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f}".rstrip("0").rstrip(".")


async def fetch_image(
    ctx: DiscordContext, interaction: discord.Interaction[Any], attachment: discord.Attachment, locale: str
) -> ImageRef | str:
    """Download and store the picture; returns the stored ref, or the localized text saying why not."""
    limit = min(ctx.upload_limit, interaction.filesize_limit or DEFAULT_ATTACHMENT_LIMIT)
    if not looks_like_image(attachment):
        log.info(
            "validation_error", field="image", reason="not_an_image", content_type=attachment.content_type
        )
        return ctx.t(locale, "error.not_an_image")
    if attachment.size > limit:
        log.info("validation_error", field="image", reason="too_large", bytes=attachment.size, limit=limit)
        return ctx.t(locale, "error.photo_too_large", size=_mb(attachment.size), limit=_mb(limit))
    try:
        data = await attachment.read()
    except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError) as exc:
        log.info("image_download_failed", error=type(exc).__name__)
        return ctx.t(locale, "discord.download_failed")
    if len(data) > limit:
        log.info("validation_error", field="image", reason="too_large", bytes=len(data), limit=limit)
        return ctx.t(locale, "error.photo_too_large", size=_mb(len(data)), limit=_mb(limit))
    try:
        ref = await ctx.gateway.store_image(data)
    except ImageRejected as exc:
        log.info("validation_error", field="image", reason=exc.code.value, bytes=len(data))
        return ctx.renderer.failure(locale, exc.code)
    log.info("photo_received", bytes=len(data), width=ref.width, height=ref.height)
    return ref
