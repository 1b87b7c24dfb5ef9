"""Seeds shown on Discord can be typed back into /generate: drawn below 2^53, the INTEGER option's limit
(the fake refuses a value beyond it, as the Discord client does) — issue 10, item 3."""

from __future__ import annotations

import re

import pytest

from tests.bot.discord.conftest import CHANNEL, USER, DBench
from tests.fakes.discord import OptionRefused


async def test_a_shown_seed_can_be_sent_back(bench: DBench) -> None:
    for i in range(3):
        await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": f"a fox {i}", "steps": 4})
    results = [await bench.result(count=n) for n in (1, 2, 3)]
    seeds = [int(re.search(r"🌱 (\d+)", m.content)[1]) for m in results]  # type: ignore[index]
    assert all(0 <= s < 2**53 for s in seeds), seeds
    await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": "again", "steps": 4, "seed": seeds[0]})
    again = await bench.result(count=4)
    assert f"🌱 {seeds[0]} " in again.content


async def test_the_fake_refuses_integers_beyond_2_pow_53(bench: DBench) -> None:
    with pytest.raises(OptionRefused):
        await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": "x", "seed": 2**53 + 1})
