"""Every button press on Discord is answered: a forged ``custom_id``, or one an older version left on a
message, gets the ephemeral ``button.stale`` instead of "This interaction failed" (issue 10, item 2)."""

from __future__ import annotations

from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from tests.bot.discord.conftest import CHANNEL, USER, DBench

FORGED = [
    "garbage",
    ":::",
    "x" * 100,
    "comfybot",
    "comfybot:",
    "comfybot:x:abc",  # an action this version does not have
    "comfybot:r:",  # no job id
    "comfybot:r:abc:notanint",
    "comfybot:u:abc:123",  # index over two digits
    "comfybot:i:" + "a" * 65,  # job id over 64 characters
    "job:reroll:abc",  # a shape of an older version
    "comfybot:r:ab c",
    "ÿ\x00\x01💥",
]


async def test_forged_and_old_custom_ids_are_answered_stale(bench: DBench) -> None:
    stale = bench.frontend.ctx.t("ru", "button.stale")
    old = bench.fake.post_message(CHANNEL, "an old job", FORGED)
    with capture_logs(processors=[merge_contextvars]) as logs:
        for custom_id in FORGED:
            answer = await bench.original(await bench.fake.click(USER, old.id, custom_id, locale="ru"))
            assert answer.ephemeral and answer.content == stale, custom_id
    unmatched = [e for e in logs if e["event"] == "callback_unmatched"]
    assert len(unmatched) == len(FORGED) and all(e["platform"] == "discord" for e in unmatched)


async def test_a_job_button_not_on_the_pressed_message_is_answered_stale(bench: DBench) -> None:
    """discord.py drops a press whose id matches a button template but is not on the message."""
    old = bench.fake.post_message(CHANNEL, "an old job", ["comfybot:i:abc"])
    answer = await bench.original(await bench.fake.click(USER, old.id, "comfybot:r:abc"))
    assert answer.ephemeral and answer.content == bench.frontend.ctx.t("en", "button.stale")


async def test_real_buttons_are_answered_once_and_not_stale(bench: DBench) -> None:
    await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": "a boat", "steps": 4, "seed": 5})
    first = await bench.result()
    info_id = next(c for c in first.custom_ids if c.startswith("comfybot:i:"))
    with capture_logs() as logs:
        info = await bench.original(await bench.fake.click(USER, first.id, info_id))
        gone = bench.fake.post_message(CHANNEL, "a job this gateway never had", ["comfybot:r:nosuchjob"])
        missing = await bench.original(await bench.fake.click(USER, gone.id, "comfybot:r:nosuchjob"))
    assert info.ephemeral and "txt2img" in info.content
    assert missing.content == bench.frontend.ctx.t("en", "button.gone")
    assert not [e for e in logs if e["event"] in ("callback_unmatched", "stale_reply_failed")]
    assert not [c for c in bench.fake.calls if c.kind == "callback" and c.status != 200]
