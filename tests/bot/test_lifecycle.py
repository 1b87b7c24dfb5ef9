"""wait_stopped_or_failed: a front end's wait() ends on stop, and a dying task's error reaches the caller."""

from __future__ import annotations

import asyncio

import pytest

from bot.lifecycle import wait_stopped_or_failed


async def test_returns_when_stopped() -> None:
    stopped = asyncio.Event()
    forever = asyncio.create_task(asyncio.Event().wait())
    waiting = asyncio.create_task(wait_stopped_or_failed(stopped, [forever]))
    stopped.set()
    await waiting
    assert not forever.done()
    forever.cancel()


async def test_raises_the_error_of_a_task_that_died() -> None:
    async def polling() -> None:
        raise ConnectionError("polling died")

    task = asyncio.create_task(polling())
    with pytest.raises(ConnectionError, match="polling died"):
        await wait_stopped_or_failed(asyncio.Event(), [task])
