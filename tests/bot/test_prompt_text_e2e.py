"""Odd Unicode in a prompt: what reaches ComfyUI is the visible text, and an invisible prompt is none."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from comfy.workflows import WorkflowRegistry
from tests.bot.conftest import bench
from tests.fakes.comfyui import FakeComfyUI

USER = 7007

# (what the user types after /generate, the positive prompt ComfyUI gets, the negative it gets)
TABLE = [
    ("a \u202ecat\u202c in the rain", "a cat in the rain", None),  # RTL override
    ("\x1b[31mred\x1b[0m fox", "red fox", None),  # ANSI colour
    ("nul\x00byte fox\x07", "nulbyte fox", None),  # NUL and BEL
    ("👩\u200d💻 coding at night", "👩\u200d💻 coding at night", None),  # ZWJ emoji kept whole
    ("고양이\u200b가 달빛\u3000아래", "고양이가 달빛 아래", None),  # Korean, a ZWSP, ideographic space
    ('кошка --neg "\x1b[1mblurry\u200b"', "кошка", "blurry"),  # the negative is cleaned too
]


def _sent(comfy: FakeComfyUI, count: int) -> bool:
    return len(comfy.received_prompts) == count


def _texts(prompt: dict[str, object]) -> tuple[str, str]:
    graph = prompt["prompt"]
    assert isinstance(graph, dict)
    return graph["6"]["inputs"]["text"], graph["7"]["inputs"]["text"]


async def test_prompt_text_reaching_comfyui(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry) as b:
        for n, (typed, positive, negative) in enumerate(TABLE, start=1):
            user = USER + n  # one user each: no pending cap between the rows
            b.fake.send_text(user, user, f"/generate {typed} --steps 2")
            await b.until(partial(_sent, b.comfy, n))
            got_positive, got_negative = _texts(b.comfy.received_prompts[-1])
            assert got_positive == positive, typed
            if negative is not None:
                assert got_negative == negative, typed
            result = await b.result(user)
            assert positive in (result.caption or ""), "the caption shows what was drawn"


async def test_an_invisible_prompt_is_no_prompt(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry) as b:
        for n, typed in enumerate(("\u200b\u200b\u200b", "\u202e\u2066\ufeff", "\x1b[0m\x00", "\u3164")):
            user = USER + n
            b.fake.send_text(user, user, f"/generate {typed}")
            await b.text_reply(user, "Tell me what to draw")
        b.fake.send_text(USER, USER, "/generate \u200b --steps 3", language_code="ko")
        await b.text_reply(USER, b.frontend.ctx.t("ko", "prompt.missing").splitlines()[0])
        assert not b.comfy.received_prompts, "no GPU time for an invisible caption"
