"""Discord's limits and faults: a job outliving the 15-minute token continues on a channel message (by the
bot's clock, or when Discord answers 50027); 429s are waited out without duplicates; a result over the
upload limit becomes a smaller JPEG preview; a deleted job message gets the result anew."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bot.discord.context import DiscordOptions
from comfy.workflows import WorkflowRegistry
from tests.bot.discord.conftest import CHANNEL, USER, DBench, dbench

SLOW = {"step_delay_s": 0.05}


async def test_job_outliving_the_token_continues_on_a_channel_message(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = DiscordOptions(token_ttl_s=0.6, edit_interval_s=0.2)
    async with dbench(tmp_path, registry, monkeypatch, options=options, comfy_options=SLOW) as b:
        inter = await b.fake.slash(
            USER, CHANNEL, "generate", {"prompt": "a long job", "steps": 40}, locale="ko"
        )
        result = await b.result()
        original = b.fake.original(inter)
        assert original is not None and result.id != original.id
        assert result.interaction_id is None  # a normal channel message the bot owns
        assert original.content == b.frontend.ctx.t("ko", "discord.continued") and original.custom_ids == []
        # The continuation carried the progress too (with Cancel), and was edited in place into the result.
        assert any(any("comfybot:c:" in c for c in h["custom_ids"]) for h in result.history)
        assert [c.status for c in b.fake.calls_of("edit") if c.status != 200] == []  # never used a dead token
        assert len(b.fake.calls_of("channel_send")) == 1


async def test_expired_token_50027_moves_the_job_to_a_channel_message(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = DiscordOptions(edit_interval_s=0.2)
    async with dbench(tmp_path, registry, monkeypatch, options=options, comfy_options=SLOW) as b:
        inter = await b.fake.slash(USER, CHANNEL, "generate", {"prompt": "tok", "steps": 40})
        await b.until(lambda: (m := b.fake.original(inter)) and m.edits >= 1)
        b.fake.expire_all_tokens()
        result = await b.result()
        assert result.interaction_id is None
        assert [c.status for c in b.fake.calls_of("edit")].count(401) == 1  # one refusal, then never again
        assert len(b.results()) == 1
        # The dead token could not retire the original: it is edited as the bot's own message instead,
        # so no live Cancel is left on a message that no longer shows the job.
        original = b.fake.original(inter)
        assert original is not None and original.custom_ids == []
        assert original.content == b.frontend.ctx.t("en", "discord.continued")


async def test_429_is_honoured_without_duplicates(bench: DBench) -> None:
    bench.fake.inject_429("edit", times=3, retry_after=0.3)
    with capture_logs() as logs:
        inter = await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": "busy", "steps": 4})
        result = await bench.result()
    assert bench.fake.count_429 == 3
    original = bench.fake.original(inter)
    assert original is not None
    assert result.id == original.id
    assert len(bench.fake.channel_messages(CHANNEL)) == 1
    assert sum(1 for h in result.history if "result.png" in h["files"]) == 1  # the result was applied once
    limited = [e for e in logs if e["event"] == "discord_rate_limited"]
    assert len(limited) == 3 and all(e["retry_after"] == 0.3 for e in limited)


async def test_result_over_the_upload_limit_becomes_a_smaller_jpeg_preview(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = 1500  # the fake's PNG results are ~3 KB
    async with dbench(tmp_path, registry, monkeypatch, fake_options={"attachment_size_limit": limit}) as b:
        await b.fake.slash(USER, CHANNEL, "generate", {"prompt": "big", "steps": 4}, locale="ru")
        result = await b.result()
        [file] = result.attachments
        assert file.filename == "result_preview.jpg" and file.data[:2] == b"\xff\xd8"
        assert len(file.data) <= limit
        assert b.frontend.ctx.t("ru", "discord.result_too_large") in result.content


async def test_deleted_job_message_gets_the_result_as_a_new_message(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = DiscordOptions(edit_interval_s=0.2)
    async with dbench(tmp_path, registry, monkeypatch, options=options, comfy_options=SLOW) as b:
        inter = await b.fake.slash(USER, CHANNEL, "generate", {"prompt": "gone", "steps": 40})
        first = await b.until(lambda: (m := b.fake.original(inter)) and m.edits >= 1 and m)
        await b.fake.delete_message(first.id)
        result = await b.result()
        assert result.id != first.id and result.interaction_id is None
        assert len(b.results()) == 1


async def test_progress_edits_are_coalesced_to_one_a_second(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with dbench(tmp_path, registry, monkeypatch, comfy_options={"step_delay_s": 0.05}) as b:
        inter = await b.fake.slash(USER, CHANNEL, "generate", {"prompt": "steady", "steps": 50})
        result = await b.result()
        edits = [c for c in b.fake.calls_of("edit") if c.status == 200]
        assert len(edits) == result.edits >= 3  # queued/progress states, then the result
        gaps = [later.at - earlier.at for earlier, later in zip(edits, edits[1:], strict=False)]
        assert min(gaps) >= 0.95  # never faster than the default 1 edit/s (lower bound, not a timing race)
        # 50 sampler steps produced far more progress events than edits: they were coalesced.
        assert any("%" in h["content"] for h in result.history)
        assert b.fake.original(inter) is result


async def test_unexpected_error_is_a_localized_ephemeral_answer(
    bench: DBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(user_id: str) -> None:
        raise RuntimeError("backend exploded")

    monkeypatch.setattr(bench.gateway, "queue_info", broken)
    with capture_logs() as logs:
        await bench.fake.slash(USER, CHANNEL, "queue", locale="ko")
        answer = await bench.ephemeral(bench.frontend.ctx.t("ko", "error.internal").split("\n")[0])
    assert "exploded" not in answer.content
    assert any(e["event"] == "command_failed" and e["error"] == "RuntimeError" for e in logs)
    # The bot is still alive.
    ok = await bench.fake.slash(USER, CHANNEL, "workflows")
    assert (await bench.original(ok)).ephemeral


async def test_error_after_defer_removes_the_thinking_message(
    bench: DBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(req: object) -> None:
        raise RuntimeError("submit exploded")

    monkeypatch.setattr(bench.gateway, "submit", broken)
    inter = await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": "x"})
    await bench.ephemeral(bench.frontend.ctx.t("en", "error.internal").split("\n")[0])
    await bench.until(lambda: (m := bench.fake.original(inter)) is not None and m.deleted)


async def test_preview_is_shown_then_replaced_by_the_result(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = DiscordOptions(edit_interval_s=0.2, preview_interval_s=0.5)
    async with dbench(tmp_path, registry, monkeypatch, options=options, comfy_options=SLOW) as b:
        inter = await b.fake.slash(USER, CHANNEL, "generate", {"prompt": "peek", "steps": 40})
        result = await b.result()
        original = b.fake.original(inter)
        assert original is not None
        assert result.id == original.id
        shown = [h for h in result.history if h["files"] == ["preview.jpg"]]
        assert shown and all(any(c.startswith("comfybot:c:") for c in h["custom_ids"]) for h in shown)
        assert [f.filename for f in result.attachments] == ["result.png"]  # the preview was replaced


async def test_previews_can_be_turned_off(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = DiscordOptions(edit_interval_s=0.2, preview_interval_s=0.1, previews=False)
    async with dbench(tmp_path, registry, monkeypatch, options=options, comfy_options=SLOW) as b:
        await b.fake.slash(USER, CHANNEL, "generate", {"prompt": "no peek", "steps": 40})
        result = await b.result()
        assert all(h["files"] in ([], ["result.png"]) for h in result.history)


async def test_upload_refused_413_falls_back_to_small_previews(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Discord announces 10 MiB but refuses the ~3 KB result: the bot retries once with smaller JPEGs.
    async with dbench(tmp_path, registry, monkeypatch, fake_options={"enforced_upload_limit": 2000}) as b:
        await b.fake.slash(USER, CHANNEL, "generate", {"prompt": "refused", "steps": 4})
        result = await b.result()
        [file] = result.attachments
        assert file.filename == "result_preview.jpg" and len(file.data) <= 2000
        assert b.frontend.ctx.t("en", "discord.result_too_large") in result.content
        assert [c.status for c in b.fake.calls_of("edit")][-2:] == [413, 200]


async def test_429_on_the_continuation_message_is_honoured(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = DiscordOptions(token_ttl_s=0.3, edit_interval_s=0.2)
    async with dbench(tmp_path, registry, monkeypatch, options=options, comfy_options=SLOW) as b:
        b.fake.inject_429("channel_send", times=1, retry_after=0.2)
        b.fake.inject_429("channel_edit", times=2, retry_after=0.2)
        await b.fake.slash(USER, CHANNEL, "generate", {"prompt": "patient", "steps": 40})
        result = await b.result()
        assert b.fake.count_429 == 3
        assert [c.status for c in b.fake.calls_of("channel_send")] == [429, 200]
        assert len([m for m in b.fake.channel_messages(CHANNEL) if m.interaction_id is None]) == 1
        assert sum(1 for h in result.history if "result.png" in h["files"]) == 1


async def test_many_users_at_once_each_get_one_result(bench: DBench) -> None:
    users = range(100, 112)
    interactions = [
        await bench.fake.slash(user, CHANNEL, "generate", {"prompt": f"user {user}", "steps": 3})
        for user in users
    ]
    await bench.result(count=len(interactions), timeout=50)
    originals = [bench.fake.original(i) for i in interactions]
    assert all(
        m is not None and m.attachments and f"user {u}" in m.content
        for m, u in zip(originals, users, strict=True)
    )
    assert len(bench.results()) == len(interactions)
    assert bench.fake.count_429 == 0
