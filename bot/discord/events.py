"""The gateway-event consumer for Discord: each job's events are rendered into its one message.

``EventConsumer.run`` reads ``gateway.subscribe("discord")``; a small task per job applies that job's
events in order (progress states that a later one supersedes are dropped; the message coalesces the rest).
The result — image files and the persistent buttons — is delivered once (``gateway.mark_delivered``).
"""

from __future__ import annotations

import asyncio
import functools
import io
import time
from typing import Any

import discord
from PIL import Image

from bot.consumer import EventConsumer as BaseConsumer
from bot.consumer import SendErrors, TrackerBase
from bot.discord.context import DiscordContext
from bot.discord.messages import CannotPost, JobMessage, Render
from bot.discord.views import progress_view, result_view
from bot.jobs import prompt_of
from bot.render import JobView
from bot.requests import upscale_workflow
from core.logs import get_logger
from gateway.models import (
    Cancelled,
    Failed,
    Held,
    ImageRef,
    JobEvent,
    Preview,
    Progress,
    Queued,
    Started,
    Succeeded,
    TimedOut,
)

__all__ = ["EventConsumer", "shrink_to_jpeg"]

log = get_logger("discord")

PAYLOAD_TOO_LARGE = 413
# No permission here (403, e.g. 50013/50001) or the channel or message is gone (404): a retry would fail
# alike. Anything else (5xx, 429 past its retries) may pass on another try.
SEND_ERRORS = SendErrors(
    api=discord.HTTPException,
    refused=(discord.Forbidden, discord.NotFound, CannotPost),
    forbidden=(discord.Forbidden, CannotPost),  # nowhere left to say it either
    fields=lambda exc: {"code": getattr(exc, "code", None)},
)


def _ext(ref: ImageRef) -> str:
    return {"image/jpeg": "jpg", "image/webp": "webp"}.get(ref.mime, "png")


def shrink_to_jpeg(data: bytes, limit: int) -> bytes:
    """A JPEG preview of ``data`` under ``limit`` bytes (halving the size until it fits)."""
    with Image.open(io.BytesIO(data)) as img:
        rgb = img.convert("RGB")
    quality = 85
    while True:
        buf = io.BytesIO()
        rgb.save(buf, "JPEG", quality=quality, optimize=True)
        out = buf.getvalue()
        if len(out) <= limit or max(rgb.size) <= 64:
            return out
        rgb = rgb.resize((max(1, rgb.width // 2), max(1, rgb.height // 2)))
        quality = 75


class _Tracker(TrackerBase):
    def __init__(self, consumer: EventConsumer, job_id: str) -> None:
        super().__init__(consumer, job_id)
        self.ctx = consumer.ctx
        self.client = consumer.client
        self.locale = "en"
        self.view = JobView(prompt="", workflow="", request_id="")
        self.kind = ""
        self.rerollable = True
        self.received_at = time.time()
        self.started = False
        self.last_text = ""
        self.msg: JobMessage | None = None

    async def _load(self, first: JobEvent) -> bool:
        record = await self.ctx.gateway.get_job(self.job_id)
        if record is None:
            log.warning("job_unknown")
            return False
        req = record.request
        wf = self.ctx.registry.get(req.workflow) if req.workflow in self.ctx.registry else None
        self.kind = wf.kind if wf is not None else ""
        self.rerollable = wf is None or bool(wf.seed_param)
        self.locale = req.locale
        self.received_at = req.received_at
        self.view = JobView(prompt_of(wf, req.params), req.workflow, req.request_id, record.started_at)
        reply_to: dict[str, Any] = dict(req.reply_to or {})
        msg = self.ctx.messages.get(self.job_id)
        if msg is None and reply_to.get("origin") == self.ctx.instance:
            # Ours, and the command handler is still registering the message: wait for it (bounded).
            msg = await self.ctx.messages.wait(self.job_id, self.ctx.options.register_timeout_s)
        if msg is None:
            # Another process (or an earlier run) took the command: continue on a channel message.
            msg = JobMessage(
                self.client,
                channel_id=int(reply_to.get("channel_id") or req.chat_id),
                interaction=None,
                token_deadline=0.0,
                interval_s=self.ctx.options.edit_interval_s,
                user_id=int(req.user_id),
                dm_text=self.ctx.t(
                    self.locale, "discord.dm_intro", channel=reply_to.get("channel_id") or req.chat_id
                ),
            )
            self.ctx.messages.register(self.job_id, msg)
        self.msg = msg
        return True

    async def _finish(self) -> None:
        self.ctx.messages.forget(self.job_id)
        if self.msg is not None:
            await self.msg.close()  # no edit task outlives its job

    def _progress(self, text: str) -> None:
        assert self.msg is not None
        self.last_text = text
        self.msg.show(Render(text, progress_view(self.ctx.i18n, self.locale, self.job_id)))

    async def _preview(self, ev: Preview) -> None:
        assert self.msg is not None
        if not self.ctx.options.previews:
            return
        data = await self._preview_bytes(ev, self.ctx.options.preview_interval_s)
        if data is None or len(data) > self.msg.attachment_limit:
            return
        text = self.last_text or self.ctx.renderer.started(self.locale, self.view)
        view = progress_view(self.ctx.i18n, self.locale, self.job_id)
        self.msg.show(Render(text, view, [(f"preview.{_ext(ev.image)}", data)]))

    async def _apply(self, ev: JobEvent) -> None:
        r = self.ctx.renderer
        if isinstance(ev, Queued):
            if not self.started:  # a position update that raced the start is stale
                self._progress(r.queued(self.locale, self.view, ev))
        elif isinstance(ev, Held):
            self.started = False  # it starts again after the restart: its positions count again
            self._progress(r.held(self.locale, self.view))
        elif isinstance(ev, Started):
            self.started = True
            self.view = JobView(self.view.prompt, self.view.workflow, self.view.request_id, started_at=ev.at)
            self._progress(r.started(self.locale, self.view))
        elif isinstance(ev, Progress):
            if not self.started:
                self.started = True
                self.view = JobView(
                    self.view.prompt, self.view.workflow, self.view.request_id, started_at=ev.at
                )
            self._progress(r.progress(self.locale, self.view, ev, time.time()))
        elif isinstance(ev, Preview):
            await self._preview(ev)
        elif isinstance(ev, Succeeded):
            await self._succeeded(ev)
        elif isinstance(ev, Failed):
            log.info("job_failed_shown", code=str(ev.code))
            await self._final(Render(r.failed(self.locale, self.view, ev), files=[]), "failed")
        elif isinstance(ev, Cancelled):
            await self._final(Render(r.cancelled(self.locale, self.view, ev), files=[]), "cancelled")
        elif isinstance(ev, TimedOut):
            await self._final(Render(r.timed_out(self.locale, self.view, ev), files=[]), "timed_out")

    async def _final(self, render: Render, kind: str, images: int = 0) -> None:
        assert self.msg is not None
        await self.msg.final(render)
        log.info(
            "response_sent",
            kind=kind,
            bytes=render.bytes,
            images=images,
            duration_ms=int(max(0.0, time.time() - self.received_at) * 1000),
            message_id=self.msg.message_id,
        )

    async def _succeeded(self, ev: Succeeded) -> None:
        if await self.ctx.gateway.delivered(self.job_id):
            log.info("result_already_delivered")
            return
        send = functools.partial(self._send_result, ev)
        if await self._send_or_let_go(send, SEND_ERRORS, self._tell_not_delivered):
            await self.ctx.gateway.mark_delivered(self.job_id)

    async def _tell_not_delivered(self) -> None:
        await self._final(Render(self.ctx.t(self.locale, "error.result_not_delivered")), "failed")

    async def _send_result(self, ev: Succeeded) -> None:
        assert self.msg is not None
        r = self.ctx.renderer
        if not ev.images:
            await self._final(Render(r.failure(self.locale, "internal", request_id=ev.request_id)), "failed")
            return
        limit = self.msg.attachment_limit
        files: list[tuple[str, bytes]] = []
        shrunk = False
        for i, ref in enumerate(ev.images[:10]):  # a message carries at most 10 attachments
            data = await self.ctx.gateway.read_image(ref)
            name = f"result_{i + 1}.{_ext(ref)}" if len(ev.images) > 1 else f"result.{_ext(ref)}"
            if len(data) > limit:  # the limit is per file (PLATFORMS.md)
                # Over Discord's upload limit: say so and send a smaller JPEG preview instead.
                data = await asyncio.to_thread(shrink_to_jpeg, data, limit)
                name = name.rsplit(".", 1)[0] + "_preview.jpg"
                shrunk = True
            files.append((name, data))
        caption = r.result_caption(
            self.locale, self.view, seed=ev.seed, duration_ms=ev.duration_ms, count=len(ev.images), limit=1800
        )
        if shrunk:
            caption += "\n" + self.ctx.t(self.locale, "discord.result_too_large")
            log.info("result_shrunk", limit=limit)
        upscale = self.kind != "upscale" and upscale_workflow(self.ctx.registry) is not None
        view = result_view(
            self.ctx.i18n,
            self.locale,
            self.job_id,
            upscale=upscale,
            images=len(files),
            reroll=self.rerollable,
        )
        try:
            await self._final(Render(caption, view, files), "result", images=len(files))
        except discord.HTTPException as exc:
            if exc.status != PAYLOAD_TOO_LARGE:
                raise
            # Discord refused the upload although the files fit the announced limit (the request as a
            # whole, or a server-side limit): send small previews rather than nothing.
            log.info("result_refused_too_large", code=exc.code, bytes=sum(len(d) for _, d in files))
            each = min(limit // (4 * len(files)), max(len(d) for _, d in files) // 2)
            small = [
                (
                    name.rsplit(".", 1)[0].removesuffix("_preview") + "_preview.jpg",
                    await asyncio.to_thread(shrink_to_jpeg, data, each),
                )
                for name, data in files
            ]
            if not shrunk:
                caption += "\n" + self.ctx.t(self.locale, "discord.result_too_large")
            await self._final(Render(caption, view, small), "result_preview", images=len(small))


class EventConsumer(BaseConsumer[_Tracker]):
    """Reads the gateway's events for Discord and keeps one tracker task per live job."""

    def __init__(self, ctx: DiscordContext, client: discord.Client) -> None:
        super().__init__(ctx.gateway, "discord")
        self.ctx = ctx
        self.client = client

    def new_tracker(self, job_id: str) -> _Tracker:
        return _Tracker(self, job_id)
