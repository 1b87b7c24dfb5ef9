"""Running a front end: wait until it is stopped, or until one of its tasks dies."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

__all__ = ["wait_stopped_or_failed"]


async def wait_stopped_or_failed(stopped: asyncio.Event, tasks: Sequence[asyncio.Task[object]]) -> None:
    """Return when ``stopped`` is set; raise the error of the first of ``tasks`` that fails before."""
    waiter = asyncio.ensure_future(stopped.wait())
    try:
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    for task in done:
        if task is not waiter and not task.cancelled() and (error := task.exception()) is not None:
            raise error
