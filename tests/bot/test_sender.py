"""TelegramSender against the fake Bot API with the real aiogram client.

Rate-limit tests share one virtual clock between the sender and the fake, so minutes of limits run
at once and nothing asserts on wall-clock time: they count calls and 429s instead.
"""

from __future__ import annotations

import asyncio
import heapq
import io
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramEntityTooLarge, TelegramForbiddenError
from aiogram.types import BufferedInputFile, InputMediaPhoto, Message
from PIL import Image
from structlog.testing import capture_logs

from bot.telegram.sender import (
    EditOutcome,
    MessageGone,
    Priority,
    SenderClosed,
    SenderLimits,
    TelegramSender,
)
from tests.fakes.telegram import FakeTelegram, RateLimits


class VirtualClock:
    """Time that moves only when told: ``auto`` jumps to a sleeper's deadline, else ``advance()``."""

    def __init__(self, *, auto: bool) -> None:
        self.now = 1000.0
        self.auto = auto
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._slept = asyncio.Event()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        if self.auto:
            self.now += max(0.0, delay)
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + delay, next(self._seq), fut))
        self._slept.set()
        self._slept = asyncio.Event()
        await fut

    async def wait_for_sleeper(self, condition: Callable[[], bool]) -> None:
        """Wait until someone sleeps on this clock while ``condition()`` holds (the sender is idle)."""
        async with asyncio.timeout(5):
            while True:
                slept = self._slept
                if condition() and any(not f.done() for _, _, f in self._sleepers):
                    return
                await slept.wait()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        while self._sleepers and self._sleepers[0][0] <= self.now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)


def png(width: int = 32, height: int = 32, color: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def send_text(bot: Bot, chat_id: int, text: str) -> Callable[[], Awaitable[Message]]:
    return lambda: bot.send_message(chat_id, text)


def edit_text(bot: Bot, chat_id: int, message_id: int, text: str) -> Callable[[], Awaitable[Message | bool]]:
    return lambda: bot.edit_message_text(text, chat_id=chat_id, message_id=message_id)


async def settle(rounds: int = 20) -> None:
    """Let the scheduler and in-flight requests run (no time passes on a virtual clock)."""
    for _ in range(rounds):
        await asyncio.sleep(0.005)


@pytest.fixture
def auto_clock() -> VirtualClock:
    return VirtualClock(auto=True)


@pytest.fixture
async def fake(auto_clock: VirtualClock) -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(clock=auto_clock, limits=RateLimits(slack=0.0)) as f:
        yield f


@pytest.fixture
def bot(fake: FakeTelegram) -> Bot:
    return fake.make_bot()


@pytest.fixture
async def sender(bot: Bot, auto_clock: VirtualClock) -> AsyncIterator[TelegramSender]:
    async with TelegramSender(bot, clock=auto_clock, sleep=auto_clock.sleep) as s:
        yield s


async def test_retry_after_is_waited_out_and_the_same_send_retried_once(
    fake: FakeTelegram, bot: Bot, sender: TelegramSender, auto_clock: VirtualClock
) -> None:
    fake.inject_429("sendMessage", times=2, retry_after=5)
    start = auto_clock.now
    with capture_logs() as logs:
        msg = await sender.send(10, send_text(bot, 10, "result"))
    assert msg.text == "result"
    assert fake.count_429 == 2  # an early retry would have hit the fake's block and counted more
    assert len(fake.calls_of("sendMessage")) == 3
    assert [m.text for m in fake.bot_messages(10)] == ["result"]  # no duplicate
    assert auto_clock.now - start >= 10  # waited 5 s twice (virtual time)
    retry_logs = [e for e in logs if e["event"] == "telegram_retry_after"]
    assert [(e["method"], e["retry_after"], e["chat_id"]) for e in retry_logs] == [("sendMessage", 5, 10)] * 2


async def test_retry_after_on_an_edit_never_falls_back_to_a_new_message(
    fake: FakeTelegram, bot: Bot, sender: TelegramSender
) -> None:
    msg = await sender.send(11, send_text(bot, 11, "Queued #1"))
    fake.inject_429("editMessageText", times=3, retry_after=51)
    outcome = await sender.edit(
        11,
        msg.message_id,
        lambda: bot.edit_message_text("Done", chat_id=11, message_id=msg.message_id),
        final=True,
    )
    assert outcome is EditOutcome.EDITED
    assert fake.count_429 == 3
    assert len(fake.calls_of("sendMessage")) == 1
    [stored] = fake.bot_messages(11)
    assert stored.text == "Done" and len(stored.edits) == 1


async def test_fifty_rapid_progress_edits_are_coalesced_and_the_last_state_wins() -> None:
    clock = VirtualClock(auto=False)
    async with FakeTelegram(clock=clock, limits=RateLimits(slack=0.0)) as fake:
        bot = fake.make_bot()
        async with TelegramSender(bot, clock=clock, sleep=clock.sleep) as sender:
            msg = await sender.send(12, send_text(bot, 12, "Queued"))
            futures = []
            for i in range(50):
                futures.append(
                    sender.submit_edit(
                        12, msg.message_id, edit_text(bot, 12, msg.message_id, f"Sampling {i * 2}%")
                    )
                )
                await asyncio.sleep(0)
                if i % 10 == 9:
                    clock.advance(0.3)  # 50 edits over 1.5 s of virtual time
                    await settle()
            clock.advance(1.0)
            outcomes = await asyncio.gather(*futures)
            assert set(outcomes) == {EditOutcome.EDITED}
            edits = fake.calls_of("editMessageText")
            assert 1 <= len(edits) <= 2  # one per second of the chat's budget (1.5 s of edits), not 50
            assert fake.bot_messages(12)[0].text == "Sampling 98%"
            assert fake.count_429 == 0


async def test_two_hundred_chats_at_once_get_zero_429s_with_the_real_clock() -> None:
    # Real clock and the fake's default tolerance: the sender must stay under 30/s on its own.
    async with FakeTelegram() as fake:
        bot = fake.make_bot()
        async with TelegramSender(bot) as sender:
            sent = await asyncio.gather(
                *(sender.send(chat, send_text(bot, chat, f"result {chat}")) for chat in range(1, 201))
            )
        assert len(sent) == 200
        assert fake.count_429 == 0
        assert all(len(fake.bot_messages(chat)) == 1 for chat in range(1, 201))


async def test_a_group_chat_stays_within_twenty_a_minute(
    fake: FakeTelegram, bot: Bot, sender: TelegramSender, auto_clock: VirtualClock
) -> None:
    start = auto_clock.now
    await asyncio.gather(*(sender.send(-100, send_text(bot, -100, f"m{i}")) for i in range(45)))
    assert fake.count_429 == 0
    times = [c.at for c in fake.calls_of("sendMessage", -100)]
    assert len(times) == 45
    assert max(sum(1 for t in times if w <= t < w + 60) for w in times) <= 20
    assert auto_clock.now - start >= 120  # 45 messages need three windows (virtual time)
    assert [m.text for m in fake.bot_messages(-100)] == [f"m{i}" for i in range(45)]  # order kept


async def test_per_chat_and_global_limits_hold_under_mixed_sends_and_edits(
    fake: FakeTelegram, bot: Bot, sender: TelegramSender
) -> None:
    msgs = await asyncio.gather(*(sender.send(c, send_text(bot, c, "Queued")) for c in range(1, 61)))
    for step in range(5):
        for c, m in zip(range(1, 61), msgs, strict=True):
            sender.submit_edit(c, m.message_id, edit_text(bot, c, m.message_id, f"step {step}"))
        await settle(2)
    await asyncio.gather(
        *(
            sender.edit(c, m.message_id, edit_text(bot, c, m.message_id, "final"), final=True)
            for c, m in zip(range(1, 61), msgs, strict=True)
        )
    )
    assert fake.count_429 == 0
    assert all(fake.bot_messages(c)[0].text == "final" for c in range(1, 61))


async def test_not_modified_is_success(fake: FakeTelegram, bot: Bot, sender: TelegramSender) -> None:
    msg = await sender.send(13, send_text(bot, 13, "same"))
    outcome = await sender.edit(
        13, msg.message_id, lambda: bot.edit_message_text("same", chat_id=13, message_id=msg.message_id)
    )
    assert outcome is EditOutcome.NOT_MODIFIED
    assert fake.calls_of("editMessageText")[0].status == 400


async def test_deleted_message_reports_message_gone_and_caller_sends_anew(
    fake: FakeTelegram, bot: Bot, sender: TelegramSender
) -> None:
    msg = await sender.send(14, send_text(bot, 14, "Sampling 40%"))
    fake.delete_message(14, msg.message_id)
    with pytest.raises(MessageGone) as err:
        await sender.edit(
            14,
            msg.message_id,
            lambda: bot.edit_message_text("Done", chat_id=14, message_id=msg.message_id),
            final=True,
        )
    assert err.value.message_id == msg.message_id and "not found" in err.value.description
    await sender.send(14, send_text(bot, 14, "Done"))
    assert [m.text for m in fake.bot_messages(14)] == ["Done"]
    assert len(fake.calls_of("editMessageText")) == 1  # not retried


async def test_entity_too_large_reaches_the_caller_for_its_document_fallback(
    fake: FakeTelegram, bot: Bot, sender: TelegramSender
) -> None:
    big = b"\xff" * (10 * 1024 * 1024 + 1)
    with pytest.raises(TelegramEntityTooLarge):
        await sender.send(15, lambda: bot.send_photo(15, BufferedInputFile(big, "big.jpg")))
    doc = await sender.send(15, lambda: bot.send_document(15, BufferedInputFile(big, "big.jpg")))
    assert doc.document is not None
    assert [m.kind for m in fake.bot_messages(15)] == ["document"]


async def test_final_edit_wins_over_later_progress_and_media_edit_round_trips(
    fake: FakeTelegram, bot: Bot, sender: TelegramSender
) -> None:
    preview = await sender.send(
        16, lambda: bot.send_photo(16, BufferedInputFile(png(), "p.png"), caption="preview")
    )
    final = png(64, 64, "green")
    done = sender.submit_edit(
        16,
        preview.message_id,
        lambda: bot.edit_message_media(
            InputMediaPhoto(media=BufferedInputFile(final, "r.png"), caption="seed 42"),
            chat_id=16,
            message_id=preview.message_id,
        ),
        final=True,
    )
    late = await sender.edit(
        16,
        preview.message_id,
        lambda: bot.edit_message_caption(chat_id=16, message_id=preview.message_id, caption="Sampling 99%"),
    )
    assert late is EditOutcome.SUPERSEDED
    assert await done is EditOutcome.EDITED
    again = await sender.edit(
        16,
        preview.message_id,
        lambda: bot.edit_message_caption(chat_id=16, message_id=preview.message_id, caption="Sampling 99%"),
    )
    assert again is EditOutcome.SUPERSEDED  # remembered after it was applied, too
    [msg] = fake.bot_messages(16)
    assert msg.file_data == final and msg.caption == "seed 42"
    assert [c.method for c in fake.calls if c.chat_id == 16] == ["sendPhoto", "editMessageMedia"]


async def test_results_go_before_progress_edits_when_the_budget_is_tight() -> None:
    clock = VirtualClock(auto=False)
    async with FakeTelegram(clock=clock, rate_limits_enabled=False) as fake:
        bot = fake.make_bot()
        limits = SenderLimits(global_max=1, global_window_s=1.0)
        async with TelegramSender(bot, clock=clock, sleep=clock.sleep, limits=limits) as sender:
            msgs = []
            for c in range(1, 4):
                clock.advance(1.0)
                msgs.append(await sender.send(c, send_text(bot, c, "Queued")))
            clock.advance(1.0)
            progress = [
                sender.submit_edit(c, m.message_id, edit_text(bot, c, m.message_id, "50%"))
                for c, m in zip((1, 2, 3), msgs, strict=True)
            ]
            result = asyncio.ensure_future(sender.send(9, send_text(bot, 9, "result"), kind=Priority.RESULT))
            for _ in range(4):
                await settle()
                clock.advance(1.0)
            await result
            await asyncio.gather(*progress)
            order = [c.method for c in fake.calls if c.method != "getMe"][3:]
            # the first progress edit was already due; the result overtakes the other two
            assert order == ["editMessageText", "sendMessage", "editMessageText", "editMessageText"]


async def test_sends_keep_order_per_chat_and_close_refuses_new_work(
    fake: FakeTelegram, bot: Bot, auto_clock: VirtualClock
) -> None:
    sender = TelegramSender(bot, clock=auto_clock, sleep=auto_clock.sleep)
    await sender.start()
    results = await asyncio.gather(*(sender.send(17, send_text(bot, 17, f"{i}")) for i in range(8)))
    assert [m.text for m in results] == [str(i) for i in range(8)]
    assert [m.text for m in fake.bot_messages(17)] == [str(i) for i in range(8)]
    await sender.close()
    with pytest.raises(SenderClosed):
        await sender.send(17, send_text(bot, 17, "late"))


async def test_429s_in_two_chats_block_every_chat_for_retry_after() -> None:
    clock = VirtualClock(auto=False)
    async with FakeTelegram(clock=clock, rate_limits_enabled=False) as fake:
        bot = fake.make_bot()
        # block=False: the fake would accept an early retry, so only the sender's own wait holds it back
        fake.inject_429("sendMessage", times=2, retry_after=30, block=False)
        async with TelegramSender(bot, clock=clock, sleep=clock.sleep) as sender:
            with capture_logs() as logs:
                first = [asyncio.ensure_future(sender.send(c, send_text(bot, c, "r"))) for c in (21, 22)]
                # both 429s read and requeued: the sender's wait starts now
                await clock.wait_for_sleeper(lambda: sender.queued == 2)
                third = asyncio.ensure_future(sender.send(23, send_text(bot, 23, "r")))
                clock.advance(29)
                await settle()
                assert fake.calls_of("sendMessage", ok=True) == []  # chat 23 waits too: global limit
                clock.advance(1)
                await asyncio.gather(*first, third)
            scopes = [e["scope"] for e in logs if e["event"] == "telegram_retry_after"]
            assert scopes == ["chat", "global"]
            assert sorted(c.chat_id for c in fake.calls_of("sendMessage", ok=True)) == [21, 22, 23]
            assert fake.count_429 == 2


async def test_close_returns_when_only_emptied_chats_remain(
    fake: FakeTelegram, bot: Bot, auto_clock: VirtualClock
) -> None:
    # Regression: close() used to wait its whole drain timeout when a chat's last edit was superseded.
    sender = TelegramSender(bot, clock=auto_clock, sleep=auto_clock.sleep)
    await sender.start()
    msg = await sender.send(18, send_text(bot, 18, "Queued"))
    await sender.edit(
        18,
        msg.message_id,
        lambda: bot.edit_message_text("Done", chat_id=18, message_id=msg.message_id),
        final=True,
    )
    assert sender.discard_edits(18, msg.message_id) == 0
    sender.submit_edit(
        18, msg.message_id, lambda: bot.edit_message_text("late", chat_id=18, message_id=msg.message_id)
    )
    async with asyncio.timeout(5):
        await sender.close(drain_timeout_s=30)
    assert fake.bot_messages(18)[0].text == "Done"


async def test_a_gone_message_is_remembered_and_not_asked_again(
    fake: FakeTelegram, bot: Bot, sender: TelegramSender
) -> None:
    msg = await sender.send(19, send_text(bot, 19, "Queued"))
    fake.delete_message(19, msg.message_id)
    with pytest.raises(MessageGone):
        await sender.edit(19, msg.message_id, edit_text(bot, 19, msg.message_id, "10%"))
    with pytest.raises(MessageGone):
        await sender.edit(19, msg.message_id, edit_text(bot, 19, msg.message_id, "20%"), final=True)
    assert len(fake.calls_of("editMessageText")) == 1


async def test_server_errors_are_retried_without_duplicates(
    fake: FakeTelegram, bot: Bot, sender: TelegramSender
) -> None:
    fake.fail_next("sendMessage", 502, "Bad Gateway")
    fake.fail_next("editMessageText", 500, "Internal Server Error", times=2)
    msg = await sender.send(20, send_text(bot, 20, "Queued"))
    assert (
        await sender.edit(20, msg.message_id, edit_text(bot, 20, msg.message_id, "Done"), final=True)
        is EditOutcome.EDITED
    )
    assert [c.status for c in fake.calls_of("sendMessage")] == [502, 200]
    assert [c.status for c in fake.calls_of("editMessageText")] == [500, 500, 200]
    assert [m.text for m in fake.bot_messages(20)] == ["Done"]


async def test_other_errors_reach_the_caller_with_a_log_line(
    fake: FakeTelegram, bot: Bot, sender: TelegramSender
) -> None:
    fake.block_bot(24)
    with capture_logs() as logs, pytest.raises(TelegramForbiddenError):
        await sender.send(24, send_text(bot, 24, "hi"))
    [failed] = [e for e in logs if e["event"] == "telegram_send_failed"]
    assert failed["method"] == "sendMessage" and failed["chat_id"] == 24
    assert failed["error"] == "TelegramForbiddenError"
    # the sender keeps working for that chat and others
    fake.block_bot(24, False)
    assert (await sender.send(24, send_text(bot, 24, "again"))).text == "again"


async def test_in_a_busy_group_a_result_overtakes_queued_notices_progress_and_deletes(
    fake: FakeTelegram, bot: Bot, sender: TelegramSender
) -> None:
    group = -100
    first = await asyncio.gather(*(sender.send(group, send_text(bot, group, f"m{i}")) for i in range(20)))
    # The group's budget is spent: everything below waits, and the result must go first.
    cleanup = asyncio.ensure_future(
        sender.send(group, lambda: bot.delete_message(group, first[0].message_id), kind=Priority.CLEANUP)
    )
    notices = [
        asyncio.ensure_future(sender.send(group, send_text(bot, group, f"queued {i}"), kind=Priority.REPLY))
        for i in range(3)
    ]
    progress = [
        sender.submit_edit(group, m.message_id, edit_text(bot, group, m.message_id, "50%"))
        for m in first[1:4]
    ]
    await asyncio.sleep(0)  # the delete and the notices are queued before the result
    assert sender.queued == 7
    result = await sender.send(group, send_text(bot, group, "result"), kind=Priority.RESULT)
    await asyncio.gather(cleanup, *notices, *progress)
    order = [(c.method, c.params.get("text")) for c in fake.calls if c.method != "getMe"][20:]
    assert order[0] == ("sendMessage", "result")
    assert [m for m, _ in order[1:4]] == ["sendMessage"] * 3  # the notices, in their order
    assert [t for _, t in order[1:4]] == ["queued 0", "queued 1", "queued 2"]
    assert [m for m, _ in order[4:7]] == ["editMessageText"] * 3
    assert order[7][0] == "deleteMessage"
    assert result.text == "result" and fake.count_429 == 0
