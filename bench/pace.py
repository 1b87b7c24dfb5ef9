"""What sharing the Telegram sender's pace through Redis adds per call.

Sequential calls through :class:`bot.telegram.sender.TelegramSender` with a no-op operation (no network:
only the sender and its pace are measured), each to a new chat so no limit binds, once with the
in-process pace (:class:`LocalPace`) and once with :class:`RedisPace` against a local ``redis-server``
(AOF on, ``appendfsync everysec``). Also the bare ``RedisPace.take`` (one Lua round trip). The difference
of the two ``send`` runs is what a replica pays per Bot API call for the shared pace.

    .venv/bin/python -m bench.pace [--calls 5000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.common import machine, percentiles, say, write_results
from bot.telegram.pace import LocalPace, Pace, RedisPace
from bot.telegram.sender import SenderLimits, TelegramSender
from tests.conftest import RedisServer, free_port

WARMUP = 50
#: nothing binds: every call is measured, none waits for a window
OPEN = SenderLimits(per_chat_interval_s=0.0, group_max=10**9, global_max=10**9)
BOT_ID = 123456


async def _noop() -> None:
    return None


async def _sends(pace: Pace, calls: int, first_chat: int) -> list[float]:
    out: list[float] = []
    async with TelegramSender(None, limits=OPEN, pace=pace) as sender:
        for i in range(WARMUP + calls):
            t0 = time.perf_counter()
            await sender.send(first_chat + i, _noop)
            if i >= WARMUP:
                out.append((time.perf_counter() - t0) * 1000)
    return out


async def _takes(pace: RedisPace, calls: int, first_chat: int) -> list[float]:
    out: list[float] = []
    for i in range(WARMUP + calls):
        t0 = time.perf_counter()
        assert await pace.take(first_chat + i)
        if i >= WARMUP:
            out.append((time.perf_counter() - t0) * 1000)
        pace.done(first_chat + i, time.monotonic())
    await pace.close()
    return out


async def run(calls: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(port=free_port(), dir=Path(tmp), appendfsync="everysec")
        server.start()
        client = aioredis.from_url(server.url)
        try:
            say(f"local pace: {calls} sends")
            local = await _sends(LocalPace(OPEN), calls, 1)
            say(f"redis pace: {calls} sends")
            shared = await _sends(RedisPace(client, OPEN, bot_id=BOT_ID), calls, 10**6)
            say(f"redis pace: {calls} bare takes")
            takes = await _takes(RedisPace(client, OPEN, bot_id=BOT_ID), calls, 2 * 10**6)
            keys = await client.dbsize()
        finally:
            await client.aclose()
            server.stop()
    p_local, p_shared = percentiles(local), percentiles(shared)
    added = {k: round(p_shared[k] - p_local[k], 3) for k in ("p50", "p95", "p99")}
    return {
        "machine": machine(),
        "calls": calls,
        "send_local_ms": p_local,
        "send_redis_ms": p_shared,
        "added_per_call_ms": added,
        "take_redis_ms": percentiles(takes),
        "redis_keys_after": keys,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="500 calls")
    parser.add_argument("--name", default="pace")
    args = parser.parse_args()
    data = asyncio.run(run(500 if args.quick else args.calls))
    write_results(args.name, data)


if __name__ == "__main__":
    main()
