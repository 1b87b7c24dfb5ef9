"""Webhook mode: setWebhook with a secret token; updates with the wrong secret are refused."""

from __future__ import annotations

from pathlib import Path

import aiohttp

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
