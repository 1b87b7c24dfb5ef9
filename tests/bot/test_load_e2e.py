"""Load and rate discipline: many users at once, a busy group, and a storm of 429s."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bot.telegram.sender import SenderLimits
from comfy.workflows import WorkflowRegistry
from gateway.limits import Limits
from tests.bot.conftest import Bench, bench, png
from tests.fakes.telegram import RateLimits, StoredMessage


def _photos(b: Bench, chat: int) -> list[StoredMessage]:
    return [m for m in b.fake.messages(chat, from_bot=True, include_deleted=True) if m.photo or m.document]


@pytest.mark.timeout(180)
async def test_200_users_in_200_chats_at_once(data_dir: Path, registry: WorkflowRegistry) -> None:
    chats = list(range(50_001, 50_201))
    limits = Limits(queue_cap=1000, max_pending_per_user=3)
    async with bench(data_dir, registry, limits=limits, capacity=4, comfy_options={"step_delay_s": 0.0}) as b:
        for chat in chats:
            b.fake.send_text(chat, chat, f"/generate a tiny house number {chat} --steps 1")
        await b.until(lambda: all(_photos(b, c) for c in chats), timeout=170)
        for chat in chats:
            assert len(_photos(b, chat)) == 1, f"chat {chat} got exactly one result"
        assert b.fake.count_429 == 0
        sends = Counter(c.chat_id for c in b.fake.calls_of("sendPhoto", ok=True))
        assert set(sends.values()) == {1}


@pytest.mark.timeout(120)
async def test_busy_group_stays_under_the_group_limit(data_dir: Path, registry: WorkflowRegistry) -> None:
    """10 users in one group. Telegram allows ~20 messages a minute per group; the test runs that limit
    scaled down to 20 per 6 s on both sides (fake and sender), so it takes seconds, not minutes."""
    group = -1009000
    window = 6.0
    async with bench(
        data_dir,
        registry,
        telegram_limits=RateLimits(per_group=20, per_group_window=window),
        sender_limits=SenderLimits(group_max=20, group_window_s=window),
        comfy_options={"step_delay_s": 0.05},
    ) as b:
        for user in range(10):
            b.fake.send_text(
                7000 + user, group, f"/generate@comfy_test_bot tree {user} --steps 4", chat_type="supergroup"
            )
        await b.until(lambda: len(_photos(b, group)) == 10, timeout=110)
        assert b.fake.count_429 == 0
        counted = sorted(
            c.at
            for c in b.fake.calls
            if c.ok and c.chat_id == group and c.method.startswith(("send", "edit", "delete"))
        )
        for i, start in enumerate(counted):
            in_window = [t for t in counted[i:] if t < start + window]
            assert len(in_window) <= 20


async def test_group_ignores_commands_not_addressed_to_the_bot(
    data_dir: Path, registry: WorkflowRegistry
) -> None:
    group = -1009001
    async with bench(data_dir, registry) as b:
        b.fake.send_text(1, group, "/generate@other_bot a cat", chat_type="supergroup")
        b.fake.send_text(1, group, "a cat, please", chat_type="supergroup")
        b.fake.send_photo(1, group, png(), caption="make it winter", chat_type="supergroup")
        b.fake.send_text(1, group, "/help@comfy_test_bot", chat_type="supergroup")
        await b.text_reply(group, "/generate <prompt>")
        assert len(b.bot_msgs(group)) == 1
        assert not b.comfy.received_prompts


async def test_group_answers_a_bare_command_from_the_menu(data_dir: Path, registry: WorkflowRegistry) -> None:
    """Telegram's command menu inserts ``/generate`` without ``@bot`` when the bot is alone in a group."""
    group = -1009002
    async with bench(data_dir, registry) as b:
        b.fake.send_text(1, group, "/generate a cat on a roof --steps 2", chat_type="supergroup")
        result = await b.result(group)
        assert "a cat on a roof" in (result.caption or "")


@pytest.mark.timeout(120)
async def test_429_storm_no_duplicates_every_job_delivered(
    data_dir: Path, registry: WorkflowRegistry
) -> None:
    chats = list(range(60_001, 60_011))
    async with bench(data_dir, registry, comfy_options={"step_delay_s": 0.05}) as b:
        b.fake.inject_429(None, times=25, retry_after=1)
        for chat in chats:
            b.fake.send_text(chat, chat, f"/generate a storm {chat} --steps 4")
        await b.until(lambda: all(_photos(b, c) for c in chats), timeout=100)
        assert b.fake.count_429 >= 1
        for chat in chats:
            assert len(_photos(b, chat)) == 1
            queued = [m for m in b.fake.messages(chat, from_bot=True, include_deleted=True) if m.text]
            assert len(queued) <= 1, "the job message was sent once"
