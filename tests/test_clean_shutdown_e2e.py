"""A clean stop is quiet: ``comfybot run`` (Telegram + Discord + the HTTP API, each with a job done) and a
``python -m gateway`` worker sharing Redis, real subprocesses, SIGTERMed when idle, exit 0, write
nothing to stderr and log no line at warning level or above (no "Unclosed client session", "Unclosed
connector", "Task was destroyed but it is pending", nor a library's startup noise): a warning in the
log always means something an operator should look at.

Every line of every log file in ``LOG_DIR`` must be a JSON object, so nothing escapes the check."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import RedisServer, child_env, free_port
from tests.fakes.comfyui import running_fake_comfyui
from tests.fakes.discord import FakeDiscord
from tests.fakes.telegram import DEFAULT_TOKEN, FakeTelegram

ROOT = Path(__file__).resolve().parents[1]
API_TOKEN = "clean-shutdown-api-token-0123456789"
USER = 4646
QUIET = {"debug", "info"}


def _noisy_lines(log_dir: Path) -> list[str]:
    """Every log line at warning level or above (a line that is not JSON counts as one)."""
    files = sorted(log_dir.glob("*.log*"))
    assert files, f"no log file in {log_dir}"
    noisy = []
    for line in (line for f in files for line in f.read_text().splitlines()):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            noisy.append(line)
            continue
        if not isinstance(record, dict) or record.get("level") not in QUIET:
            noisy.append(line)
    return noisy


def _api_env(port: int) -> dict[str, str]:
    return {"COMFYBOT_API_ENABLED": "true", "COMFYBOT_API_TOKEN": API_TOKEN, "COMFYBOT_API_PORT": str(port)}


async def _api_job(port: int) -> None:
    """Wait for the HTTP API to listen, submit one job through it and wait for its success."""
    base, auth = f"http://127.0.0.1:{port}/v1", {"Authorization": f"Bearer {API_TOKEN}"}
    job = {"user_id": "1", "chat_id": "1", "workflow": "txt2img", "params": {"prompt": "a kite", "steps": 3}}
    async with aiohttp.ClientSession() as http, asyncio.timeout(120):
        while True:  # the interpreter is starting: wait for the port
            try:
                async with http.get(f"{base}/health", headers=auth) as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.2)
        async with http.post(f"{base}/jobs", headers=auth, json=job) as resp:
            assert resp.status == 202, await resp.text()
            job_id = (await resp.json())["job_id"]
        while True:
            async with http.get(f"{base}/jobs/{job_id}", headers=auth) as resp:
                state = (await resp.json())["state"]
            if state in {"succeeded", "failed", "cancelled", "timed_out"}:
                break
            await asyncio.sleep(0.1)
        assert state == "succeeded", state


async def _spawn(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def _stop_quietly(proc: asyncio.subprocess.Process, log_dir: Path) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    assert err.decode() == "", "nothing on stderr"
    assert _noisy_lines(log_dir) == []


@pytest.mark.timeout(300)  # a cold interpreter importing aiogram and discord.py on a loaded machine
@pytest.mark.parametrize("store", ["sqlite", "memory"])
async def test_telegram_discord_and_api_stop_without_a_warning(tmp_path: Path, store: str) -> None:
    port = free_port()
    async with FakeTelegram() as telegram, FakeDiscord() as discord, running_fake_comfyui() as comfy:
        env = child_env(
            tmp_path,
            {
                "TELEGRAM_BOT_TOKEN": DEFAULT_TOKEN,
                "TELEGRAM_API_BASE": telegram.url,
                **discord.env(),
                **_api_env(port),
                "COMFYUI_URLS": comfy.url,
                "COMFYBOT_STORE": store,
            },
        )
        proc = await _spawn("comfybot", "run", "--quiet", env=env)
        try:
            await telegram.wait_until(lambda: telegram.calls_of("getUpdates"), timeout=120)
            await discord.wait_for(lambda: discord.commands and discord.identified, timeout=120)
            telegram.send_text(USER, USER, "/generate a lighthouse --seed 1")
            inter = await discord.slash(USER, USER, "generate", {"prompt": "a lighthouse", "steps": 3})
            await _api_job(port)
            await telegram.wait_until(
                lambda: [m.kind for m in telegram.bot_messages(USER)] == ["photo"], timeout=60
            )
            await discord.wait_for(lambda: (m := discord.original(inter)) is not None and m.attachments)
        finally:
            await _stop_quietly(proc, tmp_path / "logs")
    assert len(comfy.received_prompts) == 3


@pytest.mark.timeout(300)
async def test_a_redis_worker_stops_without_a_warning(tmp_path: Path, redis_server: RedisServer) -> None:
    port = free_port()
    async with running_fake_comfyui() as comfy:
        env = child_env(
            tmp_path, {"REDIS_URL": redis_server.url, "COMFYUI_URLS": comfy.url, **_api_env(port)}
        )
        proc = await _spawn("gateway", env=env)
        try:
            await _api_job(port)
        finally:
            await _stop_quietly(proc, tmp_path / "logs")
    assert len(comfy.received_prompts) == 1
