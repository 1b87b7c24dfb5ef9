"""Buttons: ✖️ Cancel while it runs; 🔁 Reroll, 🎲 Variations, ⬆️ Upscale and ℹ️ Info under a result."""

from __future__ import annotations

import logging
import random
import string
from functools import partial
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bot.telegram.callbacks import JobAction, SettingKey
from comfy.workflows import WorkflowRegistry
from gateway.limits import AccessPolicy
from gateway.redis_store import RedisStore
from tests.bot.conftest import Bench, bench
from tests.fakes.telegram import StoredMessage

USER, CHAT = 4004, 4004


def _button(msg: StoredMessage, prefix: str) -> str:
    for row in msg.buttons:
        for btn in row:
            if btn["callback_data"].startswith(prefix):
                return str(btn["callback_data"])
    raise AssertionError(f"no {prefix} button in {msg.buttons}")


def _results(b: Bench) -> list[StoredMessage]:
    return [m for m in b.bot_msgs(CHAT) if m.photo or m.document]


async def _first_result(b: Bench) -> StoredMessage:
    b.fake.send_text(USER, CHAT, "/generate a red fox --seed 7 --steps 4")
    return await b.result(CHAT)


def _seeds(b: Bench) -> list[int]:
    return [
        node["inputs"]["seed"]
        for p in b.comfy.received_prompts
        for node in p["prompt"].values()
        if node.get("class_type") == "KSampler"
    ]


async def test_reroll_runs_the_same_prompt_with_a_new_seed(
    data_dir: Path, registry: WorkflowRegistry
) -> None:
    async with bench(data_dir, registry) as b:
        first = await _first_result(b)
        b.fake.press_button(USER, CHAT, first.message_id, _button(first, "j:r:"))
        await b.until(lambda: len(_results(b)) == 2)
        second = _results(b)[1]
        assert "a red fox" in (second.caption or "")
        seeds = _seeds(b)
        assert len(seeds) == 2 and seeds[0] == 7 and seeds[1] != 7
        assert b.fake.answered_callbacks, "the button press was answered"


async def test_variations_make_several_new_pictures(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry) as b:
        first = await _first_result(b)
        b.fake.press_button(USER, CHAT, first.message_id, _button(first, "j:v:"))
        # An album of several pictures, then a message with the buttons (⬆️ 1, ⬆️ 2…).
        await b.until(lambda: b.fake.calls_of("sendMediaGroup", CHAT, ok=True))
        buttons = await b.until(
            lambda: next(
                (
                    m
                    for m in b.bot_msgs(CHAT)
                    if m.text and any("j:u:" in x["callback_data"] for r in m.buttons for x in r)
                ),
                None,
            )
        )
        ups = [x for r in buttons.buttons for x in r if x["callback_data"].startswith("j:u:")]
        assert len(ups) >= 2
        assert "a red fox" in (buttons.text or "")


async def test_upscale_runs_the_upscale_workflow_on_that_output(
    data_dir: Path, registry: WorkflowRegistry
) -> None:
    async with bench(data_dir, registry) as b:
        first = await _first_result(b)
        b.fake.press_button(USER, CHAT, first.message_id, _button(first, "j:u:"))
        await b.until(lambda: len(_results(b)) == 2)
        upscaled = _results(b)[1]
        assert "upscale" in (upscaled.caption or "")
        assert "🌱" not in (upscaled.caption or ""), "no seed line for a workflow without a seed"
        labels = [x["callback_data"] for r in upscaled.buttons for x in r]
        assert not any(x.startswith("j:u:") for x in labels), "no upscale of an upscale"
        assert not any(x.startswith(("j:r:", "j:v:")) for x in labels), "a new seed means nothing here"
        assert any(x.startswith("j:i:") for x in labels)
        job_texts = [str(c.params.get("text", "")) for c in b.fake.calls_of("sendMessage", CHAT)]
        assert any("Upscale a picture" in t for t in job_texts), job_texts
        assert not any("(no prompt)" in t for t in job_texts), job_texts
        b.fake.send_text(USER, CHAT, "/history")
        history = await b.text_reply(CHAT, "Your recent jobs")
        assert "Upscale a picture" in (history.text or "")
        rerolls = [x["callback_data"] for r in history.buttons for x in r]
        assert len(rerolls) == 1, "a 🔁 for the picture, none for its upscale"
        assert any(
            n.get("class_type") == "ImageUpscaleWithModel"
            for p in b.comfy.received_prompts
            for n in p["prompt"].values()
        )


async def test_info_shows_request_id_seed_and_workflow(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry) as b:
        first = await _first_result(b)
        update = b.fake.press_button(USER, CHAT, first.message_id, _button(first, "j:i:"))
        query_id = update.data["callback_query"]["id"]
        answer = await b.until(lambda: b.fake.answered_callbacks.get(query_id))
        text = str(answer.get("text", ""))
        assert "txt2img" in text and "7" in text
        assert "steps=4" in text and "cfg=7 " in text, "whole numbers without '.0'"
        job_request = (await b.gateway.recent_jobs(str(USER), 1))[0].request
        assert job_request.request_id[:8] in text
        assert len(text) <= 200


async def test_cancel_button_while_running(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry, comfy_options={"step_delay_s": 0.5}) as b:
        b.fake.send_text(USER, CHAT, "/generate a slow painting --steps 30")
        job_msg = await b.until(
            lambda: next(
                (
                    m
                    for m in b.bot_msgs(CHAT)
                    if any("j:c:" in x["callback_data"] for r in m.buttons for x in r)
                ),
                None,
            )
        )
        b.fake.press_button(USER, CHAT, job_msg.message_id, _button(job_msg, "j:c:"))
        msg = await b.text_reply(CHAT, "Cancelled")
        assert msg.message_id == job_msg.message_id, "the job's own message says so"
        assert not msg.buttons
        assert not _results(b)


async def test_cancel_button_of_someone_else_is_refused(data_dir: Path, registry: WorkflowRegistry) -> None:
    group = -100777
    async with bench(data_dir, registry, comfy_options={"step_delay_s": 0.5}) as b:
        b.fake.send_text(
            USER, group, "/generate@comfy_test_bot a slow painting --steps 30", chat_type="supergroup"
        )
        job_msg = await b.until(
            lambda: next(
                (
                    m
                    for m in b.bot_msgs(group)
                    if any("j:c:" in x["callback_data"] for r in m.buttons for x in r)
                ),
                None,
            )
        )
        update = b.fake.press_button(USER + 1, group, job_msg.message_id, _button(job_msg, "j:c:"))
        query_id = update.data["callback_query"]["id"]
        answer = await b.until(lambda: b.fake.answered_callbacks.get(query_id))
        assert "already finished or is not yours" in str(answer.get("text"))
        assert b.fake.message(group, job_msg.message_id).buttons, "the job goes on"
        b.fake.press_button(USER, group, job_msg.message_id, _button(job_msg, "j:c:"))
        await b.text_reply(group, "Cancelled")


async def test_cancel_command_replying_to_the_job_message(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry, comfy_options={"step_delay_s": 0.5}) as b:
        b.fake.send_text(USER, CHAT, "/generate a slow painting --steps 30")
        job_msg = await b.until(lambda: next((m for m in b.bot_msgs(CHAT) if m.buttons), None))
        b.fake.send_text(USER, CHAT, "/cancel", reply_to_message_id=job_msg.message_id)
        await b.text_reply(CHAT, "Cancelled")


async def test_forged_or_old_callback_data_is_answered(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry) as b:
        first = await _first_result(b)
        for data in ("garbage", ":::", "j:c:x:notanint", "x" * 64, "j:", "job:reroll:1"):
            update = b.fake.press_button(USER, CHAT, first.message_id, data)
            query_id = update.data["callback_query"]["id"]
            answer = await b.until(partial(b.fake.answered_callbacks.get, query_id))
            assert "no longer valid" in str(answer.get("text")), data
        assert len(_results(b)) == 1, "no job started"


async def test_result_buttons_of_someone_else_are_refused(data_dir: Path, registry: WorkflowRegistry) -> None:
    group = -100778
    async with bench(data_dir, registry) as b:
        b.fake.send_text(USER, group, "/generate@comfy_test_bot a cat", chat_type="supergroup")
        first = await b.until(
            lambda: next(
                (
                    m
                    for m in b.bot_msgs(group)
                    if m.photo
                    or m.buttons
                    and any("j:r:" in x["callback_data"] for r in m.buttons for x in r)
                ),
                None,
            )
        )
        for prefix in ("j:r:", "j:v:", "j:u:", "j:i:"):
            update = b.fake.press_button(USER + 1, group, first.message_id, _button(first, prefix))
            query_id = update.data["callback_query"]["id"]
            answer = await b.until(partial(b.fake.answered_callbacks.get, query_id))
            assert "Only the person who asked" in str(answer.get("text")), prefix
        assert len(await b.gateway.recent_jobs(str(USER + 1), 5)) == 0, "no job started for B"
        assert len(await b.gateway.recent_jobs(str(USER), 5)) == 1


async def test_in_a_remix_chat_anyone_may_reroll_on_their_own_account(
    data_dir: Path, registry: WorkflowRegistry
) -> None:
    """A chat the operator opened for remixing (``COMFYBOT_REMIX_CHATS``): another member's Reroll runs
    the prompt as a job of theirs; Info answers without the internal server address; Cancel stays the
    owner's. Elsewhere (the test above) the same presses are refused."""
    group, other = -100790, USER + 1
    async with bench(data_dir, registry, access=AccessPolicy(remix_chats=[group])) as b:
        b.fake.send_text(USER, group, "/generate@comfy_test_bot a cat on a roof", chat_type="supergroup")
        first = await b.until(lambda: next((m for m in b.bot_msgs(group) if m.photo), None))
        update = b.fake.press_button(other, group, first.message_id, _button(first, "j:i:"))
        info = await b.until(partial(b.fake.answered_callbacks.get, update.data["callback_query"]["id"]))
        assert "Only the person" not in str(info.get("text")) and "127.0.0.1" not in str(info.get("text"))
        b.fake.press_button(other, group, first.message_id, _button(first, "j:r:"))
        await b.until(lambda: len(b.comfy.received_prompts) == 2)
        (theirs,) = await b.gateway.recent_jobs(str(other), 5)
        assert "a cat on a roof" in str(theirs.request.params) and theirs.request.chat_id == str(group)
        assert len(await b.gateway.recent_jobs(str(USER), 5)) == 1, "not charged to the owner"


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_reroll_pressed_twice_fast_is_one_job_and_two_answers(
    data_dir: Path, registry: WorkflowRegistry, request: pytest.FixtureRequest, store: str
) -> None:
    """With Redis the press is claimed there, so it holds across front-end replicas too (the store
    contract holds two connections to it; ``test_redis_claim_holds_across_processes``)."""
    backend = RedisStore(request.getfixturevalue("redis_server").url) if store == "redis" else None
    async with bench(data_dir, registry, backend=backend) as b:
        first = await _first_result(b)
        reroll = _button(first, "j:r:")
        # Both presses are in the bot's next getUpdates: handled concurrently, as a double tap is.
        presses = [b.fake.press_button(USER, CHAT, first.message_id, reroll) for _ in range(2)]
        ids = [p.data["callback_query"]["id"] for p in presses]
        answers = await b.until(
            lambda: (
                all(i in b.fake.answered_callbacks for i in ids)
                and [str(b.fake.answered_callbacks[i].get("text")) for i in ids]
            )
        )
        t = b.frontend.ctx.t
        assert sorted(answers) == sorted([t("en", "button.queued"), t("en", "button.already_started")])
        await b.until(lambda: len(_results(b)) == 2)
        assert len(await b.gateway.recent_jobs(str(USER), 5)) == 2, "the first job and one reroll"
        # Another button of the same message is another press.
        b.fake.press_button(USER, CHAT, first.message_id, _button(first, "j:v:"))
        await b.until(lambda: len(b.comfy.received_prompts) == 3)


async def test_hires_steps_set_both_passes_and_info_names_both(
    data_dir: Path, registry: WorkflowRegistry
) -> None:
    """``--steps`` is the first KSampler's, ``--hires-steps`` the upscale pass's; Info shows both."""
    async with bench(data_dir, registry) as b:
        b.fake.send_text(USER, CHAT, "/generate a castle --wf hires --steps 4 --hires-steps 3 --seed 5")
        result = await b.result(CHAT)
        graph = b.comfy.received_prompts[-1]["prompt"]
        assert graph["3"]["class_type"] == graph["11"]["class_type"] == "KSampler"
        assert (graph["3"]["inputs"]["steps"], graph["11"]["inputs"]["steps"]) == (4, 3)
        update = b.fake.press_button(USER, CHAT, result.message_id, _button(result, "j:i:"))
        query_id = update.data["callback_query"]["id"]
        answer = await b.until(lambda: b.fake.answered_callbacks.get(query_id))
        assert "steps=4 hires_steps=3" in str(answer.get("text", ""))


def _random_callback_data(rng: random.Random, count: int) -> list[str]:
    """``count`` strings Telegram would carry: valid UTF-8, 1..64 bytes, some behind our own prefixes."""
    alphabets = [string.printable, "j:s|l0123456789abcdef", "".join(map(chr, range(0x400, 0x450))) + "🔁✖️⬆️"]
    out: list[str] = []
    while len(out) < count:
        text = rng.choice(["", "j:", "s|", "l:", "j:r:", "s|wf|"])
        alphabet = rng.choice(alphabets)
        text += "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 64)))
        while len(text.encode()) > 64:
            text = text[:-1]
        if text:
            out.append(text)
    return out


def _every_callback_shape(job: str, other_job: str) -> list[str]:
    """Every payload our keyboards have produced (valid, unknown and someone else's job ids, odd
    ``idx``), the settings and language shapes, and the formats of older versions."""
    jobs = [job, other_job, "0" * 16, "nothex", "", "x" * 40]
    shapes = [f"j:{a.value}:{j}:{i}" for a in JobAction for j in jobs for i in ("0", "1", "99", "-1", "x")]
    shapes += [f"j:{a.value}:{job}" for a in JobAction] + [f"j:{a.value}" for a in JobAction]
    shapes += [f"s|{k.value}|{v}" for k in SettingKey for v in ("", "txt2img", "16:9", "en", "nope", "|")]
    shapes += ["s|", "s|zz|", "s", "l:en", "l:ru", "l:ko", "l:zh_Hant", "l:xx", "l:", "l"]
    shapes += [f"job:{name}:{job}" for name in ("reroll", "cancel", "upscale", "info", "variations")]
    shapes += ["job:upscale:1:2", "garbage", ":::", "|||", "j:", "j:c:x:notanint", "x" * 64, "j:z:1:0"]
    return shapes


async def test_every_callback_shape_and_random_bytes_get_exactly_one_answer(
    data_dir: Path, registry: WorkflowRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """Every press is answered once and nothing crashes: the owner, another member of the group and
    random bytes press every shape (valid presses start jobs; the rest are refused or stale)."""
    group, other = -100779, USER + 1
    async with bench(data_dir, registry, capacity=4) as b:
        b.fake.send_text(USER, group, "/generate@comfy_test_bot a cat --seed 3", chat_type="supergroup")
        first = await b.result(group)
        job = _button(first, "j:r:").split(":")[2]
        b.fake.send_text(other, group, "/generate@comfy_test_bot a dog --seed 4", chat_type="supergroup")
        other_job = await b.until(
            lambda: next(
                (
                    d.split(":")[2]
                    for m in b.bot_msgs(group)
                    for r in m.buttons
                    for x in r
                    if (d := x["callback_data"]).startswith("j:") and job not in d
                ),
                None,
            )
        )
        shapes = _every_callback_shape(job, other_job)
        payloads = [(USER, d) for d in shapes] + [(other, d) for d in shapes]
        payloads += [(USER, d) for d in _random_callback_data(random.Random(10), 200)]
        with capture_logs() as logs, caplog.at_level(logging.WARNING):
            ids = {}
            for user, data in payloads:
                update = b.fake.press_button(user, group, first.message_id, data)
                ids[update.data["callback_query"]["id"]] = data
            await b.until(lambda: set(ids) <= set(b.fake.answered_callbacks), timeout=60)
            answers = [str(c.params.get("callback_query_id")) for c in b.fake.calls_of("answerCallbackQuery")]
        twice = {ids[i] for i in ids if answers.count(i) != 1}
        assert not twice, f"answered more than once: {sorted(twice)[:5]}"
        crashes = [e for e in logs if e["log_level"] in {"error", "critical"} or "failed" in e["event"]]
        assert not crashes, crashes[:3]
        events = {e["event"] for e in logs}
        assert {"button_pressed", "callback_unmatched"} <= events, "job buttons and the stale answer ran"
        assert not [r for r in caplog.records if r.name.startswith("aiogram")], caplog.records[:3]
