"""A busy group: eight people ask for a picture at once, the workers finish every job while the sender
is still pacing the results to Telegram's 20 messages a minute per group, and the front end (a real
``comfybot run`` process, Redis shared with a worker) is SIGKILLed then. After its restart every one of
the eight gets exactly one result photo, as a reply to their own command, and nothing else is left in
the chat. (Before at-least-once events this lost all eight.)"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from comfy import ComfyClient
from comfy.workflows import load_workflows
from gateway.app import WorkerOptions, run_gateway
from gateway.blobs import RedisBlobs
from gateway.redis_store import RedisStore
from gateway.storage import ImageStore
from tests.bot.conftest import CHECKPOINTS
from tests.conftest import RedisServer, child_env
from tests.fakes.comfyui import running_fake_comfyui
from tests.fakes.telegram import DEFAULT_TOKEN, FakeTelegram

ROOT = Path(__file__).resolve().parents[1]
GROUP = -100_4242
USERS = list(range(4301, 4309))


@asynccontextmanager
async def front_end(
    tmp_path: Path, redis: RedisServer, telegram: FakeTelegram
) -> AsyncIterator[asyncio.subprocess.Process]:
    env = child_env(
        tmp_path / "frontend",
        {
            "PYTHONPATH": str(ROOT),
            "REDIS_URL": redis.url,
            "TELEGRAM_BOT_TOKEN": DEFAULT_TOKEN,
            "TELEGRAM_API_BASE": telegram.url,
            "TELEGRAM_PREVIEWS": "false",
        },
    )
    polls = len(telegram.calls_of("getUpdates"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "comfybot",
        "run",
        "--quiet",
        cwd=ROOT,
        env=env,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await telegram.wait_until(lambda: len(telegram.calls_of("getUpdates")) > polls, timeout=120)
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), timeout=60)


def _photos(telegram: FakeTelegram) -> list[object]:
    return [m for m in telegram.bot_messages(GROUP) if m.kind == "photo"]


@pytest.mark.redis
@pytest.mark.timeout(300)
async def test_paced_group_results_survive_a_front_end_kill(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    registry = load_workflows([])
    async with (
        FakeTelegram() as telegram,
        running_fake_comfyui(checkpoints=CHECKPOINTS, run_time_s=0.2) as comfy,
        aiohttp.ClientSession() as session,
        RedisStore(redis_server.url) as store,
        ComfyClient(comfy.url, session, name="comfy0") as client,
        run_gateway(
            store,
            registry,
            ImageStore(tmp_path / "worker", shared=RedisBlobs(store)),
            [client],
            capacity=4,
            options=WorkerOptions(lease_s=2),
        ) as worker,
    ):
        async with front_end(tmp_path, redis_server, telegram) as proc:
            commands = {
                user: telegram.send_text(
                    user, GROUP, f"/generate a kite number {user}", chat_type="supergroup"
                )
                for user in USERS
            }
            # Each command has its job message: past the windows that are Telegram's, not ours (an update
            # handed over but not yet queued; a job message sent but not yet recorded as the job's view).
            await telegram.wait_until(lambda: len(telegram.bot_messages(GROUP)) >= len(USERS), timeout=120)
            # Every job is done at the workers; the group's budget holds most results back in the sender.
            await telegram.wait_until(lambda: len(comfy.history) == len(USERS), timeout=120)
            await asyncio.sleep(1.0)  # the Succeeded events reach the front end, which queues the sends
            sent_before_kill = len(_photos(telegram))
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        assert sent_before_kill < len(USERS), "the kill must land while results are still being paced"
        assert worker.worker is not None

        async with front_end(tmp_path, redis_server, telegram):
            await telegram.wait_until(lambda: len(_photos(telegram)) >= len(USERS), timeout=240)
            await telegram.wait_until(lambda: len(telegram.bot_messages(GROUP)) == len(USERS), timeout=120)
        photos = _photos(telegram)
        assert len(photos) == len(USERS), "each result once"
        replies = sorted(m.reply_to_message_id for m in photos)  # type: ignore[attr-defined]
        assert replies == sorted(c.message_id for c in commands.values()), "each to its own command"
        assert len(comfy.received_prompts) == len(USERS), "no prompt ran twice"
