"""The embedded default (no Redis) loses nothing when its one process is killed: ``comfybot run`` in a
real subprocess, SIGKILLed with jobs queued, running and finished-but-not-sent, then started again on
the same data dir. Every job ends in exactly one result photo, no progress message is left behind, no
prompt runs twice, and the result buttons still work after the restart."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.conftest import child_env
from tests.fakes.comfyui import FakeComfyUI, running_fake_comfyui
from tests.fakes.telegram import DEFAULT_TOKEN, FakeTelegram

USERS = [5101, 5102, 5103, 5104, 5105]  # each in their own chat (chat id = user id)


def _env(tmp_path: Path, telegram: FakeTelegram, comfy: FakeComfyUI) -> dict[str, str]:
    return child_env(
        tmp_path,
        {
            "TELEGRAM_BOT_TOKEN": DEFAULT_TOKEN,
            "TELEGRAM_API_BASE": telegram.url,
            "TELEGRAM_PREVIEWS": "false",
            "COMFYUI_URLS": comfy.url,
            "COMFYUI_CAPACITY": "1",
        },
    )


@asynccontextmanager
async def comfybot_run(
    env: dict[str, str], telegram: FakeTelegram
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``comfybot run`` until the block ends (then SIGTERM, unless the block killed it already)."""
    polls = len(telegram.calls_of("getUpdates"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "comfybot", "run", "--quiet", env=env, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        await telegram.wait_until(lambda: len(telegram.calls_of("getUpdates")) > polls, timeout=120)
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), timeout=60)


def _photos(telegram: FakeTelegram, chat: int) -> list[object]:
    return [m for m in telegram.bot_messages(chat) if m.kind == "photo"]


def _settled(telegram: FakeTelegram) -> bool:
    """Every chat shows its result and nothing else."""
    return all(len(msgs := telegram.bot_messages(u)) == 1 and msgs[0].kind == "photo" for u in USERS)


@pytest.mark.timeout(300)  # two cold interpreters importing aiogram on a loaded 2-core machine
async def test_sigkill_of_the_embedded_process_loses_no_job(tmp_path: Path) -> None:
    async with FakeTelegram() as telegram, running_fake_comfyui(run_time_s=1.5) as comfy:
        env = _env(tmp_path, telegram, comfy)
        async with comfybot_run(env, telegram) as proc:
            telegram.fail_next("sendPhoto", 500, "Internal Server Error: injected", times=1000)
            for user in USERS:
                telegram.send_text(user, user, f"/generate a harbour in fog number {user} --seed {user}")
            # The first result is ready but cannot be sent; the next runs; the rest wait in the queue.
            await telegram.wait_until(lambda: telegram.calls_of("sendPhoto", ok=False), timeout=60)
            await telegram.wait_until(lambda: len(comfy.received_prompts) >= 2, timeout=60)
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        telegram.clear_faults()
        assert not any(_photos(telegram, u) for u in USERS)

        async with comfybot_run(env, telegram):
            await telegram.wait_until(lambda: _settled(telegram), timeout=120)
            seeds = [p["extra_data"]["request_id"] for p in comfy.received_prompts]
            assert len(seeds) == len(set(seeds)) == len(USERS), "each prompt ran once, none lost"

            # The buttons of a result made before the kill work after it: Reroll runs the same prompt.
            first = telegram.bot_messages(USERS[0])[0]
            reroll = next(b for row in first.buttons for b in row if "Reroll" in b["text"])
            telegram.press_button(USERS[0], USERS[0], first.message_id, reroll["callback_data"])
            await telegram.wait_until(lambda: len(_photos(telegram, USERS[0])) == 2, timeout=60)
            assert f"number {USERS[0]}" in json.dumps(comfy.received_prompts[-1]["prompt"])
