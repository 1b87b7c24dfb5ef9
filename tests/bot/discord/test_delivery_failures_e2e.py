"""A finished result Discord refuses for good is logged and let go, never left at "Sampling" silently."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from bot.discord.context import DiscordOptions
from comfy.workflows import WorkflowRegistry
from tests.bot.discord.conftest import CHANNEL, USER, DBench, dbench
from tests.fakes.discord import READ_MESSAGE_HISTORY, VIEW_CHANNEL

SLOW = {"step_delay_s": 0.05}


async def _poll(predicate: Callable[[], Any], limit: int = 600) -> Any:
    """``predicate()`` once it is truthy: for state the fake Discord is not notified of (logs, ComfyUI)."""
    for _ in range(limit):
        if value := predicate():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition never held")


async def test_missing_permissions_on_the_result_is_logged_once_and_let_go(bench: DBench) -> None:
    """403 50013 on the result edit (the bot lost Attach Files): ``result_not_delivered`` with the code,
    no picture, and the outcome is not held for a retry that would fail alike."""
    with capture_logs() as logs:
        inter = await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": "a lighthouse", "steps": 4})
        await _poll(lambda: bench.comfy.running_prompt_id is not None)
        bench.fake.inject_error("edit", 403, 50013, "Missing Permissions", times=1000)
        failed = await _poll(lambda: [e for e in logs if e["event"] == "result_not_delivered"])
    assert len(failed) == 1 and failed[0]["code"] == 50013 and failed[0]["reason"] == "refused"
    msg = bench.fake.original(inter)
    assert msg is not None and not msg.attachments
    assert not [e for e in logs if e["event"] == "job_event_failed"]


async def test_result_message_gone_for_good_tells_the_user(bench: DBench) -> None:
    """Every edit and every new message 404s with an unknown channel (10003): logged, not raised."""
    with capture_logs() as logs:
        await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": "a lighthouse", "steps": 4})
        await _poll(lambda: bench.comfy.running_prompt_id is not None)
        for kind in ("edit", "channel_send", "followup", "channel_edit"):
            bench.fake.inject_error(kind, 404, 10003, "Unknown Channel", times=1000)
        failed = await _poll(lambda: [e for e in logs if e["event"] == "result_not_delivered"])
    assert failed[0]["reason"] == "refused" and failed[0]["code"] == 10003
    assert not [e for e in logs if e["event"] == "job_event_failed"]


NO_POST = VIEW_CHANNEL | READ_MESSAGE_HISTORY  # can read the channel, may not write in it


async def test_a_channel_the_bot_cannot_post_in_gets_the_result_by_dm(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Send Messages in the channel (``app_permissions``) and a job that outlives the token: the user
    is told once, privately, at the start; no channel post is ever tried (no 403 loop); the result with
    its buttons comes to the user's DMs."""
    options = DiscordOptions(token_ttl_s=0.6, edit_interval_s=0.2)
    async with dbench(tmp_path, registry, monkeypatch, options=options, comfy_options=SLOW) as b:
        b.fake.bot_permissions[CHANNEL] = NO_POST
        with capture_logs() as logs:
            await b.fake.slash(USER, CHANNEL, "generate", {"prompt": "a long job", "steps": 40})
            warning = await b.ephemeral("can't post in this channel")
            dm = await b.until(lambda: [m for m in b.fake.dm_messages(USER) if m.attachments])
            continued = await b.logged(logs, "job_message_continued")
        assert warning.ephemeral
        (result,) = dm
        assert "<#" in result.content and any("comfybot:" in c for c in result.custom_ids)
        assert b.fake.calls_of("channel_send") == [
            c for c in b.fake.calls_of("channel_send") if c.status == 200
        ]
        assert continued["where"] == "dm"
        assert not [e for e in logs if e["event"] == "result_not_delivered"]


async def test_permission_lost_mid_job_and_dms_closed_is_one_refusal_each(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Send Messages taken away while the job runs (``app_permissions`` said yes at the start) and the
    user's DMs closed: the channel is tried once (403 50013), never again for the many progress ticks
    after it; the DM once (403 50007); the outcome is logged ``result_not_delivered`` and let go."""
    options = DiscordOptions(token_ttl_s=0.6, edit_interval_s=0.1)
    async with dbench(tmp_path, registry, monkeypatch, options=options, comfy_options=SLOW) as b:
        b.fake.dms_closed.add(USER)
        with capture_logs() as logs:
            inter = await b.fake.slash(USER, CHANNEL, "generate", {"prompt": "a long job", "steps": 40})
            await b.original(inter)
            b.fake.bot_permissions[CHANNEL] = NO_POST
            failed = await _poll(lambda: [e for e in logs if e["event"] == "result_not_delivered"])
        assert failed[0]["reason"] == "refused" and failed[0]["code"] == 50007
        sends = b.fake.calls_of("channel_send")
        assert [c.status for c in sends] == [403, 403], "one try in the channel, one in the DM"
        assert not [e for e in logs if e["event"] == "job_event_failed"]


async def test_a_result_discord_fails_for_a_moment_is_sent_again_in_process(
    bench: DBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two 500s on the result edit, then Discord is back: the picture arrives once, in the same process."""
    monkeypatch.setattr("bot.consumer.SEND_RETRY_FIRST_S", 0.05)
    inter = await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": "a lighthouse", "steps": 4})
    await _poll(lambda: bench.comfy.running_prompt_id is not None)
    bench.fake.inject_error("edit", 500, 0, "Internal Server Error", times=2)
    msg = await bench.until(lambda: (m := bench.fake.original(inter)) and m.attachments and m)
    assert len(msg.attachments) == 1 and len(bench.results()) == 1
