"""Every button press on Discord is answered: a forged ``custom_id``, or one an older version left on a
message, gets the ephemeral ``button.stale`` instead of "This interaction failed" (issue 10, item 2)."""

from __future__ import annotations

import random
import string
from collections import Counter

from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from bot.discord.views import JobAction, custom_id
from tests.bot.discord.conftest import CHANNEL, OTHER, USER, DBench

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


def _random_custom_ids(rng: random.Random, count: int) -> list[str]:
    """``count`` custom_ids Discord would carry (1..100 characters), some behind our own prefix."""
    alphabets = [string.printable, "comfybot:crvuia0123456789abcdef", "ÿ💥🔁" + string.ascii_letters]
    return [
        (
            rng.choice(["", "comfybot:", "comfybot:r:", "job:"])
            + "".join(rng.choices(rng.choice(alphabets), k=100))
        )[: rng.randint(1, 100)]
        for _ in range(count)
    ]


def _every_custom_id_shape(job: str, foreign: str) -> list[str]:
    """Every ``custom_id`` our views produce, with our own, someone else's, unknown and malformed job ids
    and image indexes (and the one action Discord never shows, ``a``), plus the forged ones above."""
    jobs = [job, foreign, "0" * 16, "nosuchjob", "", "a" * 65]
    shapes = [
        custom_id(action, j) + idx
        for action in JobAction
        for j in jobs
        for idx in ("", ":0", ":1", ":99", ":100", ":x")
    ]
    return shapes + [f"comfybot:a:{j}" for j in jobs] + FORGED


async def test_every_custom_id_shape_and_random_ids_get_exactly_one_response(bench: DBench) -> None:
    await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": "a boat", "steps": 4, "seed": 5})
    first = await bench.result()
    await bench.fake.slash(OTHER, CHANNEL, "generate", {"prompt": "a cart", "steps": 4, "seed": 6})
    second = await bench.result(count=2)
    job, foreign = (m.custom_ids[0].split(":")[2] for m in (first, second))
    assert job != foreign
    shapes = _every_custom_id_shape(job, foreign)
    presses = [(USER, c) for c in shapes] + [(OTHER, c) for c in shapes]
    presses += [(USER, c) for c in _random_custom_ids(random.Random(10), 200)]
    with capture_logs() as logs:
        inters = []
        for user, cid in presses:
            msg = bench.fake.post_message(CHANNEL, "a job message", [cid])
            inters.append(await bench.fake.click(user, msg.id, cid))
        await bench.until(lambda: all(i.callback is not None for i in inters), timeout=60)
    callbacks = Counter(
        c.path.split("/")[2] for c in bench.fake.calls if c.kind == "callback" and c.status == 200
    )
    unanswered = [cid for (_, cid), i in zip(presses, inters, strict=True) if callbacks[str(i.id)] != 1]
    assert not unanswered, unanswered[:5]
    assert not [c for c in bench.fake.calls if c.kind == "callback" and c.status != 200]
    assert not [e for e in logs if e["log_level"] in {"error", "critical"} or "failed" in e["event"]]
    events = {e["event"] for e in logs}
    assert {"button_pressed", "callback_unmatched"} <= events, "both the job buttons and the stale answer ran"
