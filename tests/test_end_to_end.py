"""The shipped entry point, end to end: ``comfybot run`` in a real subprocess, fake Telegram + fake ComfyUI.

A user sends ``/generate``; the message they get is edited in place and becomes the photo; then
``comfybot trace`` follows that request through the log file the process wrote, and the recipes of
DESIGN.md hold on it (every line JSON, one request_id from command to response, no token anywhere).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from gateway.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.comfy.test_client_fake import until
from tests.conftest import child_env, free_port
from tests.fakes.comfyui import running_fake_comfyui
from tests.fakes.discord import FakeDiscord
from tests.fakes.telegram import DEFAULT_TOKEN, FakeTelegram
from tests.gateway.test_http_events import read_events, receiving

USER = CHAT = 4242


async def _cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "comfybot",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.timeout(300)  # a cold interpreter importing aiogram on a loaded 2-core machine is slow
async def test_comfybot_run_generates_and_is_traceable(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    async with FakeTelegram() as telegram, running_fake_comfyui() as comfy:
        env = child_env(
            tmp_path,
            {
                "TELEGRAM_BOT_TOKEN": DEFAULT_TOKEN,
                "TELEGRAM_API_BASE": telegram.url,
                "COMFYUI_URLS": comfy.url,
            },
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "comfybot",
            "run",
            "--quiet",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await telegram.wait_for(lambda c: c.method.lower() == "getupdates", timeout=120)
            telegram.send_text(USER, CHAT, "/generate a lighthouse at dusk --ar 16:9 --seed 42")
            await telegram.wait_until(
                lambda: any(m.kind == "photo" for m in telegram.bot_messages(CHAT)), timeout=60
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
        assert proc.returncode == 0, err.decode()
        assert "Traceback" not in err.decode()

        bot_messages = telegram.bot_messages(CHAT)
        assert len(bot_messages) == 1, "one message per job, edited in place into the result"
        result = bot_messages[0]
        assert result.kind == "photo"
        assert "lighthouse" in (result.caption or "")
        assert result.buttons, "the result carries Reroll/Variations/Upscale/Info buttons"
        sent = comfy.received_prompts[-1]
        assert sent["client_id"] and sent["extra_data"]["request_id"]
        request_id = sent["extra_data"]["request_id"]

    raw = b"".join(p.read_bytes() for p in sorted(log_dir.glob("*.log")))
    assert DEFAULT_TOKEN.encode() not in raw and DEFAULT_TOKEN.split(":")[1].encode() not in raw
    lines = [json.loads(line) for line in raw.splitlines()]
    for line in lines:
        assert {"timestamp", "level", "event", "component"} <= line.keys()
    mine = [line["event"] for line in lines if line.get("request_id") == request_id]
    for event in (
        "command_received",
        "job_enqueued",
        "job_dequeued",
        "comfyui_prompt_sent",
        "job_succeeded",
        "response_sent",
    ):
        assert event in mine, f"{event} missing from request {request_id}'s lines: {mine}"
    # From the chat to the GPU and back. The job message itself ("in queue") may be sent before or after the
    # POST (they race); the result, the last response, comes after it.
    last_response = len(mine) - 1 - mine[::-1].index("response_sent")
    assert mine.index("command_received") < mine.index("comfyui_prompt_sent") < last_response

    code, out, err = await _cli("trace", request_id[:8], "--log-dir", str(log_dir), env=env)
    assert code == 0, err
    assert "command_received" in out and "response_sent" in out


@pytest.mark.timeout(300)
async def test_comfybot_run_with_only_the_http_api(tmp_path: Path) -> None:
    """The HTTP API is a front end too: with it alone, ``comfybot run`` serves jobs behind its token,
    streams their events and calls their signed webhook."""
    port, token, secret = free_port(), "s3cret-token-for-tests", "hook-s3cret-for-tests"
    async with (
        running_fake_comfyui() as comfy,
        aiohttp.ClientSession() as http,
        receiving(fail=0) as receiver,
    ):
        env = child_env(
            tmp_path,
            {
                "COMFYUI_URLS": comfy.url,
                "COMFYBOT_API_ENABLED": "true",
                "COMFYBOT_API_TOKEN": token,
                "COMFYBOT_API_PORT": str(port),
                "COMFYBOT_WEBHOOK_SECRET": secret,
            },
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "comfybot",
            "run",
            "--quiet",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        base, auth = f"http://127.0.0.1:{port}/v1", {"Authorization": f"Bearer {token}"}
        try:
            async with asyncio.timeout(120):
                while True:  # the interpreter is starting: wait for the port
                    try:
                        async with http.get(f"{base}/health", headers=auth) as resp:
                            if resp.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.2)
            job = {
                "user_id": "1",
                "chat_id": "1",
                "workflow": "txt2img",
                "params": {"prompt": "a kite", "steps": 3},
                "callback_url": receiver.url,
            }
            async with http.post(f"{base}/jobs", json=job) as resp:
                assert resp.status == 401  # no token, no job
            async with http.post(f"{base}/jobs", headers=auth, json=job) as resp:
                assert resp.status == 202
                job_id = (await resp.json())["job_id"]
            async with asyncio.timeout(60):
                while True:
                    async with http.get(f"{base}/jobs/{job_id}", headers=auth) as resp:
                        record = await resp.json()
                    if record["state"] in {"succeeded", "failed", "cancelled", "timed_out"}:
                        break
                    await asyncio.sleep(0.1)
            assert record["state"] == "succeeded" and record["images"]
            async with http.get(f"{base}/jobs/{job_id}/events", headers=auth) as resp:
                events = [e async for e in read_events(resp)]
            assert (events[-1].id, events[-1].event) == ("outcome", "succeeded")
            await until(lambda: bool(receiver.requests), 30)
            headers, body = receiver.requests[0]
            assert verify(secret, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
        assert proc.returncode == 0, err.decode()
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    assert token not in logs and secret not in logs and '"webhook_sent"' in logs


@pytest.mark.timeout(300)
async def test_comfybot_run_on_discord_through_configured_endpoints(tmp_path: Path) -> None:
    """``comfybot run`` reaches Discord where DISCORD_API_BASE and DISCORD_GATEWAY_URL say (here the fake
    Discord; in production a rate-limit proxy): a /generate ends as a picture on the interaction's message."""
    async with FakeDiscord() as fake, running_fake_comfyui() as comfy:
        env = child_env(tmp_path, {**fake.env(), "COMFYUI_URLS": comfy.url})
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "comfybot",
            "run",
            "--quiet",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await fake.wait_for(lambda: fake.commands and fake.identified, timeout=120)
            inter = await fake.slash(USER, CHAT, "generate", {"prompt": "a lighthouse", "steps": 3})
            result = await fake.wait_for(
                lambda: (m := fake.original(inter)) is not None and m.attachments and m, timeout=60
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
        assert proc.returncode == 0, err.decode()
        assert "lighthouse" in result.content and comfy.received_prompts
    raw = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    assert fake.token not in raw
    assert f'"api_base": "{fake.url}/api/v10"' in raw or f'"api_base":"{fake.url}/api/v10"' in raw
