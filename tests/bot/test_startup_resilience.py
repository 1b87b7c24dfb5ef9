"""Telegram unreachable or failing at startup: the front end retries with backoff while the worker goes on;
a refused token stops ``comfybot run`` with one line.

Regression: a Telegram API that refused connections or answered 5xx for a few seconds at startup killed
the whole process (exit 1, traceback), its workers included.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from structlog.testing import capture_logs

from bot.startup import Backoff
from bot.telegram.app import run_telegram
from comfy import ComfyClient
from comfy.workflows import WorkflowRegistry
from core.config import TelegramSettings
from gateway.app import run_gateway
from gateway.memory import MemoryStore
from gateway.models import JobRequest, JobState
from gateway.service import Accepted, Gateway
from gateway.storage import ImageStore
from tests.bot.conftest import CHECKPOINTS, FAST
from tests.conftest import child_env, free_port
from tests.fakes.comfyui import running_fake_comfyui
from tests.fakes.telegram import DEFAULT_TOKEN, FakeTelegram

QUICK = Backoff(initial_s=0.05, cap_s=0.2)
USER = CHAT = 515


def retries(logs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [e for e in logs if e["event"] == "frontend_start_retry" and e["platform"] == "telegram"]


async def wait_for(condition: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(1000):  # polled: the state is in the store and the logs, which signal nothing
        if await condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in 20 s")


async def api_job_done(gateway: Gateway) -> None:
    """A job submitted by another front end (the HTTP API) runs to its end meanwhile."""
    req = JobRequest(
        platform="http", user_id="api-user", chat_id="api", workflow="txt2img", params={"prompt": "a boat"}
    )
    accepted = await gateway.submit(req)
    assert isinstance(accepted, Accepted), accepted

    async def done() -> bool:
        record = await gateway.get_job(accepted.job_id)
        return record is not None and record.state is JobState.SUCCEEDED

    await wait_for(done)


async def test_telegram_down_at_startup_is_retried_and_the_worker_goes_on(
    data_dir: Path, registry: WorkflowRegistry
) -> None:
    port = free_port()  # nothing listens here yet: connections are refused
    async with (
        running_fake_comfyui(checkpoints=CHECKPOINTS) as comfy,
        aiohttp.ClientSession() as session,
        MemoryStore() as backend,
        ComfyClient(comfy.url, session, name="c0") as client,
        run_gateway(backend, registry, ImageStore(data_dir), [client], options=FAST) as gateway,
    ):
        settings = TelegramSettings(bot_token=DEFAULT_TOKEN, api_base=f"http://127.0.0.1:{port}")
        with capture_logs() as logs:
            task = asyncio.create_task(
                run_telegram(settings, gateway, registry, polling_timeout=1, startup_backoff=QUICK)
            )
            await api_job_done(gateway)

            async def refused_twice() -> bool:
                return len(retries(logs)) >= 2

            await wait_for(refused_twice)
            async with FakeTelegram(port=port) as fake:
                fake.fail_next("getMe", 502, "Bad Gateway", times=2)  # up, but failing for a moment
                fake.send_text(USER, CHAT, "/generate a small boat --steps 2")
                await fake.wait_until(lambda: any(m.photo for m in fake.bot_messages(CHAT)), timeout=20)
                assert len(fake.calls_of("getMe", ok=False)) == 2
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        assert not task.done() or task.cancelled()
    seen = retries(logs)
    assert len(seen) >= 4, seen
    assert {e["step"] for e in seen} == {"get_me"}
    assert [e["attempt"] for e in seen] == list(range(1, len(seen) + 1))
    assert all(0 < e["delay_s"] <= QUICK.cap_s for e in seen)
    assert any("502" in e["error"] or "Bad Gateway" in e["error"] for e in seen)
    assert any("Connect" in e["error"] for e in seen)  # aiohttp's ClientConnectorError: refused


async def test_comfybot_run_with_a_refused_token_exits_with_one_line(tmp_path: Path) -> None:
    async with FakeTelegram() as fake:
        env = child_env(
            tmp_path,
            {
                "COMFYUI_URLS": "http://127.0.0.1:9",
                "TELEGRAM_BOT_TOKEN": "654321:" + "B" * 35,  # well formed, but not the fake's token
                "TELEGRAM_API_BASE": fake.url,
            },
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "comfybot",
            "run",
            "--quiet",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(60):
                out, err = await proc.communicate()
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    stderr = err.decode()
    assert proc.returncode == 2, (proc.returncode, stderr)
    assert "Traceback" not in stderr + out.decode()
    (line,) = stderr.strip().splitlines()
    assert "TELEGRAM_BOT_TOKEN was refused" in line and "Unauthorized" in line, line
    assert "B" * 35 not in line
    assert fake.calls_of("getMe", ok=False)
