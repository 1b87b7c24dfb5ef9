"""SIGTERM of ``comfybot run`` (a real subprocess, fake Telegram, fake ComfyUI): running prompts get
``COMFYBOT_SHUTDOWN_GRACE_S`` to finish and their results are sent before the process exits; what is
left is kept by the durable store with a "restarting, your job is kept" message and continues after
the restart; with the memory store, which cannot keep it, it ends with a failure text instead of a
message that waits forever."""

from __future__ import annotations

import json
import signal
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.fakes.comfyui import running_fake_comfyui
from tests.fakes.telegram import FakeTelegram, StoredMessage
from tests.test_embedded_restart_e2e import _env, comfybot_run

RUNNING, WAITING = 5201, 5202  # one chat each (chat id = user id); capacity 1: one runs, one waits


def _only(telegram: FakeTelegram, chat: int) -> StoredMessage:
    msgs = telegram.bot_messages(chat)
    assert len(msgs) == 1, [(m.kind, m.text or m.caption) for m in msgs]
    return msgs[0]


def _buttons(msg: StoredMessage) -> list[str]:
    rows = (msg.reply_markup or {}).get("inline_keyboard", [])
    return [b["text"] for row in rows for b in row]


def _events(root: Path) -> list[dict[str, object]]:
    lines = [line for f in sorted((root / "logs").glob("*.log")) for line in f.read_text().splitlines()]
    return [json.loads(line) for line in lines if line.startswith("{")]


async def _submit_two(telegram: FakeTelegram, comfy_prompts: Sequence[object]) -> None:
    telegram.send_text(RUNNING, RUNNING, "/generate a lighthouse at dusk --seed 1")
    await telegram.wait_until(lambda: len(comfy_prompts) == 1, timeout=60)
    telegram.send_text(WAITING, WAITING, "/generate a barn in snow --seed 2")
    await telegram.wait_until(
        lambda: any("queue" in (m.text or "") for m in telegram.bot_messages(WAITING)), timeout=60
    )


@pytest.mark.timeout(300)
async def test_a_result_due_within_the_grace_period_is_sent_before_exit(tmp_path: Path) -> None:
    async with FakeTelegram() as telegram, running_fake_comfyui(run_time_s=2.5) as comfy:
        env = _env(tmp_path, telegram, comfy) | {"COMFYBOT_SHUTDOWN_GRACE_S": "60"}
        async with comfybot_run(env, telegram) as proc:
            telegram.send_text(RUNNING, RUNNING, "/generate a lighthouse at dusk --seed 1")
            await telegram.wait_until(lambda: len(comfy.received_prompts) == 1, timeout=60)
            proc.send_signal(signal.SIGTERM)
            assert await proc.wait() == 0
        msg = _only(telegram, RUNNING)
        assert msg.kind == "photo", "the result went out before the process exited"
        names = [e["event"] for e in _events(tmp_path)]
        last_sent = len(names) - 1 - names[::-1].index("response_sent")
        assert names.index("shutdown_started") < names.index("job_succeeded") < last_sent
        assert last_sent < names.index("comfybot_stopped")


@pytest.mark.timeout(300)
async def test_jobs_left_at_the_end_of_the_grace_are_kept_and_said_so(tmp_path: Path) -> None:
    async with FakeTelegram() as telegram, running_fake_comfyui(run_time_s=8.0) as comfy:
        env = _env(tmp_path, telegram, comfy) | {"COMFYBOT_SHUTDOWN_GRACE_S": "0.5"}
        async with comfybot_run(env, telegram) as proc:
            await _submit_two(telegram, comfy.received_prompts)
            proc.send_signal(signal.SIGTERM)
            assert await proc.wait() == 0
        for chat in (RUNNING, WAITING):
            msg = _only(telegram, chat)
            assert "restarting" in (msg.text or msg.caption or ""), msg.text
            assert any("Cancel" in b for b in _buttons(msg)), "still cancellable after the restart"
        held = [e for e in _events(tmp_path) if e["event"] == "job_held"]
        assert sorted(bool(e["running"]) for e in held) == [False, True]
        assert all(e.get("request_id") for e in held)
        assert not comfy.interrupts, "a kept job's prompt keeps running for the restart to pick up"

        comfy.run_time_s = 0.5
        async with comfybot_run(env, telegram):
            await telegram.wait_until(
                lambda: all(
                    [m.kind for m in telegram.bot_messages(c)] == ["photo"] for c in (RUNNING, WAITING)
                ),
                timeout=120,
            )
        assert len(comfy.received_prompts) == 2, "the running prompt was resumed, not run again"


@pytest.mark.timeout(300)
async def test_the_memory_store_tells_each_unfinished_job_it_was_stopped(tmp_path: Path) -> None:
    async with FakeTelegram() as telegram, running_fake_comfyui(run_time_s=30.0) as comfy:
        env = _env(tmp_path, telegram, comfy) | {
            "COMFYBOT_SHUTDOWN_GRACE_S": "0.5",
            "COMFYBOT_STORE": "memory",
        }
        async with comfybot_run(env, telegram) as proc:
            await _submit_two(telegram, comfy.received_prompts)
            proc.send_signal(signal.SIGTERM)
            assert await proc.wait() == 0
        for chat in (RUNNING, WAITING):
            msg = _only(telegram, chat)
            assert "restarted before your picture was ready" in (msg.text or ""), msg.text
            assert not any("Cancel" in b for b in _buttons(msg)), "nothing left to cancel"
        failed = [e for e in _events(tmp_path) if e["event"] == "job_failed"]
        assert sorted(str(e["code"]) for e in failed) == ["shutting_down", "shutting_down"]
        assert len(comfy.interrupts) == 1, "the running prompt is stopped: nobody would collect it"
