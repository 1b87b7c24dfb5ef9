"""Job quotas: at most N jobs per user per UTC hour and/or UTC day, by role.

Windows are fixed and aligned (an hour quota resets on the hour, a day quota at 00:00 UTC), so the refusal
can say when it resets. The store counts job ids (:class:`~gateway.store.Quotas`): all of a user's windows
are checked and counted in one atomic step, before the enqueue; a job the enqueue then refuses is given
back.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

from gateway.errors import LimitExceeded
from gateway.models import FailureCode, Role
from gateway.store import QuotaCounter, Quotas

Window = Literal["hour", "day"]
_SECONDS: dict[Window, int] = {"hour": 3600, "day": 86400}
_FORMAT: dict[Window, str] = {"hour": "%Y%m%d%H", "day": "%Y%m%d"}


def window_bucket(window: Window, now: float) -> str:
    """The window ``now`` falls in: ``YYYYMMDDHH`` or ``YYYYMMDD`` (UTC)."""
    return time.strftime(_FORMAT[window], time.gmtime(now))


def window_end(window: Window, now: float) -> float:
    """When the window ``now`` falls in ends (unix seconds): the next UTC hour or midnight."""
    size = _SECONDS[window]
    return (now // size + 1) * size


class QuotaExceeded(LimitExceeded):
    """A user used up a quota: ``window`` says which, ``retry_after_s`` when it resets."""

    def __init__(self, window: Window, limit: int, retry_after_s: float) -> None:
        super().__init__(
            f"quota of {limit} jobs per {window} used",
            code=FailureCode.QUOTA_EXCEEDED,
            retry_after_s=retry_after_s,
        )
        self.window: Window = window


@dataclass(frozen=True)
class QuotaPolicy:
    """``limits[role][window]``: jobs a user of that role may submit per window (absent: no limit)."""

    limits: Mapping[Role, Mapping[Window, int]] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return any(self.limits.values())

    def counters(self, user_id: str, role: Role, now: float) -> list[tuple[Window, QuotaCounter]]:
        return [
            (w, QuotaCounter(f"{w}:{window_bucket(w, now)}:{user_id}", n, window_end(w, now)))
            for w, n in sorted(self.limits.get(role, {}).items())
        ]

    async def take(self, store: Quotas, job_id: str, user_id: str, role: Role) -> list[str]:
        """Count the job in its user's windows; raises :class:`QuotaExceeded` when one is used up.
        Returns the keys counted (for :meth:`Quotas.quota_give_back`)."""
        now = time.time()
        counters = self.counters(user_id, role, now)
        if not counters:
            return []
        full = await store.quota_take(job_id, [c for _, c in counters])
        if full is not None:
            window, counter = counters[full]
            raise QuotaExceeded(window, counter.limit, max(1.0, counter.until - now))
        return [c.key for _, c in counters]


@asynccontextmanager
async def quota_counted(
    policy: QuotaPolicy | None, store: Quotas, job_id: str, user_id: str, role: Role
) -> AsyncIterator[None]:
    """Count the job (raising :class:`QuotaExceeded`) before the block; give it back if the block raises
    (another limit refused the job)."""
    keys = await policy.take(store, job_id, user_id, role) if policy is not None else []
    try:
        yield
    except BaseException:
        if keys:
            await store.quota_give_back(job_id, keys)
        raise


async def usage(store: Quotas, now: float | None = None) -> dict[str, dict[Window, int]]:
    """Jobs counted this hour and today, per user (users with none are absent)."""
    now = time.time() if now is None else now
    out: dict[str, dict[Window, int]] = {}
    for window in ("hour", "day"):
        prefix = f"{window}:{window_bucket(window, now)}:"
        for key, n in (await store.quota_counts(prefix)).items():
            out.setdefault(key[len(prefix) :], {})[window] = n
    return out


__all__ = ["QuotaExceeded", "QuotaPolicy", "Window", "quota_counted", "usage", "window_bucket", "window_end"]
