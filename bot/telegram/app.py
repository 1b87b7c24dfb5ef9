"""The Telegram front end as one object the startup module runs: ``TelegramFrontend``.

It builds the aiogram ``Bot`` (``TELEGRAM_API_BASE`` for a self-hosted Bot API server), the throttled
sender, the dispatcher with every feature router, and runs long polling (or a webhook server with a
secret token) next to the gateway-event consumer::

    async with TelegramFrontend(settings.telegram, gateway, registry) as frontend:
        await frontend.wait()          # until stop() or a fatal error
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import BotCommand, BotCommandScopeDefault
from aiohttp import web

from bot.i18n import I18n
from bot.lifecycle import FrontendLifecycle
from bot.render import Renderer
from bot.startup import Backoff, StartupRefused, retry_startup
from bot.telegram.context import BotContext, PhotoLimits
from bot.telegram.events import EventConsumer
from bot.telegram.handlers import basic, buttons, errors, fallback, generate, jobs, settings
from bot.telegram.middleware import RequestContextMiddleware
from bot.telegram.pace import Pace, RedisPace
from bot.telegram.sender import SenderLimits, TelegramSender
from bot.telegram.webhook import OnceMiddleware, register_webhook, webhook_secret
from comfy.workflows import WorkflowRegistry
from core.config import TelegramSettings
from core.logs import get_logger
from gateway.redis_base import RedisBase
from gateway.service import Gateway

__all__ = ["MENU_COMMANDS", "TelegramFrontend", "build_dispatcher", "run_telegram"]

log = get_logger("telegram")

T = TypeVar("T")

MENU_COMMANDS: tuple[str, ...] = (
    "generate",
    "workflows",
    "cancel",
    "queue",
    "settings",
    "history",
    "language",
    "help",
    "start",
)


def build_dispatcher(ctx: BotContext) -> Dispatcher:
    """The one place routers are composed; ``ctx`` is injected into every handler."""
    dp = Dispatcher(ctx=ctx)
    dp.update.outer_middleware(RequestContextMiddleware(ctx))
    dp.include_routers(
        *(m.make_router() for m in (basic, generate, jobs, settings, buttons, fallback, errors))
    )
    return dp


class TelegramFrontend(FrontendLifecycle):
    """Polling (or webhook) plus the gateway-event consumer of one bot; ``start``/``stop`` or ``async with``.

    ``bot`` may be given (tests, or a startup module that owns the session); otherwise one is built from
    ``settings.bot_token`` and ``settings.api_base`` and closed by :meth:`stop`. With a Redis store the
    sender's pace is shared by every process of the bot (:class:`~bot.telegram.pace.RedisPace`);
    ``shared_pace=False`` keeps it in this process.
    """

    def __init__(
        self,
        settings: TelegramSettings,
        gateway: Gateway,
        registry: WorkflowRegistry,
        *,
        i18n: I18n | None = None,
        bot: Bot | None = None,
        sender_limits: SenderLimits | None = None,
        photo_limits: PhotoLimits | None = None,
        default_workflow: str = "txt2img",
        polling_timeout: int = 10,
        preview_interval_s: float = 3.0,
        startup_backoff: Backoff | None = None,
        shared_pace: bool = True,
    ) -> None:
        self.settings = settings
        self._own_bot = bot is None
        if bot is None:
            if settings.bot_token is None:
                raise ValueError("telegram.bot_token is not set")
            session = AiohttpSession(api=TelegramAPIServer.from_base(str(settings.api_base).rstrip("/")))
            bot = Bot(settings.bot_token.get_secret_value(), session=session)
        self.bot = bot
        i18n = i18n or I18n.load()
        limits = sender_limits or SenderLimits(group_max=settings.group_per_minute)
        self.store = gateway.store
        pace: Pace | None = None
        if shared_pace and isinstance(self.store, RedisBase):
            pace = RedisPace(self.store.redis, limits, bot_id=bot.id, prefix=self.store.prefix)
        self.sender = TelegramSender(bot, limits=limits, pace=pace)
        self.webhook_secret: str | None = None  # in webhook mode: the one given to setWebhook
        self.ctx = BotContext(
            gateway=gateway,
            registry=registry,
            i18n=i18n,
            sender=self.sender,
            renderer=Renderer(i18n),
            previews=settings.previews,
            skip_busy_group_notices=settings.group_notices == "auto",
            default_workflow=default_workflow if default_workflow in registry else _first(registry),
            limits=photo_limits or PhotoLimits(upload_max_bytes=gateway.limits.max_image_bytes),
        )
        self.dispatcher = build_dispatcher(self.ctx)
        self.consumer = EventConsumer(self.ctx, bot, preview_interval_s=preview_interval_s)
        self.polling_timeout = polling_timeout
        self.startup_backoff = startup_backoff or Backoff()
        self._tasks: list[asyncio.Task[Any]] = []
        self._side_tasks: list[asyncio.Task[None]] = []  # finish on their own; never stop the front end
        self._runner: web.AppRunner | None = None
        self._stopped = asyncio.Event()

    async def _retry(self, step: str, call: Callable[[], Awaitable[T]]) -> T:
        return await retry_startup("telegram", step, call, _transient, self.startup_backoff)

    async def start(self) -> None:
        """Identify the bot, register menu commands, start the sender, the consumer and polling/webhook.

        While Telegram is unreachable or answers 5xx the calls are retried (``frontend_start_retry``);
        a refused token raises :class:`StartupRefused`.
        """
        try:
            me = await self._retry("get_me", self.bot.get_me)
        except (TelegramUnauthorizedError, TelegramNotFound) as exc:  # Telegram's answers to a bad token
            raise StartupRefused("telegram", f"TELEGRAM_BOT_TOKEN was refused ({exc.message})") from None
        self.ctx.bot_id, self.ctx.bot_username = me.id, me.username or ""
        await self.sender.start()
        # Menu commands are a nicety: register them in the background, within the sender's limits.
        self._side_tasks.append(asyncio.create_task(self.set_commands(), name="telegram-commands"))
        self._tasks.append(asyncio.create_task(self.consumer.run(), name="telegram-events"))
        # Messages a stopped process left open: each brought to its job's true state (in the background).
        self._side_tasks.append(asyncio.create_task(self.consumer.reconcile(), name="telegram-reconcile"))
        if self.settings.mode == "webhook":
            await self._start_webhook()
        else:
            with contextlib.suppress(TelegramAPIError):
                await self._retry(
                    "delete_webhook", functools.partial(self.bot.delete_webhook, drop_pending_updates=False)
                )
            self._tasks.append(asyncio.create_task(self._poll(), name="telegram-polling"))
        log.info("telegram_started", bot=self.ctx.bot_username, mode=self.settings.mode)

    async def _poll(self) -> None:
        await self.dispatcher.start_polling(
            self.bot,
            polling_timeout=self.polling_timeout,
            handle_signals=False,
            close_bot_session=False,
            allowed_updates=self.dispatcher.resolve_used_update_types(),
        )

    async def _start_webhook(self) -> None:
        from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application

        configured = self.settings.webhook_secret.get_secret_value() if self.settings.webhook_secret else None
        if self.settings.webhook_url is None:
            raise ValueError("telegram.mode=webhook needs telegram.webhook_url")
        # Never open: no configured secret means a generated one (shared by the replicas through Redis).
        secret = await self._retry(
            "webhook_secret", functools.partial(webhook_secret, configured, self.store, self.bot.id)
        )
        self.webhook_secret = secret
        self.dispatcher.update.outer_middleware(OnceMiddleware(self.store, self.bot.id))
        app = web.Application()
        path = "/telegram/webhook"
        SimpleRequestHandler(self.dispatcher, self.bot, secret_token=secret).register(app, path=path)
        setup_application(app, self.dispatcher, bot=self.bot)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.settings.webhook_host, self.settings.webhook_port).start()
        set_webhook = functools.partial(
            register_webhook,
            self.bot,
            self.store,
            str(self.settings.webhook_url),
            secret,
            self.dispatcher.resolve_used_update_types(),
        )
        await self._retry("set_webhook", set_webhook)

    async def set_commands(self) -> None:
        """``setMyCommands`` for the default scope and once per shipped language (best effort)."""
        for code in self.ctx.i18n.locales:
            commands = [
                BotCommand(command=c, description=self.ctx.t(code, f"cmd.{c}")) for c in MENU_COMMANDS
            ]
            language = None if code == self.ctx.i18n.default else code.split("_")[0]
            if code == "zh_Hant":
                language = "zh"  # Telegram scopes by two-letter ISO 639-1 code
            send = functools.partial(
                self.sender.send, 0, functools.partial(self._set_commands, commands, language)
            )
            try:
                await self._retry("set_commands", send)
            except TelegramAPIError as exc:
                log.warning("set_commands_failed", language=code, description=exc.message)

    async def _set_commands(self, commands: list[BotCommand], language: str | None) -> bool:
        return await self.bot.set_my_commands(
            commands, scope=BotCommandScopeDefault(), language_code=language
        )

    async def stop(self) -> None:
        """Stop taking updates, let results in flight go out, close what we opened."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        with contextlib.suppress(RuntimeError):
            await self.dispatcher.stop_polling()
        if self._runner is not None:
            if not self.store.shared:  # other replicas may still serve the webhook: leave it to them
                with contextlib.suppress(TelegramAPIError):
                    await self.bot.delete_webhook()
            await self._runner.cleanup()
        await self.consumer.settle()
        for task in self._tasks:
            if task.get_name() == "telegram-events":
                task.cancel()
        await self.consumer.drain()
        tasks = [*self._tasks, *self._side_tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.sender.close()
        if self._own_bot:
            await self.bot.session.close()
        log.info("telegram_stopped")


def _transient(exc: BaseException) -> float | None:
    """Telegram unreachable, failing (5xx) or asking to wait: try again; anything else is final."""
    if isinstance(exc, TelegramRetryAfter):
        return float(exc.retry_after)
    if isinstance(exc, TelegramNetworkError | TelegramServerError):
        return 0.0
    return None


def _first(registry: WorkflowRegistry) -> str:
    names = registry.names()
    return names[0] if names else "txt2img"


async def run_telegram(
    settings: TelegramSettings,
    gateway: Gateway,
    registry: WorkflowRegistry,
    **options: Any,
) -> None:
    """Run the Telegram front end until cancelled (for ``comfybot run``)."""
    async with TelegramFrontend(settings, gateway, registry, **options) as frontend:
        await frontend.wait()
