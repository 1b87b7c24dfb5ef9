"""Pictures from users: photo + caption → img2img, reply to a photo, documents; bad pictures refused."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from PIL import Image

from comfy.workflows import WorkflowRegistry
from gateway.limits import Limits
from tests.bot.conftest import Bench, bench, jpeg, png

USER, CHAT = 2002, 2002


def _img2img_prompts(b: Bench) -> list[dict[str, Any]]:
    return [
        p
        for p in b.comfy.received_prompts
        if any(n.get("class_type") == "LoadImage" for n in p["prompt"].values())
    ]


async def test_photo_with_caption_runs_img2img(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry) as b:
        b.fake.send_photo(USER, CHAT, jpeg(96, 64), caption="make it snowy —seed 5")
        result = await b.result(CHAT)
        assert "make it snowy" in (result.caption or "") and "img2img" in (result.caption or "")
        assert b.comfy.uploads, "the picture was uploaded to ComfyUI"
        assert _img2img_prompts(b)


async def test_reply_to_photo_with_generate_uses_it(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry) as b:
        photo = b.fake.send_photo(USER, CHAT, jpeg())
        # A photo without caption asks for one (img2img needs a prompt)…
        await b.text_reply(CHAT, "Add a caption")
        assert photo.message is not None
        b.fake.send_text(
            USER, CHAT, "/generate a watercolor version", reply_to_message_id=photo.message.message_id
        )
        result = await b.result(CHAT)
        assert "img2img" in (result.caption or "")


async def test_image_sent_as_document_is_accepted(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry) as b:
        b.fake.send_document(USER, CHAT, png(80, 80), file_name="cat.png", caption="a cat in a hat")
        result = await b.result(CHAT)
        assert "img2img" in (result.caption or "")


async def test_non_image_document_is_refused(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry) as b:
        b.fake.send_document(
            USER, CHAT, b"%PDF-1.4 not a picture", file_name="doc.pdf", caption="make it pop"
        )
        await b.text_reply(CHAT, "not an image")
        assert not b.fake.calls_of("getFile"), "nothing was downloaded"
        assert not b.comfy.received_prompts


async def test_corrupt_photo_is_refused(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry) as b:
        broken = jpeg()[:40] + b"\x00garbage" * 10
        b.fake.send_photo(USER, CHAT, broken, caption="fix me")
        await b.text_reply(CHAT, "could not read that as an image")
        assert not b.comfy.received_prompts


async def test_12mb_photo_is_refused_before_download(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry, limits=Limits(max_image_bytes=10 * 1024 * 1024)) as b:
        big = os.urandom(12 * 1024 * 1024)
        b.fake.send_document(USER, CHAT, big, file_name="huge.jpg", mime_type="image/jpeg", caption="upscale")
        reply = await b.text_reply(CHAT, "too large")
        assert "(12 MiB)" in (reply.text or "") and "limit is 10 MiB." in (reply.text or "")  # units right
        assert not b.fake.calls_of("getFile"), "size was checked before downloading"


async def test_decompression_bomb_is_refused(data_dir: Path, registry: WorkflowRegistry) -> None:
    buf = io.BytesIO()
    Image.new("1", (30_000, 30_000), 0).save(buf, "PNG")  # ~900 Mpx, a few hundred KB on disk
    async with bench(data_dir, registry) as b:
        b.fake.send_document(USER, CHAT, buf.getvalue(), file_name="bomb.png", caption="redraw")
        reply = await b.text_reply(CHAT, "too big")
        limit_mp = b.gateway.limits.max_image_pixels // 1_000_000
        assert f"{limit_mp} megapixels" in (reply.text or ""), "the answer says what would fit"
        assert not b.comfy.received_prompts


async def test_photo_for_workflow_without_image_input_asks_for_picture(
    data_dir: Path, registry: WorkflowRegistry
) -> None:
    async with bench(data_dir, registry) as b:
        b.fake.send_text(USER, CHAT, "/generate --wf upscale")
        await b.text_reply(CHAT, "needs a picture")


async def test_photo_without_caption_is_asked_for_a_caption(
    data_dir: Path, registry: WorkflowRegistry
) -> None:
    async with bench(data_dir, registry) as b:
        b.fake.send_photo(USER, CHAT, png(), language_code="ru")
        reply = await b.text_reply(CHAT, "подпись")
        assert "/generate" not in (reply.text or ""), "the hint fits a photo, not a command"
        assert not b.comfy.received_prompts
