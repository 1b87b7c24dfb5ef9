"""Forum topics: every message of a job (notice, progress, result, failure, a button's new job) goes to
the topic its request came from, and nothing of a finished job is edited after its result is out."""

from __future__ import annotations

from pathlib import Path

from comfy.workflows import WorkflowRegistry
from tests.bot.conftest import Bench, bench
from tests.fakes.telegram import StoredMessage

USER, GROUP, TOPIC = 5005, -100_500, 77
SENDS = ("sendMessage", "sendPhoto", "sendDocument", "sendMediaGroup")


def _results(b: Bench) -> list[StoredMessage]:
    return [m for m in b.bot_msgs(GROUP) if m.photo or m.document]


def _assert_all_in_topic(b: Bench) -> None:
    sends = [c for c in b.fake.calls if c.method in SENDS and c.params.get("chat_id") == GROUP]
    assert sends
    assert all(c.params.get("message_thread_id") == TOPIC for c in sends), [
        (c.method, c.params.get("message_thread_id")) for c in sends
    ]
    assert all(m.message_thread_id == TOPIC for m in b.bot_msgs(GROUP))


def _assert_no_edit_after_result(b: Bench, result: StoredMessage) -> None:
    """Every edit of another job message came before the result was sent."""
    calls = [c for c in b.fake.calls if c.params.get("chat_id") == GROUP]
    sent_at = next(
        i
        for i, c in enumerate(calls)
        if c.method in SENDS
        and isinstance(c.result, dict)
        and c.result.get("message_id") == result.message_id
    )
    late = [c for c in calls[sent_at + 1 :] if c.method.startswith("editMessage")]
    assert not late, [(c.method, c.params.get("message_id")) for c in late]


async def test_result_failure_and_button_job_land_in_the_request_topic(
    data_dir: Path, registry: WorkflowRegistry
) -> None:
    async with bench(data_dir, registry, comfy_options={"step_delay_s": 0.05}) as b:
        b.fake.send_text(
            USER,
            GROUP,
            "/generate@comfy_test_bot a fox in a topic --steps 8",
            chat_type="supergroup",
            thread_id=TOPIC,
        )
        first = await b.result(GROUP)
        assert first.message_thread_id == TOPIC
        _assert_no_edit_after_result(b, first)
        # a button's job answers the result message, in its topic
        data = next(
            btn["callback_data"]
            for row in first.buttons
            for btn in row
            if btn["callback_data"].startswith("j:r:")
        )
        b.fake.press_button(USER, GROUP, first.message_id, data)
        await b.until(lambda: len(_results(b)) == 2)
        # a failure, too
        b.comfy.fail_node("KSampler", times=1)
        b.fake.send_text(
            USER,
            GROUP,
            "/generate@comfy_test_bot a failing fox --steps 4",
            chat_type="supergroup",
            thread_id=TOPIC,
        )
        await b.text_reply(GROUP, "Something failed while drawing")
        _assert_all_in_topic(b)
        assert b.fake.count_429 == 0


async def test_a_busy_group_skips_queued_notices_and_each_result_answers_its_command(
    data_dir: Path, registry: WorkflowRegistry
) -> None:
    async with bench(
        data_dir, registry, comfy_options={"step_delay_s": 0.05}, telegram_options={"group_notices": "auto"}
    ) as b:
        commands = [
            b.fake.send_text(
                USER + i,
                GROUP,
                f"/generate@comfy_test_bot fox {i} --steps 4",
                chat_type="supergroup",
                thread_id=TOPIC,
            ).message
            for i in range(6)
        ]
        await b.until(lambda: len(_results(b)) == 6, timeout=60)
        results = _results(b)
        assert {m.reply_to_message_id for m in results} == {c.message_id for c in commands if c is not None}
        notices = [m for m in b.bot_msgs(GROUP) if m.text is not None]
        assert len(notices) < 6, "a busy group does not get one queued notice per job"
        for result in results:
            _assert_no_edit_after_result(b, result)
        _assert_all_in_topic(b)
        assert b.fake.count_429 == 0
