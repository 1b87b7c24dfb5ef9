"""The job message while it runs: previews, a deleted progress message, progress texts."""

from __future__ import annotations

from pathlib import Path

from comfy.workflows import WorkflowRegistry
from tests.bot.conftest import bench

USER, CHAT = 9009, 9009


async def test_preview_turns_the_message_into_a_photo_and_the_result_replaces_it(
    data_dir: Path, registry: WorkflowRegistry
) -> None:
    async with bench(
        data_dir,
        registry,
        previews=True,
        comfy_options={"step_delay_s": 0.3},
        frontend_options={"preview_interval_s": 0.5},
    ) as b:
        b.fake.send_text(USER, CHAT, "/generate a harbour at night --steps 12")
        preview = await b.until(lambda: next((m for m in b.bot_msgs(CHAT) if m.photo), None))
        assert any("j:c:" in x["callback_data"] for r in preview.buttons for x in r), "Cancel on the preview"
        result = await b.result(CHAT)
        assert result.message_id == preview.message_id, "the preview message became the result"
        assert b.fake.calls_of("editMessageMedia", CHAT, ok=True)
        await b.until(lambda: len(b.bot_msgs(CHAT)) == 1)
        assert b.fake.count_429 == 0


async def test_deleted_progress_message_does_not_stop_the_job(
    data_dir: Path, registry: WorkflowRegistry
) -> None:
    async with bench(data_dir, registry, comfy_options={"step_delay_s": 0.3}) as b:
        b.fake.send_text(USER, CHAT, "/generate a quiet forest --steps 10")
        job_msg = await b.until(lambda: next((m for m in b.bot_msgs(CHAT) if m.text), None))
        b.fake.delete_message(CHAT, job_msg.message_id)
        result = await b.result(CHAT)
        assert result.message_id != job_msg.message_id
        assert "a quiet forest" in (result.caption or "")


async def test_progress_text_shows_step_percent_and_time(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry, comfy_options={"step_delay_s": 0.3}) as b:
        b.fake.send_text(USER, CHAT, "/generate a mountain lake --steps 12")
        await b.result(CHAT, timeout=30)
        texts = [str(c.params.get("text", "")) for c in b.fake.calls_of("editMessageText", CHAT, ok=True)]
        running = [t for t in texts if "%" in t]
        assert running, texts
        assert any("Sampling" in t and "Step " in t and "▰" in t and "⏱" in t for t in running), running
        assert any("[" in t and "/" in t for t in running)


async def test_picture_over_photo_limits_goes_as_a_document(
    data_dir: Path, registry: WorkflowRegistry
) -> None:
    async with bench(data_dir, registry, comfy_options={"output_size": (8200, 2000)}) as b:
        b.fake.send_text(USER, CHAT, "/generate a very wide panorama --steps 2")
        result = await b.result(CHAT)
        assert result.document and not result.photo
        assert "a very wide panorama" in (result.caption or "")
        assert not b.fake.calls_of("sendPhoto", CHAT)


async def test_photo_refused_by_telegram_is_sent_as_a_document(
    data_dir: Path, registry: WorkflowRegistry
) -> None:
    async with bench(data_dir, registry) as b:
        b.fake.fail_next("sendPhoto", 400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
        b.fake.send_text(USER, CHAT, "/generate an odd picture --steps 2")
        result = await b.result(CHAT)
        assert result.document
        assert len([m for m in b.fake.messages(CHAT, from_bot=True, include_deleted=True) if m.photo]) == 0
