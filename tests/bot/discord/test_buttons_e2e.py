"""Buttons under Discord job messages: Reroll (new seed, new message), Cancel while running, Info, Upscale,
Variations — and the same custom_ids working after the bot restarts (a new discord.py client)."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfy.workflows import WorkflowRegistry
from gateway.limits import AccessPolicy
from tests.bot.discord.conftest import CHANNEL, OTHER, USER, DBench, dbench
from tests.fakes.discord import StoredMessage


def _button(msg: StoredMessage, action: str) -> str:
    return next(c for c in msg.custom_ids if c.startswith(f"comfybot:{action}:"))


async def test_reroll_makes_a_new_job_message_with_a_new_seed(bench: DBench) -> None:
    await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": "a red fox", "steps": 4, "seed": 7})
    first = await bench.result()
    click = await bench.fake.click(USER, first.id, _button(first, "r"))
    second = await bench.result(count=2)
    assert click.callback is not None and click.callback["type"] == 5  # thinking: the new job's message
    original = bench.fake.original(click)
    assert original is not None
    assert second.id == original.id != first.id
    assert "a red fox" in second.content and "🌱 7 " in first.content and "🌱 7 " not in second.content
    jobs = [p for p in bench.comfy.received_prompts]
    assert len(jobs) == 2


async def test_info_and_upscale(bench: DBench) -> None:
    await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": "a boat", "steps": 4, "seed": 99})
    first = await bench.result()
    info = await bench.fake.click(USER, first.id, _button(first, "i"))
    answer = await bench.original(info)
    assert answer.ephemeral and "txt2img" in answer.content and "99" in answer.content
    assert "steps=4" in answer.content and "cfg=7 " in answer.content, "whole numbers without '.0'"
    up = await bench.fake.click(USER, first.id, _button(first, "u"))
    upscaled = await bench.result(count=2)
    original = bench.fake.original(up)
    assert original is not None
    assert upscaled.id == original.id
    # No upscale of an upscale, and no Reroll/Variations: the upscale workflow has no seed.
    assert [c.split(":")[1] for c in upscaled.custom_ids] == ["i"]
    assert len(bench.comfy.uploads) == 1  # the first result went to ComfyUI as the upscale's input


async def test_variations_ask_for_a_batch(bench: DBench) -> None:
    await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": "a tree", "steps": 4})
    first = await bench.result()
    await bench.fake.click(USER, first.id, _button(first, "v"))
    album = await bench.result(count=2)
    assert [f.filename for f in album.attachments] == [f"result_{i}.png" for i in range(1, 5)]
    upscales = [c for c in album.custom_ids if c.startswith("comfybot:u:")]
    assert upscales == [f"comfybot:u:{upscales[0].split(':')[2]}:{i}" for i in range(4)]
    assert [row_len for row_len in (len(r["components"]) for r in album.components)] == [3, 4]
    # ⬆️ 3 upscales the third picture of the batch.
    await bench.fake.click(USER, album.id, upscales[2])
    await bench.result(count=3)
    [upload] = bench.comfy.uploads
    assert upload["data"] == album.attachments[2].data != album.attachments[0].data


async def test_cancel_button_while_running(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with dbench(tmp_path, registry, monkeypatch, comfy_options={"step_delay_s": 0.2}) as b:
        inter = await b.fake.slash(USER, CHANNEL, "generate", {"prompt": "slow", "steps": 50}, locale="ru")
        msg = await b.until(
            lambda: (m := b.fake.original(inter)) and any("comfybot:c:" in c for c in m.custom_ids) and m
        )
        other = await b.fake.click(OTHER, msg.id, _button(msg, "c"))
        refused = await b.original(other)
        assert refused.ephemeral and refused.content == b.frontend.ctx.t("en", "cancel.failed")
        mine = await b.fake.click(USER, msg.id, _button(msg, "c"), locale="ru")
        done = await b.original(mine)
        assert done.ephemeral and done.content == b.frontend.ctx.t("ru", "cancel.done")
        cancelled = b.frontend.ctx.t("ru", "result.cancelled")
        final = await b.until(lambda: (m := b.fake.original(inter)) and cancelled in m.content and m)
        assert final.custom_ids == [] and not final.attachments
        assert not b.results()


async def test_buttons_work_after_the_bot_restarts(bench: DBench) -> None:
    await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": "a castle", "steps": 4})
    first = await bench.result()
    old_client = bench.frontend.bot
    await bench.restart()
    assert bench.frontend.bot is not old_client and bench.fake.identified == 2
    click = await bench.fake.click(USER, first.id, _button(first, "r"))
    second = await bench.result(count=2)
    original = bench.fake.original(click)
    assert original is not None
    assert second.id == original.id
    assert "a castle" in second.content


async def test_a_job_running_across_a_restart_finishes_on_a_channel_message(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with dbench(tmp_path, registry, monkeypatch, comfy_options={"step_delay_s": 0.1}) as b:
        b.frontend.drain_timeout_s = 0.1  # do not wait for the running job: leave it to the next process
        inter = await b.fake.slash(USER, CHANNEL, "generate", {"prompt": "across", "steps": 60})
        await b.until(lambda: (m := b.fake.original(inter)) and m.edits >= 1)
        await b.restart()
        result = await b.result(timeout=30)
        old = b.fake.original(inter)
        assert old is not None
        assert result.interaction_id is None and result.id != old.id
        assert "across" in result.content and len(b.results()) == 1
        # The old message's Cancel button is still understood by the new client (job finished: refused).
        cancel = next(c for c in old.custom_ids if c.startswith("comfybot:c:"))
        answer = await b.original(await b.fake.click(USER, old.id, cancel))
        assert answer.ephemeral and answer.content == b.frontend.ctx.t("en", "cancel.failed")


async def test_result_buttons_of_someone_else_are_refused(bench: DBench) -> None:
    await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": "a red fox", "steps": 4, "seed": 7})
    first = await bench.result()
    for action in ("r", "v", "u", "i"):
        refused = await bench.original(await bench.fake.click(OTHER, first.id, _button(first, action)))
        assert refused.ephemeral and refused.content == bench.frontend.ctx.t("en", "button.not_yours"), action
    assert len(bench.comfy.received_prompts) == 1, "no job started"


async def test_in_a_remix_channel_anyone_may_reroll_on_their_own_account(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``COMFYBOT_REMIX_CHATS`` names this channel: another user's Reroll runs the prompt as their job."""
    access = AccessPolicy(remix_chats=[CHANNEL])
    async with dbench(tmp_path, registry, monkeypatch, access=access) as b:
        await b.fake.slash(USER, CHANNEL, "generate", {"prompt": "a red fox", "steps": 4, "seed": 7})
        first = await b.result()
        await b.fake.click(OTHER, first.id, _button(first, "r"))
        await b.until(lambda: len(b.comfy.received_prompts) == 2)
        (theirs,) = await b.gateway.recent_jobs(str(OTHER), 5)
        assert "a red fox" in str(theirs.request.params)


async def test_reroll_clicked_twice_fast_is_one_job_and_two_answers(bench: DBench) -> None:
    await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": "a red fox", "steps": 4, "seed": 7})
    first = await bench.result()
    clicks = [
        await bench.fake.click(USER, first.id, _button(first, "r"), locale=loc) for loc in ("en-US", "ko")
    ]
    await bench.until(lambda: all(c.callback is not None for c in clicks))
    kinds = sorted(c.callback["type"] for c in clicks if c.callback is not None)
    assert kinds == [4, 5], "one deferred (the new job's message), one answered at once"
    [again] = [c for c in clicks if c.callback is not None and c.callback["type"] == 4]
    answer = await bench.original(again)
    locale = "en" if again is clicks[0] else "ko"
    assert answer.ephemeral and answer.content == bench.frontend.ctx.t(locale, "button.already_started")
    await bench.result(count=2)
    assert len(await bench.gateway.recent_jobs(str(USER), 5)) == 2, "the first job and one reroll"
    # Another button of the same message is another press.
    await bench.fake.click(USER, first.id, _button(first, "v"))
    await bench.result(count=3)
