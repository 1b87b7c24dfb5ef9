"""What every Cog, button and the event consumer share (``DiscordContext``), and small helpers.

It holds the front end's dependencies — gateway, workflow registry, texts — and the one piece of
in-process state: which :class:`~bot.discord.messages.JobMessage` shows which job.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import discord
import structlog

from bot.i18n import I18n
from bot.jobs import may_use
from bot.render import Renderer
from comfy.workflows import WorkflowRegistry
from core.logs import get_logger
from gateway.models import Role, new_request_id
from gateway.service import Gateway

if TYPE_CHECKING:
    from bot.discord.messages import JobMessage

__all__ = [
    "MESSAGE_LIMIT",
    "DiscordContext",
    "DiscordOptions",
    "JobMessages",
    "Request",
    "begin_request",
    "user_key",
]

log = get_logger("discord")

#: characters of a message's content; longer lists end with "…and N more" (``Renderer.fit_list``)
MESSAGE_LIMIT = 2000


@dataclass(frozen=True)
class DiscordOptions:
    """Tunables (tests shorten them). ``token_ttl_s``: move to a channel message this long after the
    interaction arrived — a little under Discord's 15 minutes, so the last token edit still lands."""

    edit_interval_s: float = 1.0
    previews: bool = True
    preview_interval_s: float = 3.0  # a preview is an upload: fewer of them than text edits
    token_ttl_s: float = 14 * 60.0
    register_timeout_s: float = 5.0
    # /generate checks its options before it defers when the user's settings arrive within this long
    # (Discord wants an answer within 3 seconds)
    prevalidate_s: float = 1.0
    sync_commands: bool = True
    default_workflow: str = "txt2img"


def user_key(user_id: int | str) -> str:
    """The key of a Discord user's settings in the gateway's settings store."""
    return f"discord:{user_id}"


class JobMessages:
    """job id → the message showing it, for this process. Bounded; a waiter covers events that arrive
    before the command handler registered its message."""

    def __init__(self, capacity: int = 20_000) -> None:
        self._items: OrderedDict[str, JobMessage] = OrderedDict()
        self._waiters: dict[str, asyncio.Future[JobMessage]] = {}
        self.capacity = capacity

    def register(self, job_id: str, msg: JobMessage) -> None:
        self._items[job_id] = msg
        self._items.move_to_end(job_id)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        waiter = self._waiters.pop(job_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(msg)

    def get(self, job_id: str) -> JobMessage | None:
        return self._items.get(job_id)

    def forget(self, job_id: str) -> None:
        self._items.pop(job_id, None)

    def all(self) -> list[JobMessage]:
        return list(self._items.values())

    async def wait(self, job_id: str, timeout: float) -> JobMessage | None:  # noqa: ASYNC109 - bounded wait
        found = self._items.get(job_id)
        if found is not None:
            return found
        waiter = self._waiters.setdefault(job_id, asyncio.get_running_loop().create_future())
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(waiter)
        except TimeoutError:
            return None
        finally:
            if self._waiters.get(job_id) is waiter and waiter.done():
                self._waiters.pop(job_id, None)


@dataclass
class DiscordContext:
    """The front end's dependencies, passed to each Cog's constructor."""

    gateway: Gateway
    registry: WorkflowRegistry
    i18n: I18n
    renderer: Renderer
    options: DiscordOptions = field(default_factory=DiscordOptions)
    messages: JobMessages = field(default_factory=JobMessages)
    instance: str = field(default_factory=lambda: secrets.token_hex(4))

    def t(self, locale: str, key: str, /, **values: Any) -> str:
        return self.i18n.t(locale, key, **values)

    def role_of(self, user_id: int | str) -> Role:
        """The gateway's access policy decides who is an admin (the same ``admins`` on every platform)."""
        return self.gateway.access.role_of(user_id)

    def allowed(self, user_id: int | str, channel_id: int | str | None) -> bool:
        """The same policy, asked as Telegram asks it: banned users, and strangers in allowlist mode, are
        refused (it logs ``access_denied``). The channel is the ``chat_id`` of the user's jobs."""
        return may_use(self, user_id, channel_id)

    def locale_of(self, interaction: discord.Interaction[Any]) -> str:
        """``ru`` → ru, ``ko`` → ko, ``zh-TW`` → zh_Hant, anything else → en (the user's client language)."""
        return self.i18n.resolve(str(interaction.locale.value))

    @property
    def default_workflow(self) -> str:
        name = self.options.default_workflow
        if name in self.registry:
            return name
        names = self.registry.names()
        return names[0] if names else name

    @property
    def upload_limit(self) -> int:
        return self.gateway.limits.max_image_bytes

    async def user_defaults(self, user_id: int | str) -> dict[str, Any]:
        """The user's saved /settings (``workflow``, ``ar``); empty when none or the store is down."""
        try:
            return dict(await self.gateway.settings.get(user_key(user_id)) or {})
        except Exception as exc:  # settings are a convenience: never fail a /generate over them
            structlog.get_logger(component="discord").warning(
                "settings_unavailable", error=type(exc).__name__
            )
            return {}


@dataclass(frozen=True)
class Request:
    """One interaction as we handle it: its id for the logs, when it arrived, the user's language."""

    request_id: str
    received_at: float  # wall clock, for JobRequest.received_at
    monotonic_at: float  # for the token's lifetime and durations
    locale: str


def begin_request(ctx: DiscordContext, interaction: discord.Interaction[Any], **fields: Any) -> Request:
    """Clear and bind the structlog context for this interaction (each runs in its own task)."""
    req = Request(new_request_id(), time.time(), time.monotonic(), ctx.locale_of(interaction))
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(
        request_id=req.request_id, platform="discord", user_id=str(interaction.user.id), **fields
    )
    return req
