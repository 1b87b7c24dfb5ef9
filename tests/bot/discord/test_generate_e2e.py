"""/generate end to end: deferred, queued → progress edits → result with files and persistent buttons."""

from __future__ import annotations

import io

from PIL import Image

from tests.bot.discord.conftest import CHANNEL, USER, DBench


async def test_generate_defers_edits_in_place_and_delivers_result_with_buttons(bench: DBench) -> None:
    inter = await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": "a lighthouse at dusk", "steps": 4})
    result = await bench.result()
    assert inter.callback is not None and inter.callback["type"] == 5  # defer(thinking=True)
    assert result.id == bench.fake.original(inter).id  # the original response, edited in place
    assert len(result.attachments) == 1 and result.attachments[0].filename == "result.png"
    with Image.open(io.BytesIO(result.attachments[0].data)) as img:
        assert img.size == (512, 512)
    assert "a lighthouse at dusk" in result.content
    kinds = [cid.split(":")[1] for cid in result.custom_ids]
    assert kinds == ["r", "v", "u", "i"]
    assert all(cid.startswith("comfybot:") and len(cid) <= 100 for cid in result.custom_ids)
    # Earlier states showed the queue/progress text with a Cancel button, and no state repeated.
    assert any("comfybot:c:" in cid for h in result.history for cid in h["custom_ids"])
    assert len(bench.fake.channel_messages(CHANNEL)) == 1  # one message per job
