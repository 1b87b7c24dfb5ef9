"""Running a front end: ``async with`` it, and wait until it is stopped or one of its tasks dies."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Self

__all__ = ["FrontendLifecycle", "wait_stopped_or_failed"]


class FrontendLifecycle:
    """``async with frontend:`` is ``start()`` … ``stop()``; a start that fails part way (a refused token,
    a stop while the platform was still unreachable) is stopped before the error goes on. ``wait`` runs
    until ``stop`` sets ``_stopped``, or raises the error of the first of ``_tasks`` that dies."""

    _stopped: asyncio.Event
    _tasks: list[asyncio.Task[Any]]

    async def wait(self) -> None:
        """Until :meth:`stop`, or until a task of the front end (its connection, its consumer) dies."""
        await wait_stopped_or_failed(self._stopped, self._tasks)

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


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
