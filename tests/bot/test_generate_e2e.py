"""/generate end to end: real aiogram client ↔ FakeTelegram, real gateway ↔ fake ComfyUI."""

from __future__ import annotations

from pathlib import Path

from comfy.workflows import WorkflowRegistry
from tests.bot.conftest import bench

USER, CHAT = 1001, 1001


async def test_generate_turns_one_message_into_the_result(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry, comfy_options={"step_delay_s": 0.25}) as b:
        b.fake.send_text(USER, CHAT, "/generate a lighthouse at dusk --ar 16:9 --seed 42 --steps 8")
        result = await b.result(CHAT)
        assert result.photo, "the result is a photo"
        assert "a lighthouse at dusk" in (result.caption or "")
        assert "42" in (result.caption or "")
        assert "txt2img" in (result.caption or "")
        labels = [btn["text"] for row in result.buttons for btn in row]
        assert any("Reroll" in t for t in labels) and any("Variations" in t for t in labels)
        assert any("Upscale" in t for t in labels) and any("Info" in t for t in labels)
        for row in result.buttons:
            for btn in row:
                assert len(btn["callback_data"].encode()) <= 64
        # The progress message was edited in place (queued → running …) and then replaced by the result.
        edits = b.fake.calls_of("editMessageText", CHAT, ok=True)
        assert edits, "progress was shown by editing the job message"
        progress_ids = {int(c.params["message_id"]) for c in edits}
        assert len(progress_ids) == 1
        await b.until(lambda: [m.message_id for m in b.bot_msgs(CHAT)] == [result.message_id])
        assert b.fake.count_429 == 0
