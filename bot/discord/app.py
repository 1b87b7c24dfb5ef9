"""The Discord front end as one object the startup module runs: ``DiscordFrontend`` / ``run_discord``.

It builds :class:`~bot.discord.client.ComfyBot` with its Cogs, logs in (which syncs the slash commands),
keeps the gateway connection, and runs the gateway-event consumer next to it::

    async with DiscordFrontend(settings.discord, gateway, registry) as frontend:
        await frontend.wait()          # until stop() or a fatal error

REST calls go to ``DISCORD_API_BASE`` (a rate-limit proxy, say) and the gateway connection to
``DISCORD_GATEWAY_URL``. discord.py keeps both in class attributes (``Route.BASE``,
``DiscordWebSocket.DEFAULT_GATEWAY``), for every client of the process: the front end sets them while it
runs (:func:`use_endpoints`) and puts the previous ones back when it stops — one Discord front end per
process, as ``comfybot run`` has.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any

import aiohttp
import discord
import yarl

from bot.discord.client import ComfyBot, RateLimitLogFilter
from bot.discord.context import DiscordContext, DiscordOptions
from bot.discord.events import EventConsumer
from bot.discord.shards import owned_shards, shard_channel
from bot.i18n import I18n
from bot.lifecycle import FrontendLifecycle
from bot.render import Renderer
from bot.startup import Backoff, StartupRefused, retry_startup
from comfy.workflows import WorkflowRegistry
from core.config import DiscordSettings
from core.logs import get_logger, register_secret
from gateway.service import Gateway

__all__ = ["DiscordFrontend", "restore_endpoints", "run_discord", "use_endpoints"]

log = get_logger("discord")

_RATE_LOGGERS = ("discord.http", "discord.webhook.async_")
_RATE_FILTER = RateLimitLogFilter()

Endpoints = tuple[str, yarl.URL]


def use_endpoints(settings: DiscordSettings) -> Endpoints:
    """Point discord.py's REST calls (interaction callbacks and webhooks included) at
    ``settings.api_base`` + ``/api/v10`` and its first gateway connection at ``settings.gateway_url``;
    returns what was there, for :func:`restore_endpoints`. A resume goes to the ``resume_gateway_url``
    the gateway's READY named (a gateway proxy names itself there)."""
    saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    version = f"/api/v{discord.http.INTERNAL_API_VERSION}"
    base = str(settings.api_base).rstrip("/").removesuffix(version) + version
    gateway = yarl.URL(str(settings.gateway_url))
    discord.http.Route.BASE = base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway if gateway.path else gateway.with_path("/")
    shown = [str(yarl.URL(url).with_user(None)) for url in (base, str(gateway))]  # no proxy credentials
    log.info("discord_endpoints", api_base=shown[0], gateway=shown[1])
    return saved


def restore_endpoints(saved: Endpoints) -> None:
    discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved


class DiscordFrontend(FrontendLifecycle):
    """The bot's gateway connection plus the event consumer; ``start``/``stop`` or ``async with``."""

    def __init__(
        self,
        settings: DiscordSettings,
        gateway: Gateway,
        registry: WorkflowRegistry,
        *,
        i18n: I18n | None = None,
        options: DiscordOptions | None = None,
        drain_timeout_s: float = 10.0,
        client_options: dict[str, Any] | None = None,
        startup_backoff: Backoff | None = None,
    ) -> None:
        if settings.bot_token is None:
            raise ValueError("discord.bot_token is not set")
        self.settings = settings
        i18n = i18n or I18n.load()
        self.ctx = DiscordContext(
            gateway=gateway,
            registry=registry,
            i18n=i18n,
            renderer=Renderer(i18n),
            options=options or DiscordOptions(),
        )
        self._client_options = {
            "shard_count": settings.shard_count,
            "shard_ids": list(settings.shard_ids) if settings.shard_ids is not None else None,
            **(client_options or {}),
        }
        self.drain_timeout_s = drain_timeout_s
        self.startup_backoff = startup_backoff or Backoff()
        self.bot = self._new_bot()
        self.consumer = EventConsumer(self.ctx, self.bot)
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopped = asyncio.Event()
        self._endpoints: Endpoints | None = None  # discord.py's, put back on stop

    async def start(self) -> None:
        """Log in (REST: who am I, sync commands), connect to the gateway, start consuming job events.

        While Discord is unreachable or answers 5xx the login is retried (``frontend_start_retry``); a
        refused token raises :class:`StartupRefused`.
        """
        assert self.settings.bot_token is not None
        token = self.settings.bot_token.get_secret_value()
        register_secret(token)
        if self._endpoints is None:
            self._endpoints = use_endpoints(self.settings)
        login = functools.partial(self._login, token)
        try:
            await retry_startup("discord", "login", login, _transient, self.startup_backoff)
        except BaseException as exc:
            self._restore_endpoints()  # a start that failed leaves discord.py as it found it
            if isinstance(exc, discord.LoginFailure):
                raise StartupRefused("discord", "DISCORD_BOT_TOKEN was refused (401 Unauthorized)") from None
            raise
        for name in _RATE_LOGGERS:
            logging.getLogger(name).addFilter(_RATE_FILTER)  # one shared filter: adding it twice is a no-op
        self._tasks.append(asyncio.create_task(self._connect(), name="discord-gateway"))
        self._tasks.append(asyncio.create_task(self.consumer.run(), name="discord-events"))
        log.info("discord_started", application_id=self.bot.application_id)

    def _new_bot(self) -> ComfyBot:
        bot = ComfyBot(self.ctx, **self._client_options)
        bot.backoff = self.startup_backoff
        return bot

    async def _login(self, token: str) -> None:
        """Log in; without ``DISCORD_SHARD_COUNT``, take the count Discord recommends (``GET
        /gateway/bot``) here rather than in discord.py's connect, which would then also take that
        answer's gateway URL over ``DISCORD_GATEWAY_URL``. The event consumer follows the channels of
        this process's shards."""
        try:
            await self.bot.login(token)
            if self.bot.shard_count is None:
                self.bot.shard_count, _, _ = await self.bot.http.get_bot_gateway()
        except BaseException:
            await self.bot.close()  # closes the HTTP session login opened
            # A closed client cannot log in again: the next try gets a fresh one.
            self.bot = self._new_bot()
            self.consumer = EventConsumer(self.ctx, self.bot)
            raise
        shards = owned_shards(self.bot)
        self.consumer.channels = tuple(shard_channel(i) for i in shards)
        log.info("discord_shards", shard_count=self.bot.shard_count, shard_ids=list(shards))

    async def _connect(self) -> None:
        """The gateway connections of this process's shards (each first connection is retried with
        ``startup_backoff``: :meth:`ComfyBot.launch_shard`); discord.py reconnects those it has had."""
        await self.bot.connect(reconnect=True)

    async def wait_ready(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - bounded startup wait
        async with asyncio.timeout(timeout):
            await self.bot.wait_until_ready()

    async def stop(self) -> None:
        """Stop taking interactions, let results in flight go out, close what we opened."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        await self.consumer.settle()
        events = [t for t in self._tasks if t.get_name() == "discord-events"]
        for task in events:
            task.cancel()
        await asyncio.gather(*events, return_exceptions=True)
        await self.consumer.drain(self.drain_timeout_s)
        for msg in self.ctx.messages.all():
            await msg.close(flush=self.ctx.gateway.closing)
        with contextlib.suppress(Exception):
            await self.bot.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for name in _RATE_LOGGERS:
            logging.getLogger(name).removeFilter(_RATE_FILTER)
        self._restore_endpoints()
        log.info("discord_stopped")

    def _restore_endpoints(self) -> None:
        if self._endpoints is not None:
            restore_endpoints(self._endpoints)
            self._endpoints = None


def _transient(exc: BaseException) -> float | None:
    """Discord unreachable, failing (5xx) or rate limiting the login: try again; anything else is final."""
    if isinstance(exc, discord.RateLimited):
        return exc.retry_after
    if isinstance(exc, discord.GatewayNotFound):  # GET /gateway/bot failed (5xx, unreachable)
        return 0.0
    if isinstance(exc, discord.DiscordServerError | OSError | aiohttp.ClientError | TimeoutError):
        return 0.0
    return None


async def run_discord(
    settings: DiscordSettings, gateway: Gateway, registry: WorkflowRegistry, **options: Any
) -> None:
    """Run the Discord front end until cancelled (for ``comfybot run``)."""
    async with DiscordFrontend(settings, gateway, registry, **options) as frontend:
        await frontend.wait()
