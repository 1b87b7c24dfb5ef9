"""The job message while it waits: its queue position, updated when it changes; unexpected errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfy.workflows import WorkflowRegistry
from gateway.limits import Limits
from gateway.records import JobRecord
from tests.bot.conftest import bench


async def test_waiting_job_shows_position_and_updates_it(data_dir: Path, registry: WorkflowRegistry) -> None:
    chats = [9301, 9302, 9303, 9304]
    async with bench(
        data_dir, registry, capacity=1, limits=Limits(queue_cap=50), comfy_options={"step_delay_s": 0.15}
    ) as b:
        for chat in chats:
            b.fake.send_text(chat, chat, f"/generate a queue test {chat} --steps 8")
        last = chats[-1]
        first_text = await b.until(
            lambda: next(
                (m.text for m in b.fake.messages(last, from_bot=True, include_deleted=True) if m.text), None
            )
        )
        assert "In the queue: position" in first_text
        await b.until(lambda: all(any(m.photo for m in b.bot_msgs(c)) for c in chats), timeout=50)
        shown = [first_text] + [
            str(c.params.get("text", "")) for c in b.fake.calls_of("editMessageText", last, ok=True)
        ]
        positions = [t for t in shown if "In the queue: position" in t]
        assert len({p.split("position ")[1].split(" ")[0] for p in positions}) >= 2, positions


async def test_first_queued_event_repeating_the_job_message_costs_no_edit(
    data_dir: Path, registry: WorkflowRegistry
) -> None:
    """Regression: the first "queued" event re-sent the text the handler had just sent ("not modified")."""
    chats = [9311, 9312, 9313, 9314]
    async with bench(
        data_dir, registry, capacity=1, limits=Limits(queue_cap=50), comfy_options={"step_delay_s": 0.3}
    ) as b:
        for chat in chats[:-1]:
            b.fake.send_text(chat, chat, f"/generate a waiting test {chat} --steps 8")
        await b.until(lambda: all(b.bot_msgs(c) for c in chats[:-1]))
        b.fake.send_text(chats[-1], chats[-1], "/generate the last one --steps 2")
        await b.until(lambda: all(any(m.photo for m in b.bot_msgs(c)) for c in chats), timeout=50)
        edits = [c for chat in chats for c in b.fake.calls_of("editMessageText", chat)]
        refused = [c.description for c in edits if not c.ok]
        assert not refused, refused


async def test_unexpected_error_gets_a_polite_answer_with_request_id(
    data_dir: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with bench(data_dir, registry) as b:

        async def broken(user_id: str, limit: int = 10) -> list[JobRecord]:
            raise RuntimeError("database on fire")

        monkeypatch.setattr(b.gateway, "recent_jobs", broken)
        b.fake.send_text(9401, 9401, "/history")
        reply = await b.text_reply(9401, "Something went wrong")
        assert "Request ID" in (reply.text or "")
        assert "database on fire" not in (reply.text or "")
        b.fake.send_text(9401, 9401, "/help")
        await b.text_reply(9401, "/generate <prompt>")
