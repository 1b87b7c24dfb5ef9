"""Odd Unicode in /generate's prompt and negative: ComfyUI gets the visible text, the job message shows it,
and a prompt of only invisible characters is refused like an empty one — no job runs."""

from __future__ import annotations

from functools import partial

from tests.bot.discord.conftest import CHANNEL, USER, DBench
from tests.fakes.comfyui import FakeComfyUI

# (prompt option, negative option or None, the positive ComfyUI gets, the negative it gets)
TABLE = [
    ("a \u202ecat\u202c in the rain", None, "a cat in the rain", None),  # RTL override
    ("\x1b[31mred\x1b[0m fox", None, "red fox", None),  # ANSI colour
    ("nul\x00byte fox\x07", None, "nulbyte fox", None),  # NUL and BEL
    ("👩\u200d💻 coding at night", None, "👩\u200d💻 coding at night", None),  # ZWJ emoji kept whole
    ("고양이\u200b가 달빛\u3000아래", None, "고양이가 달빛 아래", None),  # Korean, ZWSP, ideographic space
    ("кошка", "\x1b[1mblurry\u200b\u202e", "кошка", "blurry"),  # the negative option is cleaned too
]


def _sent(comfy: FakeComfyUI, count: int) -> bool:
    return len(comfy.received_prompts) == count


def _texts(prompt: dict[str, object]) -> tuple[str, str]:
    graph = prompt["prompt"]
    assert isinstance(graph, dict)
    return graph["6"]["inputs"]["text"], graph["7"]["inputs"]["text"]


async def test_prompt_text_reaching_comfyui(bench: DBench) -> None:
    for n, (prompt, negative, positive, clean_negative) in enumerate(TABLE, start=1):
        options: dict[str, object] = {"prompt": prompt, "steps": 2}
        if negative is not None:
            options["negative"] = negative
        await bench.fake.slash(USER + n, CHANNEL, "generate", options)
        await bench.until(partial(_sent, bench.comfy, n))
        got_positive, got_negative = _texts(bench.comfy.received_prompts[-1])
        assert got_positive == positive, prompt
        if clean_negative is not None:
            assert got_negative == clean_negative, negative
        result = await bench.result(count=n)
        assert positive in result.content and "\x1b" not in result.content, "it shows what was drawn"


async def test_an_invisible_prompt_is_refused_like_an_empty_one(bench: DBench) -> None:
    ctx = bench.frontend.ctx
    invisible = [
        ("\u200b\u200b\u200b", "en", "en-US"),
        ("\u202e\ufeff\x1b[0m\x00", "ko", "ko"),
        ("\u3164", "ru", "ru"),
    ]
    for n, (prompt, locale, discord_locale) in enumerate(invisible):
        field, reason = ctx.t(locale, "field.prompt"), ctx.t(locale, "reason.required")
        required = ctx.t(locale, "error.param", field=field, reason=reason)
        await bench.fake.slash(USER + n, CHANNEL, "generate", {"prompt": prompt}, locale=discord_locale)
        answer = await bench.ephemeral(required)
        assert answer.content == required
    assert not bench.comfy.received_prompts, "no GPU time for an invisible prompt"
