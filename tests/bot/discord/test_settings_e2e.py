"""/settings: show and save a user's defaults; /generate uses them (an explicit option still wins)."""

from __future__ import annotations

import io

from PIL import Image

from tests.bot.conftest import png
from tests.bot.discord.conftest import CHANNEL, OTHER, USER, DBench


async def test_settings_show_save_and_apply(bench: DBench) -> None:
    t = bench.frontend.ctx.t
    shown = await bench.original(await bench.fake.slash(USER, CHANNEL, "settings", locale="ru"))
    assert shown.ephemeral and shown.content == t(
        "ru", "settings.text", workflow="txt2img", ar=t("ru", "settings.auto"), language=t("ru", "lang.ru")
    )
    saved = await bench.original(
        await bench.fake.slash(USER, CHANNEL, "settings", {"workflow": "hires", "ar": "16x9"}, locale="ru")
    )
    assert (
        saved.content.startswith(t("ru", "settings.saved"))
        and "hires" in saved.content
        and "16:9" in saved.content
    )
    assert await bench.gateway.settings.get("discord:4242") == {"workflow": "hires", "ar": "16:9"}

    await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": "defaults", "steps": 4})
    first = await bench.result()
    assert "hires" in first.content
    with Image.open(io.BytesIO(first.attachments[0].data)) as img:
        assert img.width > img.height
    # Someone else's /generate is not affected; an explicit option wins over the default.
    await bench.fake.slash(OTHER, CHANNEL, "generate", {"prompt": "theirs", "steps": 4})
    assert "txt2img" in (await bench.result(count=2)).content
    await bench.fake.slash(
        USER, CHANNEL, "generate", {"prompt": "square", "steps": 4, "workflow": "txt2img", "ar": "1:1"}
    )
    third = await bench.result(count=3)
    with Image.open(io.BytesIO(third.attachments[0].data)) as img:
        assert img.width == img.height


async def test_image_with_a_text_default_still_runs_img2img(bench: DBench) -> None:
    await bench.fake.slash(USER, CHANNEL, "settings", {"workflow": "txt2img"})
    await bench.fake.slash(
        USER,
        CHANNEL,
        "generate",
        {"prompt": "redraw", "steps": 4},
        attachments={"image": ("p.png", png(64, 64), "image/png")},
    )
    assert "img2img" in (await bench.result()).content


async def test_bad_settings_are_refused(bench: DBench) -> None:
    t = bench.frontend.ctx.t
    bad_wf = await bench.original(
        await bench.fake.slash(USER, CHANNEL, "settings", {"workflow": "nope"}, locale="ko")
    )
    assert bad_wf.ephemeral and bad_wf.content.startswith(
        t("ko", "error.unknown_workflow_named", name="nope", names="")[:4]
    )
    bad_ar = await bench.original(
        await bench.fake.slash(USER, CHANNEL, "settings", {"ar": "wide"}, locale="ko")
    )
    assert bad_ar.content == bench.frontend.ctx.renderer.param_error("ko", "ar", "bad_aspect")
    assert await bench.gateway.settings.get("discord:4242") == {}
