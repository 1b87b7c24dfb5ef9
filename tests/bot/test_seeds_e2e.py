"""Seeds every front end can take back: drawn below 2^53 (Discord's INTEGER option stops there), and a
refused seed names the range it must be in, in every language (issue 10, item 3)."""

from __future__ import annotations

import re
from pathlib import Path

from comfy.workflow_params import SEED_MAX
from comfy.workflows import WorkflowRegistry
from tests.bot.conftest import bench

USER, CHAT = 3101, 3101
LOCALES = [("en", "en"), ("ru", "ru"), ("ko", "ko"), ("zh-hant", "zh_Hant")]


async def test_drawn_seeds_stay_below_2_pow_53(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry) as b:
        for i in range(3):
            b.fake.send_text(USER, CHAT, f"/generate a fox {i} --steps 4")
        done = await b.until(
            lambda: (
                len(s := [m for m in b.bot_msgs(CHAT) if m.photo and "🌱" in (m.caption or "")]) >= 3 and s
            )
        )
        seeds = [int(re.search(r"🌱 (\d+)", m.caption or "")[1]) for m in done]  # type: ignore[index]
        assert len(seeds) == 3 and all(0 <= s < 2**53 for s in seeds), seeds


async def test_a_refused_seed_names_the_range(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry) as b:
        renderer = b.frontend.ctx.renderer
        for n, (language, locale) in enumerate(LOCALES):
            chat = CHAT + 1 + n
            for seed in (2**70, -5):
                reason = "too_large" if seed > 0 else "too_small"
                want = renderer.param_error(locale, "seed", reason, {"min": 0, "max": SEED_MAX})
                assert str(SEED_MAX) in want and want != renderer.param_error(locale, "seed", "invalid")
                b.fake.send_text(chat, chat, f"/generate a cat --seed {seed}", language_code=language)
                reply = await b.text_reply(chat, want)
                assert reply.text == want
        assert not b.comfy.received_prompts
