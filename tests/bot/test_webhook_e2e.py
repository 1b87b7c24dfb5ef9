"""Webhook mode: setWebhook with a secret token; updates with the wrong secret are refused."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from comfy.workflows import WorkflowRegistry
from tests.bot.conftest import bench
from tests.conftest import free_port

USER, CHAT = 9109, 9109


async def test_webhook_mode_checks_the_secret(data_dir: Path, registry: WorkflowRegistry) -> None:
    port = free_port()
    options = {
        "mode": "webhook",
        "webhook_url": "https://bot.example.org/telegram/webhook",
        "webhook_secret": "s3cret-token",
        "webhook_host": "127.0.0.1",
        "webhook_port": port,
    }
    async with bench(data_dir, registry, telegram_options=options) as b:
        call = await b.fake.wait_for(lambda c: c.method == "setWebhook")
        assert call.params["url"] == "https://bot.example.org/telegram/webhook"
        assert call.params["secret_token"] == "s3cret-token"
        update = b.fake.send_text(USER, CHAT, "/help").data
        url = f"http://127.0.0.1:{port}/telegram/webhook"
        async with aiohttp.ClientSession() as session:
            async with session.post(
                url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"}
            ) as r:
                assert r.status == 401
            async with session.post(
                url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret-token"}
            ) as r:
                assert r.status == 200
        await b.text_reply(CHAT, "/generate <prompt>")
    assert b.fake.calls_of("deleteWebhook"), "the webhook is removed on stop"


async def test_webhook_mode_without_a_secret_is_never_open(
    data_dir: Path, registry: WorkflowRegistry
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram/webhook"  # the fake delivers real updates here
    options = {"mode": "webhook", "webhook_url": url, "webhook_host": "127.0.0.1", "webhook_port": port}
    forged_user = forged_chat = 9110
    with capture_logs(processors=[merge_contextvars]) as logs:
        async with bench(data_dir, registry, telegram_options=options) as b:
            secret = b.frontend.webhook_secret
            assert secret is not None and re.fullmatch(r"[A-Za-z0-9_-]{32,256}", secret)
            call = await b.fake.wait_for(lambda c: c.method == "setWebhook")
            assert call.params["secret_token"] == secret, "the generated secret reached setWebhook"
            forged = {
                "update_id": 990001,
                "message": {
                    "message_id": 1,
                    "date": 1700000000,
                    "chat": {"id": forged_chat, "type": "private"},
                    "from": {"id": forged_user, "is_bot": False, "first_name": "Mallory"},
                    "text": "/help",
                    "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
                },
            }
            async with aiohttp.ClientSession() as session:
                for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "guess"}):
                    async with session.post(url, json=forged, headers=headers) as r:
                        assert r.status == 401
            # A real update, delivered by Telegram with the secret, is answered; the forged one never was.
            real = b.fake.send_text(USER, CHAT, "/help").update_id
            await b.text_reply(CHAT, "/generate <prompt>")
            assert not b.fake.bot_messages(forged_chat)
            assert not [c for c in b.fake.calls if c.chat_id == forged_chat]
    assert [e for e in logs if e.get("update_id") == real], "handled updates are seen in the log"
    assert not [e for e in logs if e.get("update_id") == 990001], "no handler saw the forged update"
    assert secret not in repr(logs), "the secret is never logged"
