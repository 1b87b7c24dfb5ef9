"""Bad /generate input gets an ephemeral answer in the user's language, naming the field and range;
nothing crashes and no job runs. ComfyUI being down is a localized failure on the job message."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from bot.discord.context import DiscordOptions
from comfy.workflows import WorkflowRegistry, load_workflows
from gateway.redis_store import RedisStore
from tests.bot.conftest import copy_workflow, png
from tests.bot.discord.conftest import CHANNEL, USER, DBench, dbench
from tests.conftest import RedisServer
from tests.fakes.discord import CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, EPHEMERAL

LOCALES = [("en-US", "en"), ("ru", "ru"), ("ko", "ko"), ("zh-TW", "zh_Hant")]


def _text(bench: DBench, locale: str, key: str, **values: object) -> str:
    return bench.frontend.ctx.t(locale, key, **values)


@pytest.mark.parametrize(("discord_locale", "locale"), LOCALES)
async def test_steps_out_of_range_names_field_and_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, discord_locale: str, locale: str
) -> None:
    """steps=30 is within the command's bounds (the widest any workflow allows, 1..60), so the client
    sends it, but the operator's ``quick`` workflow stops at 8. The refusal names the field and range and
    is private from the start: it used to show a public "thinking…" first, then delete it."""
    copy_workflow(tmp_path, "quick", "few steps", {"steps": {"max": 8, "default": 4}})
    data = tmp_path / "data"
    data.mkdir()
    async with dbench(data, load_workflows([tmp_path]), monkeypatch) as bench:
        inter = await bench.fake.slash(
            USER,
            CHANNEL,
            "generate",
            {"prompt": "a cat", "workflow": "quick", "steps": 30},
            locale=discord_locale,
        )
        field = _text(bench, locale, "field.steps")
        answer = await bench.ephemeral(field)
        assert "1" in answer.content and "8" in answer.content
        assert answer.content.startswith(_text(bench, locale, "error.param", field=field, reason="")[:3])
        # One ephemeral answer to the interaction itself: no deferred public message, no followup, no delete.
        assert inter.callback is not None and inter.callback["type"] == CHANNEL_MESSAGE
        assert bench.fake.original(inter) is answer and answer.history[0]["flags"] & EPHEMERAL
        assert bench.fake.channel_messages(CHANNEL) == [answer]
        assert not bench.fake.calls_of("followup") and not bench.fake.calls_of("delete")
        assert not bench.comfy.received_prompts


async def test_unknown_workflow(bench: DBench) -> None:
    await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": "a cat", "workflow": "nope"}, locale="ko")
    answer = await bench.ephemeral("nope")
    assert answer.content == _text(
        bench, "ko", "error.unknown_workflow_named", name="nope", names=", ".join(bench.registry.names())
    )


async def test_non_image_attachment(bench: DBench) -> None:
    await bench.fake.slash(
        USER,
        CHANNEL,
        "generate",
        {"prompt": "redraw"},
        attachments={"image": ("notes.txt", b"hello", "text/plain")},
        locale="zh-TW",
    )
    await bench.ephemeral(_text(bench, "zh_Hant", "error.not_an_image"))
    assert not bench.comfy.uploads


async def test_huge_attachment_is_refused_before_download(bench: DBench) -> None:
    await bench.fake.slash(
        USER,
        CHANNEL,
        "generate",
        {"prompt": "redraw"},
        attachments={"image": ("big.png", png(8, 8), "image/png")},
        declared_sizes={"image": 50 * 1024 * 1024},
        locale="ru",
    )
    size, limit = _text(bench, "ru", "unit.mib", n="50"), _text(bench, "ru", "unit.mib", n="20")
    answer = await bench.ephemeral(_text(bench, "ru", "error.photo_too_large", size=size, limit=limit))
    assert "50 МиБ" in answer.content and "20 МиБ" in answer.content  # COMFYBOT_MAX_IMAGE_BYTES, in MiB
    assert answer.ephemeral
    assert not [c for c in bench.fake.calls if c.path.startswith("/attachments")]


async def test_corrupt_image_is_refused_by_the_gateway(bench: DBench) -> None:
    await bench.fake.slash(
        USER,
        CHANNEL,
        "generate",
        {"prompt": "redraw"},
        attachments={"image": ("broken.png", b"\x89PNG\r\n\x1a\nbroken", "image/png")},
    )
    await bench.ephemeral(_text(bench, "en", "error.invalid_image"))
    assert not bench.comfy.received_prompts


async def test_comfyui_down_is_a_localized_failure(bench: DBench) -> None:
    await bench.comfy.refuse_connections()
    inter = await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": "a cat", "steps": 4}, locale="ru")
    ref = _text(bench, "ru", "error.ref", rid="")[:6]
    msg = await bench.until(lambda: (m := bench.fake.original(inter)) and ref in m.content and m, timeout=40)
    assert _text(bench, "ru", "error.comfy_unreachable").split("\n")[0] in msg.content
    assert msg.custom_ids == [] and not msg.attachments


async def test_a_slow_settings_store_defers_first_and_still_answers_privately(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    """Checking before deferring must not cost Discord's 3 seconds: when the user's settings do not come
    within ``prevalidate_s`` (Redis stalled here), the interaction is deferred, and the refusal is then a
    followup and the "thinking…" message is removed."""
    options = DiscordOptions(prevalidate_s=0.2)
    backend = RedisStore(redis_server.url)
    async with dbench(tmp_path, registry, monkeypatch, options=options, backend=backend) as bench:
        assert redis_server.proc is not None
        redis_server.proc.send_signal(signal.SIGSTOP)
        try:
            inter = await bench.fake.slash(
                USER, CHANNEL, "generate", {"prompt": "a cat", "workflow": "hires", "batch": 3}
            )
            await bench.until(lambda: inter.callback is not None)
            assert inter.callback is not None and inter.callback["type"] == DEFERRED_CHANNEL_MESSAGE
        finally:
            redis_server.proc.send_signal(signal.SIGCONT)
        await bench.ephemeral(_text(bench, "en", "field.batch"))
        await bench.until(lambda: (m := bench.fake.original(inter)) is not None and m.deleted)
        assert not bench.comfy.received_prompts
