"""RedisPace: two processes' paces (two clients, one real redis-server) keep one set of limits; two
senders of one bot, each with its own, together keep Telegram's limits (the fake Bot API enforces them)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial

import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from bot.telegram.pace import RedisPace, pace_prefix
from bot.telegram.sender import SenderLimits, TelegramSender
from tests.conftest import RedisServer
from tests.fakes.telegram import DEFAULT_TOKEN, FakeTelegram

BOT_ID = int(DEFAULT_TOKEN.split(":")[0])
LIMITS = SenderLimits(
    per_chat_interval_s=0.2, group_max=3, group_window_s=30.0, global_max=5, global_window_s=30.0
)

pytestmark = pytest.mark.redis


@pytest.fixture
async def clients(redis_server: RedisServer) -> AsyncIterator[tuple[aioredis.Redis, aioredis.Redis]]:
    a, b = aioredis.from_url(redis_server.url), aioredis.from_url(redis_server.url)
    try:
        yield a, b
    finally:
        await a.aclose()
        await b.aclose()


def _paces(clients: tuple[aioredis.Redis, aioredis.Redis]) -> tuple[RedisPace, RedisPace]:
    a, b = clients
    return RedisPace(a, LIMITS, bot_id=BOT_ID), RedisPace(b, LIMITS, bot_id=BOT_ID)


async def _take_when_ready(pace: RedisPace, chat_id: int) -> None:
    """What the sender does: wait until its pace says the chat is ready, try, repeat."""
    loop = asyncio.get_running_loop()
    for _ in range(100):
        if await pace.take(chat_id):
            return
        await asyncio.sleep(max(0.0, pace.ready_at(chat_id, loop.time()) - loop.time()))
    raise AssertionError(f"chat {chat_id} never became free")


async def test_a_chat_is_one_at_a_time_and_spaced_across_processes(
    clients: tuple[aioredis.Redis, aioredis.Redis],
) -> None:
    a, b = _paces(clients)
    assert await a.take(42)
    assert not await b.take(42), "the other process's call is in flight"
    assert b.ready_at(42, 0.0) > 0.0, "and the refusal says when to look again"
    assert await b.take(43), "another chat is free"
    a.done(42, asyncio.get_running_loop().time())
    b.done(43, asyncio.get_running_loop().time())
    await a.close()
    assert not await b.take(42), "per_chat_interval_s after the completion"
    await _take_when_ready(b, 42)
    b.done(42, 0.0)
    await b.close()


async def test_a_group_window_is_shared(clients: tuple[aioredis.Redis, aioredis.Redis]) -> None:
    a, b = _paces(clients)
    group = -100_55
    for pace in (a, b, a):  # three of the group's three, from both processes
        await _take_when_ready(pace, group)
        pace.done(group, 0.0)
        await pace.close()
    assert not await b.take(group)
    assert b.ready_at(group, asyncio.get_running_loop().time()) > asyncio.get_running_loop().time() + 20


async def test_the_global_window_is_shared(clients: tuple[aioredis.Redis, aioredis.Redis]) -> None:
    a, b = _paces(clients)
    for chat in range(1, 6):
        pace = a if chat % 2 else b
        assert await pace.take(chat)
        pace.done(chat, 0.0)
    await a.close()
    await b.close()
    assert not await a.take(6), "five of five in the window: the bot waits, whichever process asks"
    now = asyncio.get_running_loop().time()
    assert a.global_ready_at(now, 0) is not None
    assert (a.global_ready_at(now, 0) or 0.0) > now + 20


async def test_a_retry_after_in_one_process_holds_the_other(
    clients: tuple[aioredis.Redis, aioredis.Redis],
) -> None:
    a, b = _paces(clients)
    assert await a.take(7)
    a.done(7, 0.0)
    assert not a.retry_after(7, 30, 0.0), "one chat's 429 is that chat's"
    await a.close()
    assert not await b.take(7), "the other replica waits out the chat's retry_after"
    assert await b.take(8), "other chats do not"
    b.done(8, 0.0)
    a.retry_after(9, 30, 0.0)  # a second chat within the global window: the bot-wide limit
    await a.close()
    assert not await b.take(10), "everyone waits"


async def test_keys_are_named_by_a_hash_of_the_bot_id(
    clients: tuple[aioredis.Redis, aioredis.Redis],
) -> None:
    a, _ = _paces(clients)
    assert await a.take(-100_1)
    a.done(-100_1, 0.0)
    await a.close()
    keys = [k.decode() async for k in clients[0].scan_iter("*")]
    assert keys and all(k.startswith(pace_prefix(BOT_ID)) for k in keys)
    assert not [k for k in keys if DEFAULT_TOKEN in k or str(BOT_ID) in k]
    ttls = [await clients[0].pttl(k) for k in keys]
    assert all(t > 0 for t in ttls), "every key expires on its own"


async def test_without_redis_the_local_pace_goes_on(redis_server: RedisServer) -> None:
    client = aioredis.from_url(redis_server.url)
    pace = RedisPace(client, LIMITS, bot_id=BOT_ID)
    redis_server.stop(kill=True)
    try:
        with capture_logs() as logs:
            assert await pace.take(1), "a Redis outage must not stop every send"
        assert [e for e in logs if e["event"] == "telegram_pace_unavailable"]
        pace.done(1, 0.0)
        await pace.close()
    finally:
        await client.aclose()


async def test_two_senders_of_one_bot_send_one_chat_no_faster_than_one(
    clients: tuple[aioredis.Redis, aioredis.Redis],
) -> None:
    limits = SenderLimits()  # Telegram's: one a second per chat
    async with FakeTelegram() as fake:
        bots = [fake.make_bot(), fake.make_bot()]
        paces = [RedisPace(c, limits, bot_id=BOT_ID) for c in clients]
        async with (
            TelegramSender(bots[0], limits=limits, pace=paces[0]) as one,
            TelegramSender(bots[1], limits=limits, pace=paces[1]) as two,
        ):
            sends = [
                sender.send(42, partial(bot.send_message, 42, f"{name} {i}"))
                for i in range(3)
                for sender, bot, name in ((one, bots[0], "one"), (two, bots[1], "two"))
            ]
            await asyncio.gather(*sends)
        assert len(fake.bot_messages(42)) == 6, "every send once"
        assert fake.count_429 == 0, [c.description for c in fake.calls if c.status == 429]
