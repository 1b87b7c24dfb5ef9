"""Webhook mode for any number of replicas behind one URL.

* **Never open**: without ``TELEGRAM_WEBHOOK_SECRET`` a random secret is made at startup and given to
  ``setWebhook``; replicas sharing Redis share it (the first stores it with ``SET NX``, the others read it).
  Telegram then sends it in ``X-Telegram-Bot-Api-Secret-Token`` and any other POST gets 401.
* **Registered once**: with Redis, a replica whose ``getWebhookInfo`` already shows the same URL and update
  types, registered with the same secret (a fingerprint in Redis), does not call ``setWebhook`` again.
* **Handled once**: every update is claimed by its ``update_id`` in the store (:meth:`KeyValues.claim_once`,
  for a day, as long as Telegram keeps an update); a redelivery, or a load balancer's retry to another
  replica, is dropped (``telegram_update_duplicate``).

The secret is never logged; the keys are named by a hash of the bot id, never by the token.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.types import TelegramObject, Update

from core.logs import get_logger, register_secret
from gateway.redis_base import RedisBase, text
from gateway.store import KeyValues, Store

__all__ = ["UPDATE_TTL_S", "OnceMiddleware", "register_webhook", "webhook_secret"]

log = get_logger("telegram")

UPDATE_TTL_S = 24 * 3600.0  # Telegram keeps an undelivered update for a day

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


def _key(store: RedisBase, bot_id: int, name: str) -> str:
    digest = hashlib.sha256(f"telegram:{bot_id}".encode()).hexdigest()[:16]
    return f"{store.prefix}tgwebhook:{digest}:{name}"


async def webhook_secret(configured: str | None, store: Store, bot_id: int) -> str:
    """The configured secret, else one shared by every replica of the bot (Redis), else a new one.
    A generated secret is registered with the logs' redaction, like a configured one."""
    if configured:
        return configured
    secret = secrets.token_urlsafe(32)  # 43 of A-Za-z0-9_-: within Telegram's rules
    first = True
    if isinstance(store, RedisBase):
        key = _key(store, bot_id, "secret")
        first = bool(await store.redis.set(key, secret, nx=True))
        stored = await store.redis.get(key)
        secret = text(stored) if stored is not None else secret
    register_secret(secret)
    log.info("telegram_webhook_secret_generated", shared=isinstance(store, RedisBase), first=first)
    return secret


async def register_webhook(bot: Bot, store: Store, url: str, secret: str, allowed: list[str]) -> bool:
    """``setWebhook`` unless Telegram already has this webhook (with Redis: same URL, update types and
    secret); True when it was called."""
    fingerprint = hashlib.sha256("\n".join([url, secret, *sorted(allowed)]).encode()).hexdigest()
    redis = store.redis if isinstance(store, RedisBase) else None
    key = _key(store, bot.id, "registered") if isinstance(store, RedisBase) else ""
    if redis is not None:
        info = await bot.get_webhook_info()
        same_types = info.allowed_updates is None or sorted(info.allowed_updates) == sorted(allowed)
        if info.url == url and same_types and text(await redis.get(key) or b"") == fingerprint:
            log.info("telegram_webhook_kept", detail="already registered by a replica")
            return False
    await bot.set_webhook(url, secret_token=secret, allowed_updates=allowed)
    if redis is not None:
        await redis.set(key, fingerprint)
    log.info("telegram_webhook_set", shared=redis is not None)
    return True


class OnceMiddleware(BaseMiddleware):
    """Drops an update whose ``update_id`` was already claimed by this or another replica."""

    def __init__(self, store: KeyValues, bot_id: int, ttl_s: float = UPDATE_TTL_S) -> None:
        self.store, self.bot_id, self.ttl_s = store, bot_id, ttl_s

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        if isinstance(event, Update):
            try:
                first = await self.store.claim_once(f"tg-update:{self.bot_id}:{event.update_id}", self.ttl_s)
            except Exception as exc:  # the store cannot say: handle it (a duplicate beats a lost update)
                log.warning("update_claim_failed", error=repr(exc))
                first = True
            if not first:
                log.info("telegram_update_duplicate", update_id=event.update_id)
                return None
        return await handler(event, data)
