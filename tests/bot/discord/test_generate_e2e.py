"""/generate end to end: deferred, queued → progress edits → result with files and persistent buttons; a
prompt's mentions ping no one."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.discord.context import DiscordOptions
from comfy.workflows import WorkflowRegistry
from tests.bot.conftest import png
from tests.bot.discord.conftest import CHANNEL, USER, DBench, dbench
from tests.fakes.discord import Call, would_ping


async def test_generate_defers_edits_in_place_and_delivers_result_with_buttons(bench: DBench) -> None:
    inter = await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": "a lighthouse at dusk", "steps": 4})
    result = await bench.result()
    assert inter.callback is not None and inter.callback["type"] == 5  # defer(thinking=True)
    original = bench.fake.original(inter)
    assert original is not None
    assert result.id == original.id  # the original response, edited in place
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


async def test_image_attachment_runs_img2img(bench: DBench) -> None:
    inter = await bench.fake.slash(
        USER,
        CHANNEL,
        "generate",
        {"prompt": "make it blue", "steps": 4},
        attachments={"image": ("photo.png", png(64, 48), "image/png")},
    )
    result = await bench.result()
    original = bench.fake.original(inter)
    assert original is not None
    assert result.id == original.id
    assert "img2img" in result.content
    assert len(bench.comfy.uploads) == 1
    [prompt] = bench.comfy.received_prompts
    assert any(node["class_type"] == "LoadImage" for node in prompt["prompt"].values())


async def test_input_image_is_bounded_by_our_limit_not_the_bots_upload_limit(bench: DBench) -> None:
    """A 12 MiB picture was refused with "limit is 10 MB" (the bot's own upload limit) though
    COMFYBOT_MAX_IMAGE_BYTES allows 20 MiB: users may send what we accept."""
    noise = Image.frombytes("RGBA", (1800, 1800), os.urandom(1800 * 1800 * 4))
    buf = io.BytesIO()
    noise.save(buf, "PNG", compress_level=1)
    data = buf.getvalue()
    assert bench.fake.attachment_size_limit < len(data) < bench.gateway.limits.max_image_bytes
    await bench.fake.slash(
        USER,
        CHANNEL,
        "generate",
        {"prompt": "make it blue", "steps": 2},
        attachments={"image": ("big.png", data, "image/png")},
    )
    result = await bench.result()
    assert "img2img" in result.content
    assert len(bench.comfy.uploads) == 1
    assert not [m for m in bench.fake.channel_messages(CHANNEL) if m.ephemeral]


async def test_options_become_params(bench: DBench) -> None:
    await bench.fake.slash(
        USER,
        CHANNEL,
        "generate",
        {"prompt": "wide", "ar": "16x9", "seed": 1234, "steps": 5, "negative": "blurry", "batch": 2},
    )
    result = await bench.result()
    assert [f.filename for f in result.attachments] == ["result_1.png", "result_2.png"]
    with Image.open(io.BytesIO(result.attachments[0].data)) as img:
        assert img.width > img.height
    assert "1234" in result.content


async def test_workflow_autocomplete_comes_from_the_registry(bench: DBench) -> None:
    everything = await bench.fake.autocomplete(
        USER, CHANNEL, "generate", {"prompt": "x", "workflow": ""}, "workflow"
    )
    assert sorted(c["value"] for c in everything) == sorted(bench.registry.names())
    some = await bench.fake.autocomplete(
        USER, CHANNEL, "generate", {"prompt": "x", "workflow": "img2"}, "workflow"
    )
    assert [c["value"] for c in some] == ["img2img"]
    ratios = await bench.fake.autocomplete(USER, CHANNEL, "generate", {"prompt": "x", "ar": "16"}, "ar")
    assert [c["value"] for c in ratios] == ["16:9", "9:16"]
    custom = await bench.fake.autocomplete(USER, CHANNEL, "generate", {"prompt": "x", "ar": "5x4"}, "ar")
    assert [c["value"] for c in custom] == ["5:4"]


async def test_synced_commands_and_options(bench: DBench) -> None:
    names = {c["name"] for c in bench.fake.commands}
    assert names == {"generate", "workflows", "cancel", "queue", "settings", "history", "stats", "help"}
    generate = next(c for c in bench.fake.commands if c["name"] == "generate")
    options = {o["name"]: o for o in generate["options"]}
    assert list(options) == ["prompt", "workflow", "ar", "seed", "steps", "negative", "image", "batch"]
    assert options["prompt"]["required"] and options["workflow"]["autocomplete"]
    assert options["image"]["type"] == 11 and options["steps"]["type"] == 4


async def test_command_descriptions_are_localized(bench: DBench) -> None:
    t = bench.frontend.ctx.t
    generate = next(c for c in bench.fake.commands if c["name"] == "generate")
    assert generate["description_localizations"] == {
        "en-US": t("en", "cmd.generate"),
        "en-GB": t("en", "cmd.generate"),
        "ru": t("ru", "cmd.generate"),
        "ko": t("ko", "cmd.generate"),
        "zh-TW": t("zh_Hant", "cmd.generate"),
    }
    steps = next(o for o in generate["options"] if o["name"] == "steps")
    assert steps["description_localizations"]["ru"] == t("ru", "discord.opt.steps")


def _message_body(call: Call) -> dict[str, Any] | None:
    """The message a REST call sends or edits (an interaction callback nests it in ``data``)."""
    body = call.payload if isinstance(call.payload, dict) else {}
    if call.kind == "callback":
        body = body.get("data") or {}
    return body if "content" in body else None


async def test_prompt_mentions_ping_no_one(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job message repeats the prompt in public: its @everyone, @here, role and user mentions must stay
    text — on the interaction's original response, on the channel message a long job moves to, on
    followups and on ephemeral answers alike."""
    prompt = "@everyone look <@&123> and <@42>, @here"
    assert would_ping(prompt, None) == ["@everyone", "role:123", "user:42", "@here"]  # Discord's default
    # A token that "expires" mid-job: the job continues on a channel message (sent, then edited).
    options = DiscordOptions(token_ttl_s=0.6, edit_interval_s=0.2)
    async with dbench(
        tmp_path, registry, monkeypatch, options=options, comfy_options={"step_delay_s": 0.05}
    ) as b:
        inter = await b.fake.slash(USER, CHANNEL, "generate", {"prompt": prompt, "steps": 40})
        result = await b.result()
        original = b.fake.original(inter)
        assert original is not None and original.id != result.id
        assert any(prompt in h["content"] for h in original.history)  # the prompt was shown on both
        assert prompt in result.content
        # Refused after the download, so after deferring: a followup.
        broken: dict[str, tuple[str, bytes, str | None]] = {
            "image": ("broken.png", b"\x89PNG\r\n\x1a\nbroken", "image/png")
        }
        await b.fake.slash(USER, CHANNEL, "generate", {"prompt": prompt}, attachments=broken)
        await b.ephemeral(b.frontend.ctx.t("en", "error.invalid_image"))
        await b.original(await b.fake.slash(USER, CHANNEL, "help"))  # an immediate ephemeral answer
        sent = [(c.kind, body) for c in b.fake.calls if (body := _message_body(c)) is not None]
        assert {"callback", "edit", "followup", "channel_send", "channel_edit"} <= {k for k, _ in sent}
        assert [k for k, body in sent if body.get("allowed_mentions") != {"parse": []}] == []
        assert [m.pings for m in b.fake.messages.values() if m.pings] == []
