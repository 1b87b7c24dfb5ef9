"""A finished result Discord refuses for good is logged and let go, never left at "Sampling" silently."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from structlog.testing import capture_logs

from tests.bot.discord.conftest import CHANNEL, USER, DBench


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
