"""The gateway-event consumer: one job message per job, edited as the job moves, then the result.

``EventConsumer.run`` reads ``gateway.subscribe("telegram")`` and hands each event to the job's tracker,
a small task per job that applies its events in order. Progress edits go to the sender fire-and-forget
(it coalesces them per message, so a slow chat never holds up the others); results are awaited.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramForbiddenError
from aiogram.types import BufferedInputFile, InlineKeyboardMarkup, InputMediaPhoto, ReplyParameters

from bot.consumer import EventConsumer as BaseConsumer
from bot.consumer import SendErrors, TrackerBase
from bot.jobs import prompt_of
from bot.render import JobView
from bot.requests import upscale_workflow
from bot.telegram.context import BotContext, JobMessage
from bot.telegram.delivery import ResultTarget, deliver_images, finish_text, remove_message
from bot.telegram.keyboards import again_keyboard, progress_keyboard, result_keyboard
from bot.telegram.sender import MessageGone, Priority
from core.logs import get_logger
from gateway.models import (
    Cancelled,
    Failed,
    Held,
    JobEvent,
    Preview,
    Progress,
    Queued,
    Started,
    Succeeded,
    TimedOut,
)

__all__ = ["EventConsumer"]

log = get_logger("telegram")


class _Tracker(TrackerBase):
    def __init__(self, consumer: EventConsumer, job_id: str) -> None:
        super().__init__(consumer, job_id)
        self.ctx = consumer.ctx
        self.bot = consumer.bot
        self.preview_interval_s = consumer.preview_interval_s
        self.locale = "en"
        self.view = JobView(prompt="", workflow="", request_id="")
        self.target = ResultTarget(0, None, None)
        self.received_at: float | None = None
        self.kind = ""
        self.rerollable = True
        self.last_text = ""

    # --- setup ------------------------------------------------------------------------------------

    async def _load(self, first: JobEvent) -> bool:
        record = await self.ctx.gateway.get_job(self.job_id)
        if record is None:
            log.warning("job_unknown", job_id=self.job_id)
            return False
        req = record.request
        reply_to: dict[str, Any] = dict(req.reply_to or {})
        chat_id = int(reply_to.get("chat_id") or req.chat_id)
        wf = self.ctx.registry.get(req.workflow) if req.workflow in self.ctx.registry else None
        self.kind = wf.kind if wf is not None else ""
        # Reroll and Variations mean "a new seed": pointless under a result without one (an upscale).
        self.rerollable = wf is None or bool(wf.seed_param)
        self.locale = req.locale
        self.received_at = req.received_at
        self.view = JobView(
            prompt=prompt_of(wf, req.params),
            workflow=req.workflow,
            request_id=req.request_id,
            started_at=record.started_at,
        )
        msg = self.ctx.messages.get(self.job_id)
        if msg is None and reply_to.get("origin") == self.ctx.instance:
            # Ours, and the handler is still sending the job message: wait for it (bounded).
            msg = await self.ctx.messages.wait(self.job_id, self.ctx.register_timeout_s)
        if msg is None and (view := await self._saved_view()) is not None:
            # Shown by a process that has restarted since (or by another one): keep editing that message.
            msg = JobMessage(int(view["chat_id"]), int(view["message_id"]), media=bool(view.get("media")))
            self.ctx.messages.register(self.job_id, msg)
        self.target = ResultTarget(chat_id, msg, reply_to.get("message_id"), reply_to.get("thread_id"))
        if msg is not None:
            self.last_text = msg.text  # the handler's "queued" text: repeating it is not an edit
        return True

    async def _saved_view(self) -> dict[str, Any] | None:
        try:
            return await self.ctx.gateway.get_view(self.job_id)
        except Exception as exc:  # without it the result comes as a new message: still delivered
            log.warning("job_view_unavailable", error=repr(exc))
            return None

    async def _reload_view(self) -> None:
        view = await self._saved_view()
        if view is None:
            return
        msg = JobMessage(int(view["chat_id"]), int(view["message_id"]), media=bool(view.get("media")))
        old = self.target.message
        if old is not None and (old.chat_id, old.message_id) == (msg.chat_id, msg.message_id):
            return
        self.ctx.messages.moved(self.job_id, msg)
        self.target.message = msg
        self.last_text = ""  # what that message says now is not known here

    # --- rendering --------------------------------------------------------------------------------

    async def _apply(self, ev: JobEvent) -> None:
        now = time.time()
        if isinstance(ev, Started):
            self.view = JobView(self.view.prompt, self.view.workflow, self.view.request_id, started_at=ev.at)
            self._progress(self.ctx.renderer.started(self.locale, self.view))
        elif isinstance(ev, Queued):
            self._progress(self.ctx.renderer.queued(self.locale, self.view, ev))
        elif isinstance(ev, Held):
            # While this process stops, the notice must not be dropped like a progress edit.
            self._progress(self.ctx.renderer.held(self.locale, self.view), final=self.ctx.gateway.closing)
        elif isinstance(ev, Progress):
            if self.view.started_at is None:
                self.view = JobView(
                    self.view.prompt, self.view.workflow, self.view.request_id, started_at=ev.at
                )
            self._progress(self.ctx.renderer.progress(self.locale, self.view, ev, now))
        elif isinstance(ev, Preview):
            await self._preview(ev)
        elif isinstance(ev, Succeeded):
            await self._succeeded(ev)
        elif isinstance(ev, Failed):
            log.info("job_failed_shown", code=str(ev.code))
            await self._final_text(self.ctx.renderer.failed(self.locale, self.view, ev), "failed")
        elif isinstance(ev, Cancelled):
            await self._final_text(self.ctx.renderer.cancelled(self.locale, self.view, ev), "cancelled")
        elif isinstance(ev, TimedOut):
            await self._final_text(self.ctx.renderer.timed_out(self.locale, self.view, ev), "timed_out")

    def _keyboard(self) -> InlineKeyboardMarkup:
        return progress_keyboard(self.ctx.i18n, self.locale, self.job_id)

    def _progress(self, text: str, *, final: bool = False) -> None:
        msg = self.target.live_message
        if msg is None or text == self.last_text:
            return
        self.last_text = text
        bot, markup = self.bot, self._keyboard()
        if msg.media:
            fut = self.ctx.sender.submit_edit(
                msg.chat_id,
                msg.message_id,
                lambda: bot.edit_message_caption(
                    chat_id=msg.chat_id,
                    message_id=msg.message_id,
                    caption=text[:1024],
                    reply_markup=markup,
                    parse_mode=None,
                ),
                final=final,
            )
        else:
            fut = self.ctx.sender.submit_edit(
                msg.chat_id,
                msg.message_id,
                lambda: bot.edit_message_text(
                    text=text[:4096],
                    chat_id=msg.chat_id,
                    message_id=msg.message_id,
                    reply_markup=markup,
                    parse_mode=None,
                ),
                final=final,
            )
        fut.add_done_callback(functools.partial(_mark_gone, msg))

    async def _preview(self, ev: Preview) -> None:
        msg = self.target.live_message
        if not self.ctx.previews or msg is None:
            return
        data = await self._preview_bytes(ev, self.preview_interval_s)
        if data is None:
            return
        caption = (self.last_text or self.ctx.renderer.started(self.locale, self.view))[:1024]
        file = BufferedInputFile(data, filename="preview.jpg")
        bot, markup = self.bot, self._keyboard()
        if msg.media:
            media = InputMediaPhoto(media=file, caption=caption, parse_mode=None)
            fut = self.ctx.sender.submit_edit(
                msg.chat_id,
                msg.message_id,
                lambda: bot.edit_message_media(
                    media=media, chat_id=msg.chat_id, message_id=msg.message_id, reply_markup=markup
                ),
            )
            fut.add_done_callback(functools.partial(_mark_gone, msg))
            return
        # A text message cannot become a photo: send the preview as the job's new message, drop the text.
        target = self.target
        try:
            sent = await self.ctx.sender.send(
                target.chat_id,
                lambda: bot.send_photo(
                    target.chat_id,
                    file,
                    caption=caption,
                    reply_markup=markup,
                    reply_parameters=(
                        ReplyParameters(message_id=target.reply_to, allow_sending_without_reply=True)
                        if target.reply_to is not None
                        else None
                    ),
                    message_thread_id=target.thread_id,
                    parse_mode=None,
                ),
                kind=Priority.PROGRESS,
            )
        except TelegramAPIError as exc:
            log.info("preview_not_sent", error=type(exc).__name__, description=exc.message)
            return
        new = JobMessage(sent.chat.id, sent.message_id, media=True)
        self.ctx.messages.moved(self.job_id, new)
        try:
            saved = await self.ctx.gateway.get_view(self.job_id) or {}  # keeps "platform" and "again"
            await self.ctx.gateway.set_view(
                self.job_id, saved | {"chat_id": new.chat_id, "message_id": new.message_id, "media": True}
            )
        except Exception as exc:  # only a restart mid-job would miss it
            log.warning("job_view_not_saved", error=repr(exc))
        self.target.message = new
        await remove_message(self.ctx, bot, msg)

    async def _succeeded(self, ev: Succeeded) -> None:
        if await self.ctx.gateway.delivered(self.job_id):
            log.info("result_already_delivered")
            await self._remove_stale_text()
            return
        if not ev.images:
            await self._final_text(
                self.ctx.renderer.failure(self.locale, "internal", request_id=ev.request_id), "failed"
            )
            await self.ctx.gateway.mark_delivered(self.job_id)
            return
        caption = self.ctx.renderer.result_caption(
            self.locale, self.view, seed=ev.seed, duration_ms=ev.duration_ms, count=len(ev.images)
        )
        markup = result_keyboard(
            self.ctx.i18n,
            self.locale,
            self.job_id,
            images=len(ev.images),
            upscale=self.kind != "upscale" and upscale_workflow(self.ctx.registry) is not None,
            reroll=self.rerollable,
        )
        send = functools.partial(
            deliver_images,
            self.ctx,
            self.bot,
            self.target,
            ev.images,
            caption,
            markup,
            job_id=self.job_id,
            received_at=self.received_at,
            on_sent=functools.partial(self.ctx.gateway.mark_delivered, self.job_id),
        )
        await self._send_or_let_go(send, SEND_ERRORS, self._tell_not_delivered)

    async def _remove_stale_text(self) -> None:
        """A process killed between sending the result and removing the job's text message left it
        behind: remove it now. (A photo job message was edited into the result itself: it stays.)"""
        msg = self.target.live_message
        if msg is not None and not msg.media:
            await remove_message(self.ctx, self.bot, msg)

    async def _tell_not_delivered(self) -> None:
        await self._final_text(self.ctx.t(self.locale, "error.result_not_delivered"), "failed")

    async def _final_text(self, text: str, kind: str) -> None:
        await finish_text(self.ctx, self.bot, self.target, text, kind=kind)


# The bot may not write here (403) or Telegram refuses the request (400): a retry would fail alike.
# Anything else (5xx, network) may pass on another try.
SEND_ERRORS = SendErrors(
    api=TelegramAPIError,
    refused=(TelegramForbiddenError, TelegramBadRequest),
    forbidden=(TelegramForbiddenError,),
    fields=lambda exc: {"description": str(exc)[:300]},
)


def _mark_gone(msg: JobMessage, fut: asyncio.Future[Any]) -> None:
    if fut.cancelled():
        return
    if isinstance(fut.exception(), MessageGone):
        msg.gone = True  # the user deleted it: stop editing; the result will come as a new message


class EventConsumer(BaseConsumer[_Tracker]):
    """Reads the gateway's events for Telegram and keeps one tracker task per live job."""

    def __init__(self, ctx: BotContext, bot: Bot, *, preview_interval_s: float = 3.0) -> None:
        super().__init__(ctx.gateway, "telegram")
        self.ctx = ctx
        self.bot = bot
        self.preview_interval_s = preview_interval_s

    def new_tracker(self, job_id: str) -> _Tracker:
        return _Tracker(self, job_id)

    async def show_interrupted(self, job_id: str, view: dict[str, Any]) -> None:
        """The job behind this message is gone: say so, drop Cancel, offer "Run again" (its request
        was kept in the view)."""
        again = view.get("again") or {}
        locale = str(again.get("locale") or self.ctx.i18n.default)
        chat_id, message_id = int(view["chat_id"]), int(view["message_id"])
        text = self.ctx.t(locale, "job.interrupted")
        markup = again_keyboard(self.ctx.i18n, locale, job_id) if again.get("workflow") else None
        bot = self.bot

        async def edit() -> object:
            if view.get("media"):
                return await bot.edit_message_caption(
                    chat_id=chat_id, message_id=message_id, caption=text, reply_markup=markup, parse_mode=None
                )
            return await bot.edit_message_text(
                text=text, chat_id=chat_id, message_id=message_id, reply_markup=markup, parse_mode=None
            )

        try:
            await self.ctx.sender.edit(chat_id, message_id, edit, final=True)
        except (MessageGone, TelegramAPIError) as exc:  # deleted by the user: nothing left to fix
            log.info("interrupted_not_shown", error=type(exc).__name__)
