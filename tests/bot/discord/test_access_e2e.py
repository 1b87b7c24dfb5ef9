"""The access policy holds for every command and button on Discord, as on Telegram: a banned user, or a
stranger in allowlist mode, gets the localized refusal (ephemeral) whatever they try, and it is logged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from bot.discord.context import user_key
from comfy.workflows import WorkflowRegistry
from gateway.limits import AccessPolicy
from tests.bot.discord.conftest import CHANNEL, OTHER, USER, DBench, dbench
from tests.fakes.discord import FakeInteraction, StoredMessage

OPEN_CHANNEL = 7002  # a channel the operator trusts in allowlist mode


async def _refused(b: DBench, inter: FakeInteraction, locale: str = "en") -> StoredMessage:
    answer = await b.original(inter)
    assert answer.ephemeral and answer.content == b.frontend.ctx.t(locale, "error.access_denied")
    assert inter.callback is not None and inter.callback["type"] == 4  # answered at once, nothing deferred
    return answer


async def test_banned_user_is_refused_every_command(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with dbench(tmp_path, registry, monkeypatch, access=AccessPolicy(banned=[OTHER])) as b:
        with capture_logs(processors=[merge_contextvars]) as logs:
            await _refused(b, await b.fake.slash(OTHER, CHANNEL, "help", locale="ru"), "ru")
        [denied] = [e for e in logs if e["event"] == "access_denied"]
        assert denied["reason"] == "banned" and denied["user_id"] == str(OTHER)
        assert denied["platform"] == "discord" and denied["request_id"]
        assert not [e for e in logs if e["event"] == "command_received"]
        commands: list[tuple[str, dict[str, Any]]] = [
            ("workflows", {}),
            ("queue", {}),
            ("history", {}),
            ("cancel", {}),
            ("settings", {"workflow": "img2img"}),
            ("generate", {"prompt": "a cat", "steps": 4}),
        ]
        for name, options in commands:
            await _refused(b, await b.fake.slash(OTHER, CHANNEL, name, options, locale="ko"), "ko")
        assert not await b.gateway.settings.get(user_key(OTHER))  # /settings saved nothing
        typed = {"prompt": "x", "workflow": ""}
        with capture_logs() as keystrokes:
            assert await b.fake.autocomplete(OTHER, CHANNEL, "generate", typed, "workflow") == []
        assert not [e for e in keystrokes if e["event"] == "access_denied"]  # refused quietly, per keystroke
        assert await b.fake.autocomplete(USER, CHANNEL, "generate", typed, "workflow")  # others get choices
        served = await b.original(await b.fake.slash(USER, CHANNEL, "help"))
        assert served.content.startswith(b.frontend.ctx.t("en", "discord.help"))
        assert not b.comfy.received_prompts


async def test_banned_user_is_refused_buttons(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with dbench(tmp_path, registry, monkeypatch, access=AccessPolicy(banned=[OTHER])) as b:
        await b.fake.slash(USER, CHANNEL, "generate", {"prompt": "a red fox", "steps": 4})
        result = await b.result()
        with capture_logs(processors=[merge_contextvars]) as logs:
            for custom_id in result.custom_ids:  # 🔁 🎲 ⬆️ ℹ️
                await _refused(b, await b.fake.click(OTHER, result.id, custom_id, locale="zh-TW"), "zh_Hant")
        denied = [e for e in logs if e["event"] == "access_denied"]
        assert len(denied) == len(result.custom_ids) and {e["reason"] for e in denied} == {"banned"}
        assert not [e for e in logs if e["event"] == "button_pressed"]
        assert len(b.comfy.received_prompts) == 1 and len(b.results()) == 1
        info = next(c for c in result.custom_ids if c.startswith("comfybot:i:"))
        mine = await b.original(await b.fake.click(USER, result.id, info))
        assert mine.ephemeral and "txt2img" in mine.content


async def test_allowlist_refuses_strangers_and_serves_the_listed(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = AccessPolicy("allowlist", allowed_users=[USER], allowed_chats=[OPEN_CHANNEL])
    async with dbench(tmp_path, registry, monkeypatch, access=policy) as b:
        t = b.frontend.ctx.t
        with capture_logs(processors=[merge_contextvars]) as logs:
            await _refused(b, await b.fake.slash(OTHER, CHANNEL, "workflows"))
        assert [e["reason"] for e in logs if e["event"] == "access_denied"] == ["not_allowlisted"]
        listed = await b.original(await b.fake.slash(USER, CHANNEL, "workflows"))
        assert listed.ephemeral and listed.content.startswith(t("en", "discord.workflows_header"))
        # In a channel the operator trusts, anyone may use the bot (the channel is the jobs' chat_id).
        trusted = await b.original(await b.fake.slash(OTHER, OPEN_CHANNEL, "workflows"))
        assert trusted.content.startswith(t("en", "discord.workflows_header"))
        await b.fake.slash(OTHER, OPEN_CHANNEL, "generate", {"prompt": "welcome", "steps": 4})
        assert "welcome" in (await b.result(OPEN_CHANNEL)).content
