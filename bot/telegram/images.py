"""Getting a user's picture: size checked before download, pixels checked by the gateway after decoding."""

from __future__ import annotations

import io
from dataclasses import dataclass

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.types import Message

from bot.telegram.context import BotContext
from core.logs import get_logger
from gateway.errors import ImageRejected
from gateway.models import FailureCode, ImageRef

__all__ = ["ImageSource", "fetch_image", "image_source"]

log = get_logger("telegram")

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


@dataclass(frozen=True)
class ImageSource:
    """A picture attached to a message: its file id, announced size, and whether it looks like an image."""

    file_id: str
    file_size: int | None
    is_image: bool


def image_source(message: Message | None) -> ImageSource | None:
    """The picture a message carries (largest photo size, or a document), if any."""
    if message is None:
        return None
    if message.photo:
        best = message.photo[-1]
        return ImageSource(best.file_id, best.file_size, True)
    doc = message.document
    if doc is not None:
        mime = (doc.mime_type or "").lower()
        name = (doc.file_name or "").lower()
        looks = mime.startswith("image/") or name.endswith(_IMAGE_EXTENSIONS)
        return ImageSource(doc.file_id, doc.file_size, looks)
    return None


def _too_large(ctx: BotContext, locale: str, size: int | None, limit: int) -> str:
    size_text = "?" if size is None else ctx.renderer.size(locale, size)
    limit_text = ctx.renderer.size(locale, limit, limit=True)
    return ctx.t(locale, "error.photo_too_large", size=size_text, limit=limit_text)


async def fetch_image(ctx: BotContext, bot: Bot, source: ImageSource, locale: str) -> ImageRef | str:
    """Download and store the picture; returns the stored ref, or the localized text saying why not."""
    limit = min(ctx.limits.upload_max_bytes, ctx.limits.download_max_bytes)
    if not source.is_image:
        log.info("validation_error", field="image", reason="not_an_image")
        return ctx.t(locale, "error.not_an_image")
    if source.file_size is not None and source.file_size > limit:
        log.info("validation_error", field="image", reason="too_large", bytes=source.file_size)
        return _too_large(ctx, locale, source.file_size, limit)
    buf = io.BytesIO()
    try:
        await bot.download(source.file_id, destination=buf)
    except TelegramBadRequest as exc:
        # Never log str(exc) of a download: the file URL holds the bot token.
        log.info("image_download_failed", error=type(exc).__name__, description=exc.message)
        if "too big" in exc.message.lower():
            return _too_large(ctx, locale, None, limit)
        return ctx.t(locale, "error.download_failed")
    except (TelegramAPIError, OSError, TimeoutError) as exc:
        log.info("image_download_failed", error=type(exc).__name__)
        return ctx.t(locale, "error.download_failed")
    except Exception as exc:  # aiohttp errors carry the URL (and token) in their text: log the type only
        log.info("image_download_failed", error=type(exc).__name__)
        return ctx.t(locale, "error.download_failed")
    data = buf.getvalue()
    if len(data) > limit:
        log.info("validation_error", field="image", reason="too_large", bytes=len(data))
        return _too_large(ctx, locale, len(data), limit)
    try:
        ref = await ctx.gateway.store_image(data)
    except ImageRejected as exc:
        log.info("validation_error", field="image", reason=exc.code.value, bytes=len(data))
        if exc.code is FailureCode.IMAGE_TOO_LARGE:  # say what fits, not just "smaller"
            return ctx.t(
                locale,
                "error.image_too_large_limits",
                megapixels=max(1, ctx.gateway.limits.max_image_pixels // 1_000_000),
                limit=ctx.renderer.size(locale, limit, limit=True),
            )
        return ctx.renderer.failure(locale, exc.code)
    log.info("photo_received", bytes=len(data), width=ref.width, height=ref.height)
    return ref
