"""Starting a front end against a platform that may be down for a while.

A startup call (Telegram's ``getMe``, Discord's login...) that fails on the network or with a 5xx is
retried with capped exponential backoff and jitter, logged ``frontend_start_retry``; the process's
workers go on meanwhile. A refused token is :class:`StartupRefused`: one line, and the process exits.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from core.logs import get_logger

__all__ = ["Backoff", "StartupRefused", "Transient", "retry_startup"]

log = get_logger("bot")

T = TypeVar("T")

#: How long a failed call asks to wait before the next try (0: no wish), or None: do not retry it.
Transient = Callable[[BaseException], float | None]


class StartupRefused(Exception):
    """The platform refused the front end for good (a bad token): retrying cannot help."""

    def __init__(self, platform: str, reason: str) -> None:
        super().__init__(f"{platform}: {reason}")
        self.platform = platform
        self.reason = reason


@dataclass(frozen=True)
class Backoff:
    """Delays of ``initial_s`` doubling up to ``cap_s``, each drawn from its upper half (jitter)."""

    initial_s: float = 1.0
    cap_s: float = 60.0

    def delay(self, attempt: int) -> float:
        """The pause after failed attempt number ``attempt`` (1 for the first)."""
        ceiling = min(self.cap_s, self.initial_s * 2 ** min(attempt - 1, 30))
        return random.uniform(ceiling / 2, ceiling)


async def retry_startup(
    platform: str, step: str, call: Callable[[], Awaitable[T]], transient: Transient, backoff: Backoff
) -> T:
    """``await call()`` until it succeeds; a failure ``transient`` does not accept is raised at once."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except Exception as exc:
            wish = transient(exc)
            if wish is None:
                raise
            delay = max(wish, backoff.delay(attempt))
            log.warning(
                "frontend_start_retry",
                platform=platform,
                step=step,
                attempt=attempt,
                delay_s=round(delay, 2),
                error=f"{type(exc).__name__}: {exc}"[:300],
            )
            await asyncio.sleep(delay)
