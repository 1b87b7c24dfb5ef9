"""Quotas through the real aiogram client and the fake Telegram: the refusal says when the quota resets
(in the user's language), and an admin's /stats shows each user's use."""

from __future__ import annotations

import time
from pathlib import Path

from comfy.workflows import WorkflowRegistry
from gateway.limits import AccessPolicy, Limits
from gateway.models import Role
from gateway.quotas import QuotaPolicy, window_end
from tests.bot.conftest import bench

ADMIN, EN_USER, RU_USER = 7100, 7101, 7102


def resets(before: float, after: float) -> set[str]:
    """The reset time the answer may show (the hour can turn while the test runs)."""
    return {time.strftime("%H:%M", time.gmtime(window_end("hour", t))) for t in (before, after)}


async def test_quota_refusal_says_when_it_resets_and_stats_show_use(
    data_dir: Path, registry: WorkflowRegistry
) -> None:
    quotas = QuotaPolicy({Role.USER: {"hour": 1, "day": 5}})
    limits = Limits(quotas=quotas)
    async with bench(data_dir, registry, limits=limits, access=AccessPolicy(admins=[ADMIN])) as b:
        before = time.time()
        b.fake.send_text(EN_USER, EN_USER, "/generate a first cat --steps 4")
        await b.result(EN_USER)
        b.fake.send_text(EN_USER, EN_USER, "/generate a second cat --steps 4")
        refusal = await b.text_reply(EN_USER, "job quota")
        b.fake.send_text(RU_USER, RU_USER, "/generate кот --steps 4", language_code="ru")
        await b.result(RU_USER)
        b.fake.send_text(RU_USER, RU_USER, "/generate ещё кот --steps 4", language_code="ru")
        ru_refusal = await b.text_reply(RU_USER, "квоту")
        after = time.time()
        assert refusal.text is not None and ru_refusal.text is not None
        assert "You have used up your job quota. It resets at " in refusal.text
        assert any(f"resets at {at} UTC (in " in refusal.text for at in resets(before, after)), refusal.text
        assert refusal.text.endswith(" min).") and " h " in refusal.text
        assert any(f"Она обновится в {at} UTC (через " in ru_refusal.text for at in resets(before, after))
        assert ru_refusal.text.endswith(" мин).")
        assert len(b.bot_msgs(EN_USER)) == 2, "the refused job left no job message"

        b.fake.send_text(ADMIN, ADMIN, "/stats")
        stats = await b.text_reply(ADMIN, "Statistics")
        assert stats.text is not None and "Quota use (this hour / today):" in stats.text
        assert f"{EN_USER}: 1 / 1" in stats.text and f"{RU_USER}: 1 / 1" in stats.text
        b.fake.send_text(ADMIN, ADMIN, "/generate an admin cat --steps 4")
        b.fake.send_text(ADMIN, ADMIN, "/generate another admin cat --steps 4")
        await b.until(lambda: sum(1 for m in b.bot_msgs(ADMIN) if m.photo) == 2)  # admins: no quota here
