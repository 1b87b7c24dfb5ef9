"""The one typed object every handler receives (``ctx``), injected through ``Dispatcher(ctx=...)``.

It holds the front end's dependencies — the gateway, the workflow registry, texts, the throttled sender —
and the small amount of in-process state a chat front end needs (which chat message shows which job).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from bot.i18n import I18n
from bot.jobs import may_use
from bot.render import Renderer
from bot.telegram.sender import TelegramSender
from comfy.workflows import WorkflowRegistry
from gateway.models import Role
from gateway.service import Gateway

__all__ = ["MESSAGE_LIMIT", "BotContext", "JobMessage", "JobMessages", "PhotoLimits"]

#: characters of a text message; longer lists end with "…and N more" (``Renderer.fit_list``)
MESSAGE_LIMIT = 4096


@dataclass(frozen=True)
class PhotoLimits:
    """Telegram's limits for photos we send and files we download (see PLATFORMS.md)."""

    photo_max_bytes: int = 10 * 1024 * 1024
    photo_max_sides: int = 10_000  # width + height
    photo_max_ratio: float = 20.0
    download_max_bytes: int = 20 * 1024 * 1024  # getFile on the public Bot API server
    upload_max_bytes: int = 10 * 1024 * 1024  # what we accept from users (the gateway re-checks)

    def fits_photo(self, size_bytes: int, width: int, height: int) -> bool:
        if size_bytes > self.photo_max_bytes or width + height > self.photo_max_sides:
            return False
        short, long = sorted((max(1, width), max(1, height)))
        return long / short <= self.photo_max_ratio


@dataclass
class JobMessage:
    """The chat message that shows one job. ``media``: it is a photo (a preview was shown).

    ``text``: what the message shows now, so the first event repeating it costs no edit.
    """

    chat_id: int
    message_id: int
    media: bool = False
    gone: bool = False
    text: str = ""


class JobMessages:
    """job id ↔ the chat message showing it, for this process.

    A handler registers the message right after the gateway accepted the job; the event consumer waits
    for that (events may arrive before the message is sent). Bounded: old entries are forgotten.
    """

    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity = capacity
        self._by_job: OrderedDict[str, JobMessage] = OrderedDict()
        self._by_message: dict[tuple[int, int], str] = {}
        self._waiters: dict[str, asyncio.Future[JobMessage | None]] = {}
        #: jobs registered without a message (a busy group's skipped notice, a failed send), so a
        #: consumer that starts waiting after the registration does not wait out its timeout
        self._without: OrderedDict[str, None] = OrderedDict()

    def register(self, job_id: str, msg: JobMessage | None) -> None:
        """``msg=None``: the job has no message (sending it failed); stop waiting for one."""
        if msg is not None:
            self._by_job[job_id] = msg
            self._by_message[(msg.chat_id, msg.message_id)] = job_id
            while len(self._by_job) > self.capacity:
                old_id, old = self._by_job.popitem(last=False)
                self._by_message.pop((old.chat_id, old.message_id), None)
        else:
            self._without[job_id] = None
            if len(self._without) > self.capacity:
                self._without.popitem(last=False)
        fut = self._waiters.pop(job_id, None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    def moved(self, job_id: str, msg: JobMessage) -> None:
        """The job is now shown by another message (a preview photo replaced the text)."""
        old = self._by_job.get(job_id)
        if old is not None:
            self._by_message.pop((old.chat_id, old.message_id), None)
        self.register(job_id, msg)

    def get(self, job_id: str) -> JobMessage | None:
        return self._by_job.get(job_id)

    def job_of(self, chat_id: int, message_id: int) -> str | None:
        return self._by_message.get((chat_id, message_id))

    def link(self, chat_id: int, message_id: int, job_id: str) -> None:
        """Remember that a result message (photo, album, buttons) belongs to ``job_id``."""
        self._by_message[(chat_id, message_id)] = job_id

    async def wait(self, job_id: str, timeout: float) -> JobMessage | None:  # noqa: ASYNC109 - bounded wait
        if job_id in self._by_job:
            return self._by_job[job_id]
        if job_id in self._without:
            return None
        fut = self._waiters.get(job_id)
        if fut is None:
            fut = self._waiters[job_id] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(fut)
        except TimeoutError:
            self._waiters.pop(job_id, None)
            return None


@dataclass
class BotContext:
    """Dependencies and shared state of the Telegram front end; handlers take ``ctx: BotContext``."""

    gateway: Gateway
    registry: WorkflowRegistry
    i18n: I18n
    sender: TelegramSender
    renderer: Renderer
    previews: bool = True
    #: TELEGRAM_GROUP_NOTICES=auto: no "queued" message while a group's budget is spoken for
    skip_busy_group_notices: bool = False
    default_workflow: str = "txt2img"
    limits: PhotoLimits = field(default_factory=PhotoLimits)
    #: identifies this process in ``JobRequest.reply_to`` so the event consumer knows its own jobs
    instance: str = field(default_factory=lambda: secrets.token_hex(4))
    bot_id: int = 0
    bot_username: str = ""
    messages: JobMessages = field(default_factory=JobMessages)
    #: user id → monotonic time of the last "slow down" notice (one notice per window, not one per command)
    rate_notices: dict[str, float] = field(default_factory=dict)
    #: how long the event consumer waits for a handler to register a job's message
    register_timeout_s: float = 30.0
    rate_notice_window_s: float = 10.0
    clock: Any = time.monotonic

    def t(self, locale: str, key: str, /, **values: Any) -> str:
        return self.i18n.t(locale, key, **values)

    def role_of(self, user_id: int | str) -> Role:
        return self.gateway.access.role_of(user_id)

    def allowed(self, user_id: int | str, chat_id: int | str | None) -> bool:
        """The gateway's policy says this user may use the bot here (it logs ``access_denied`` if not)."""
        return may_use(self, user_id, chat_id)

    def should_notify_rate_limit(self, user_id: str) -> bool:
        now = self.clock()
        last = self.rate_notices.get(user_id)
        if last is not None and now - last < self.rate_notice_window_s:
            return False
        self.rate_notices[user_id] = now
        if len(self.rate_notices) > 10_000:
            self.rate_notices.clear()
        return True
