"""Putting a finished job into the chat: the result replaces the job's message, exactly once.

One image: a photo (a document when it is over Telegram's photo limits), edited into the job's message
when that message already is a photo (a preview was shown), else sent as a new message that replaces the
text message. Several images: an album (``sendMediaGroup``) and a follow-up message with the buttons.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramEntityTooLarge
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardMarkup,
    InputMediaDocument,
    InputMediaPhoto,
    Message,
    ReplyParameters,
)

from bot.telegram.context import BotContext, JobMessage
from bot.telegram.replies import log_response
from bot.telegram.sender import MessageGone, Priority
from core.logs import get_logger
from gateway.models import ImageRef

__all__ = ["ResultTarget", "deliver_images", "finish_text", "remove_message"]

log = get_logger("telegram")

# Photo refusals that a document does not suffer from.
_PHOTO_REFUSALS = (
    "photo_invalid_dimensions",
    "photo_too_big",
    "photo_save_file_invalid",
    "image_process_failed",
)


class ResultTarget:
    """Where a job's result goes: its chat, the message showing it (if any), what to reply to."""

    def __init__(
        self,
        chat_id: int,
        message: JobMessage | None,
        reply_to: int | None,
        thread_id: int | None = None,
    ) -> None:
        self.chat_id = chat_id
        self.message = message
        self.reply_to = reply_to
        self.thread_id = thread_id

    @property
    def live_message(self) -> JobMessage | None:
        return self.message if self.message is not None and not self.message.gone else None

    def reply_parameters(self) -> ReplyParameters | None:
        if self.reply_to is None:
            return None
        return ReplyParameters(message_id=self.reply_to, allow_sending_without_reply=True)


def _ext(ref: ImageRef) -> str:
    return {"image/jpeg": "jpg", "image/webp": "webp"}.get(ref.mime, "png")


def _photo_refused(exc: TelegramAPIError) -> bool:
    return isinstance(exc, TelegramEntityTooLarge) or (
        isinstance(exc, TelegramBadRequest) and any(m in exc.message.lower() for m in _PHOTO_REFUSALS)
    )


def _seal(ctx: BotContext, old: JobMessage | None) -> None:
    """The result is out: drop the job message's pending progress edits before anything else runs
    (no await between the result's send and this), so nothing of a finished job is edited after it."""
    if old is not None:
        ctx.sender.discard_edits(old.chat_id, old.message_id)


async def remove_message(ctx: BotContext, bot: Bot, msg: JobMessage | None) -> None:
    """Delete a job's progress message after its result went out as a new message (best effort)."""
    if msg is None or msg.gone:
        return
    ctx.sender.discard_edits(msg.chat_id, msg.message_id)
    msg.gone = True
    try:
        await ctx.sender.send(
            msg.chat_id, lambda: bot.delete_message(msg.chat_id, msg.message_id), kind=Priority.CLEANUP
        )
    except TelegramAPIError as exc:
        log.info("progress_message_not_deleted", error=type(exc).__name__, description=exc.message)


async def finish_text(ctx: BotContext, bot: Bot, target: ResultTarget, text: str, *, kind: str) -> None:
    """A final text (failure, cancelled): edited into the job's message, or sent when it is gone."""
    msg = target.live_message
    if msg is not None:
        try:
            if msg.media:
                await ctx.sender.edit(
                    msg.chat_id,
                    msg.message_id,
                    lambda: bot.edit_message_caption(
                        chat_id=msg.chat_id, message_id=msg.message_id, caption=text[:1024], parse_mode=None
                    ),
                    final=True,
                )
            else:
                await ctx.sender.edit(
                    msg.chat_id,
                    msg.message_id,
                    lambda: bot.edit_message_text(
                        text=text[:4096], chat_id=msg.chat_id, message_id=msg.message_id, parse_mode=None
                    ),
                    final=True,
                )
            return
        except MessageGone:
            msg.gone = True
        except TelegramAPIError as exc:
            log.warning("final_edit_failed", error=type(exc).__name__, description=exc.message)
    await ctx.sender.send(
        target.chat_id,
        lambda: bot.send_message(
            target.chat_id,
            text[:4096],
            reply_parameters=target.reply_parameters(),
            message_thread_id=target.thread_id,
            parse_mode=None,
        ),
        kind=Priority.RESULT,
    )
    log.debug("final_text_sent", kind=kind)


async def _edit_media(
    ctx: BotContext,
    bot: Bot,
    msg: JobMessage,
    file: BufferedInputFile,
    caption: str,
    markup: InlineKeyboardMarkup,
    document: bool,
) -> None:
    media: InputMediaPhoto | InputMediaDocument = (
        InputMediaDocument(media=file, caption=caption, parse_mode=None)
        if document
        else InputMediaPhoto(media=file, caption=caption, parse_mode=None)
    )
    await ctx.sender.edit(
        msg.chat_id,
        msg.message_id,
        lambda: bot.edit_message_media(
            media=media, chat_id=msg.chat_id, message_id=msg.message_id, reply_markup=markup
        ),
        final=True,
    )


async def _send_file(
    ctx: BotContext,
    bot: Bot,
    target: ResultTarget,
    file: BufferedInputFile,
    caption: str | None,
    markup: InlineKeyboardMarkup | None,
    document: bool,
    *,
    reply: bool = True,
) -> Message:
    reply_parameters = target.reply_parameters() if reply else None
    send = bot.send_document if document else bot.send_photo
    return await ctx.sender.send(
        target.chat_id,
        lambda: send(
            target.chat_id,
            file,
            caption=caption,
            reply_markup=markup,
            reply_parameters=reply_parameters,
            message_thread_id=target.thread_id,
            parse_mode=None,
        ),
        kind=Priority.RESULT,
    )


async def _send_single(
    ctx: BotContext,
    bot: Bot,
    target: ResultTarget,
    ref: ImageRef,
    data: bytes,
    caption: str,
    markup: InlineKeyboardMarkup,
    as_document: bool,
) -> tuple[Message | None, str]:
    """Edit the photo message into the result, or send the result; returns (new message, kind).

    A photo Telegram refuses (too big, odd dimensions) is sent again as a document.
    """
    name = f"result.{_ext(ref)}"
    document = as_document
    while True:
        kind = "document" if document else "photo"
        file = BufferedInputFile(data, filename=name)
        msg = target.live_message
        try:
            if msg is not None and msg.media:
                try:
                    await _edit_media(ctx, bot, msg, file, caption, markup, document)
                    return None, kind
                except MessageGone:
                    msg.gone = True
                    file = BufferedInputFile(data, filename=name)
            return await _send_file(ctx, bot, target, file, caption, markup, document), kind
        except TelegramAPIError as exc:
            if document or not _photo_refused(exc):
                raise
            log.info("photo_refused_sending_document", description=exc.message)
            document = True


async def deliver_images(
    ctx: BotContext,
    bot: Bot,
    target: ResultTarget,
    refs: Sequence[ImageRef],
    caption: str,
    markup: InlineKeyboardMarkup,
    *,
    job_id: str,
    received_at: float | None,
    on_sent: Callable[[], Awaitable[object]],
) -> None:
    """Send the result images (photo, document or album), await ``on_sent`` as soon as they are in the
    chat (the delivery record: the window in which a kill makes a restart send them again ends here, not
    after the paced removal of the progress message), then remove the progress message."""
    blobs = [await ctx.gateway.read_image(ref) for ref in refs]
    oversize = any(
        not ctx.limits.fits_photo(len(b), r.width, r.height) for r, b in zip(refs, blobs, strict=True)
    )
    total = sum(len(b) for b in blobs)
    old = target.live_message
    if len(refs) == 1:
        sent, kind = await _send_single(ctx, bot, target, refs[0], blobs[0], caption, markup, oversize)
        _seal(ctx, old)
        log_response(kind, size=total, received_at=received_at, images=1)
        await on_sent()
        if sent is not None:
            ctx.messages.link(sent.chat.id, sent.message_id, job_id)
            if old is not None:
                await remove_message(ctx, bot, old)
        return
    await _send_album(ctx, bot, target, refs, blobs, caption, markup, oversize, job_id)
    _seal(ctx, old)
    log_response("album", size=total, received_at=received_at, images=len(refs))
    await on_sent()
    if old is not None:
        await remove_message(ctx, bot, old)


async def _send_album(
    ctx: BotContext,
    bot: Bot,
    target: ResultTarget,
    refs: Sequence[ImageRef],
    blobs: Sequence[bytes],
    caption: str,
    markup: InlineKeyboardMarkup,
    documents: bool,
    job_id: str,
) -> None:
    """Albums of up to 10 (photos, or documents when one is over the photo limits), then the buttons."""
    files = [
        BufferedInputFile(data, filename=f"result_{i + 1}.{_ext(ref)}")
        for i, (ref, data) in enumerate(zip(refs, blobs, strict=True))
    ]
    for start in range(0, len(files), 10):
        chunk = files[start : start + 10]
        if len(chunk) == 1:  # an album needs 2..10 items; a lone tail goes alone
            one = await _send_file(ctx, bot, target, chunk[0], None, None, documents, reply=False)
            ctx.messages.link(one.chat.id, one.message_id, job_id)
            continue
        sent = await _send_group(ctx, bot, target, chunk, documents)
        for m in sent:
            ctx.messages.link(m.chat.id, m.message_id, job_id)
    buttons = await ctx.sender.send(
        target.chat_id,
        lambda: bot.send_message(
            target.chat_id,
            caption[:4096],
            reply_markup=markup,
            message_thread_id=target.thread_id,
            parse_mode=None,
        ),
        kind=Priority.RESULT,
    )
    ctx.messages.link(buttons.chat.id, buttons.message_id, job_id)


async def _send_group(
    ctx: BotContext, bot: Bot, target: ResultTarget, files: list[BufferedInputFile], documents: bool
) -> list[Message]:
    media: list[Any] = [
        InputMediaDocument(media=f, parse_mode=None)
        if documents
        else InputMediaPhoto(media=f, parse_mode=None)
        for f in files
    ]
    try:
        return await ctx.sender.send(
            target.chat_id,
            lambda: bot.send_media_group(
                target.chat_id,
                media,
                reply_parameters=target.reply_parameters(),
                message_thread_id=target.thread_id,
            ),
            kind=Priority.RESULT,
        )
    except TelegramAPIError as exc:
        if documents or not _photo_refused(exc):
            raise
        log.info("album_refused_sending_documents", description=exc.message)
        return await _send_group(ctx, bot, target, files, True)
