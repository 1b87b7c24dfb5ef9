"""Chaos with real processes: every accepted job ends in exactly one visible outcome.

Redis (AOF), a Telegram front end (``comfybot run`` without ComfyUI), three workers (``python -m gateway``)
and three fake ComfyUI servers; every process has its own data dir, as if each ran on its own machine.
While 100 users each ask for a picture, workers are SIGKILLed and restarted at random (>= 20 kills),
the front end is SIGKILLed and restarted three times, and Redis is restarted once. At the end every chat
shows one result photo (or one failure text) and nothing else — no progress message left behind — and no
prompt reached ComfyUI twice. The one exception is the documented window: a front end killed after Telegram
took an upload and before the answer reached it sends that picture again after its restart; each such
double is checked to be one no front-end process saw accepted (and there are few: only uploads in flight
at a kill).

The front end is killed only once the jobs sent so far show their queued message: a kill between
Telegram handing over an update and its job being queued is the platform's own at-most-once window
(aiogram confirms an update when it asks for the next batch), not a delivery of ours.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path

import pytest

from tests.bot.conftest import CHECKPOINTS
from tests.conftest import RedisServer, child_env, unacknowledged_doubles
from tests.fakes.comfyui import FakeComfyUI, running_fake_comfyui
from tests.fakes.telegram import DEFAULT_TOKEN, FakeTelegram

ROOT = Path(__file__).resolve().parents[1]
JOBS = 100
WORKERS = 3
WORKER_KILLS = 20
FRONT_END_KILLS = 3
USERS = list(range(8000, 8000 + JOBS))  # one job each, each in their own chat


class Processes:
    """The comfybot processes of the run, started and SIGKILLed by name."""

    def __init__(self, tmp_path: Path, redis: RedisServer, telegram: FakeTelegram, comfy: list[FakeComfyUI]):
        self.tmp_path, self.redis, self.telegram, self.comfy = tmp_path, redis, telegram, comfy
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.kills: Counter[str] = Counter()

    def _env(self, name: str) -> dict[str, str]:
        env = child_env(
            self.tmp_path / "hosts" / name,  # every process its own data dir: its own machine
            {
                "PYTHONPATH": str(ROOT),
                "REDIS_URL": self.redis.url,
                "COMFYBOT_QUEUE_CAP": "1000",
                "COMFYUI_WS_STALL_TIMEOUT": "3",
            },
        )
        if name == "frontend":
            env |= {"TELEGRAM_BOT_TOKEN": DEFAULT_TOKEN, "TELEGRAM_API_BASE": self.telegram.url}
            env["TELEGRAM_PREVIEWS"] = "false"
        else:
            env["COMFYUI_URLS"] = ",".join(c.url for c in self.comfy)
            env["COMFYUI_CAPACITY"] = "1"
        return env

    async def start(self, name: str) -> None:
        args = (
            ["-m", "comfybot", "run", "--quiet"]
            if name == "frontend"
            else ["-m", "gateway", "--lease-s", "1.5"]
        )
        polls = len(self.telegram.calls_of("getUpdates"))
        self.procs[name] = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            cwd=ROOT,
            env=self._env(name),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        if name == "frontend":
            await self.telegram.wait_until(
                lambda: len(self.telegram.calls_of("getUpdates")) > polls, timeout=120
            )

    async def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        self.kills[name.rstrip("0123456789")] += 1

    async def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
            await proc.wait()


@asynccontextmanager
async def cluster(
    tmp_path: Path, redis: RedisServer
) -> AsyncIterator[tuple[Processes, FakeTelegram, list[FakeComfyUI]]]:
    async with AsyncExitStack() as stack:
        telegram = await stack.enter_async_context(FakeTelegram())
        comfy = [
            await stack.enter_async_context(running_fake_comfyui(checkpoints=CHECKPOINTS, run_time_s=0.6))
            for _ in range(3)
        ]
        procs = Processes(tmp_path, redis, telegram, comfy)
        try:
            for i in range(WORKERS):
                await procs.start(f"worker{i}")
            await procs.start("frontend")
            yield procs, telegram, comfy
        finally:
            await procs.stop_all()


def _shown(telegram: FakeTelegram, user: int) -> bool:
    """The job message is in the chat (the job was accepted)."""
    return bool(telegram.bot_messages(user))


def _all_shown(telegram: FakeTelegram, users: list[int]) -> bool:
    return all(_shown(telegram, u) for u in users)


def _ended(telegram: FakeTelegram, user: int) -> bool:
    """One outcome and nothing else: a photo (possibly twice, see :func:`_unacknowledged`) or a failure."""
    msgs = telegram.bot_messages(user)
    photos = [m for m in msgs if m.kind == "photo"]
    if photos:
        return len(photos) == len(msgs)
    return len(msgs) == 1 and "❌" in (msgs[0].text or "")


async def _chaos_workers(procs: Processes, rng: random.Random, stop: asyncio.Event) -> None:
    """Kill a random worker and start it again, over and over, until ``stop`` and at least
    :data:`WORKER_KILLS` kills."""
    while not stop.is_set() or procs.kills["worker"] < WORKER_KILLS:
        await asyncio.sleep(rng.uniform(0.3, 1.2))
        name = f"worker{rng.randrange(WORKERS)}"
        if name in procs.procs:
            await procs.kill(name)
            await procs.start(name)


@pytest.mark.redis
@pytest.mark.timeout(900)
async def test_kills_of_every_process_lose_and_duplicate_nothing(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    rng = random.Random(20261203)
    async with cluster(tmp_path, redis_server) as (procs, telegram, comfy):
        stop = asyncio.Event()
        chaos = asyncio.create_task(_chaos_workers(procs, rng, stop))
        batches = [USERS[i : i + JOBS // 4] for i in range(0, JOBS, JOBS // 4)]
        for n, batch in enumerate(batches):
            for user in batch:
                telegram.send_text(user, user, f"/generate a lighthouse number {user} --steps 8")
            await telegram.wait_until(partial(_all_shown, telegram, batch), timeout=180)
            if n == 1:
                await asyncio.to_thread(redis_server.restart)
            if n < FRONT_END_KILLS:
                await asyncio.sleep(rng.uniform(0.2, 1.5))  # results are in flight to the chat
                await procs.kill("frontend")
                await procs.start("frontend")
        stop.set()
        await chaos
        try:
            await telegram.wait_until(lambda: all(_ended(telegram, u) for u in USERS), timeout=240)
        except TimeoutError:
            stuck = {
                u: [(m.kind, (m.text or m.caption or "")[:50]) for m in telegram.bot_messages(u)]
                for u in USERS
            }
            raise AssertionError({u: m for u, m in stuck.items() if not _ended(telegram, u)}) from None

        twice = [u for u in USERS if len(telegram.bot_messages(u)) > 1]
        log_dir = tmp_path / "hosts" / "frontend" / "logs"
        assert unacknowledged_doubles(log_dir, twice) == twice, (
            "a picture the front end knew it had sent went again"
        )
        assert len(twice) <= JOBS // 10, f"{len(twice)} results sent twice"
        prompts = Counter(p["extra_data"]["request_id"] for c in comfy for p in c.received_prompts)
        photos = sum(1 for u in USERS if telegram.bot_messages(u)[0].kind == "photo")
    assert procs.kills["worker"] >= WORKER_KILLS and procs.kills["frontend"] == FRONT_END_KILLS
    assert [rid for rid, n in prompts.items() if n > 1] == [], "a prompt ran twice"
    assert len(prompts) <= JOBS
    assert photos >= JOBS * 0.9, f"only {photos} of {JOBS} jobs succeeded"
