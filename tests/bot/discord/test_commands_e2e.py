"""/workflows, /queue, /cancel, /help, /history and /stats (ephemeral, localized), and one request traced by
its request_id."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from comfy.workflows import WorkflowRegistry
from gateway.limits import AccessPolicy
from tests.bot.conftest import check_workflows_answer, many_workflows
from tests.bot.discord.conftest import CHANNEL, OTHER, RESULT_PREFIX, USER, DBench, dbench
from tests.fakes.discord import StoredMessage


async def test_workflows_lists_the_registry(bench: DBench) -> None:
    inter = await bench.fake.slash(USER, CHANNEL, "workflows", locale="zh-TW")
    answer = await bench.original(inter)
    assert answer.ephemeral
    assert answer.content.startswith(bench.frontend.ctx.t("zh_Hant", "discord.workflows_header"))
    for name in bench.registry.names():
        assert f"• {name} — " in answer.content


@pytest.mark.parametrize(("extra", "all_shown"), [(30, True), (80, False)])
async def test_long_workflows_list_fits_one_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: int, all_shown: bool
) -> None:
    """34 workflows were cut at exactly 2000 characters, mid-word (11 shown, txt2img and upscale missing):
    now the descriptions are shortened so every name shows; 84 do not fit even so, and the list ends with
    whole lines and "…and N more"."""
    registry = many_workflows(tmp_path, extra)
    data = tmp_path / "data"
    data.mkdir()
    async with dbench(data, registry, monkeypatch) as b:
        answer = await b.original(await b.fake.slash(USER, CHANNEL, "workflows", locale="ko"))
        shown = check_workflows_answer(
            answer.content, registry, b.frontend.ctx, "ko", "discord.workflows_header", 2000
        )
        assert (shown == registry.names()) is all_shown
        assert ("txt2img" in shown and "upscale" in shown) is all_shown


async def test_workflows_descriptions_are_in_the_users_language(bench: DBench) -> None:
    """/workflows said each manifest's English description where Telegram said the catalogue's
    ``wf.<name>``; both now ask ``bot.jobs.workflow_description``, and the mark follows /settings."""
    t = bench.frontend.ctx.t
    mark = t("ko", "workflows.default_mark")
    answer = await bench.original(await bench.fake.slash(USER, CHANNEL, "workflows", locale="ko"))
    lines = answer.content.splitlines()
    assert lines[0] == t("ko", "discord.workflows_header")
    for name in bench.registry.names():
        line = t("ko", "workflows.line", name=name, description=t("ko", f"wf.{name}"))
        assert (line + " " + mark if name == "txt2img" else line) in lines
        english = bench.registry.get(name).description
        assert english and english not in answer.content
    await bench.original(await bench.fake.slash(USER, CHANNEL, "settings", {"workflow": "hires"}))
    again = await bench.original(await bench.fake.slash(USER, CHANNEL, "workflows", locale="ko"))
    marked = [line for line in again.content.splitlines() if line.endswith(mark)]
    assert marked == [t("ko", "workflows.line", name="hires", description=t("ko", "wf.hires")) + " " + mark]
    # /generate's workflow picker describes them the same way.
    typed = {"prompt": "x", "workflow": ""}
    choices = await bench.fake.autocomplete(USER, CHANNEL, "generate", typed, "workflow", locale="ko")
    assert {c["value"]: c["name"] for c in choices} == {
        name: f"{name} — {t('ko', f'wf.{name}')}"[:100] for name in bench.registry.names()
    }


async def test_queue_and_cancel(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with dbench(tmp_path, registry, monkeypatch, comfy_options={"step_delay_s": 0.2}, capacity=1) as b:
        t = b.frontend.ctx.t
        empty = await b.fake.slash(USER, CHANNEL, "queue")
        assert (await b.original(empty)).content == t("en", "queue.empty", depth=0)
        jobs = [
            await b.fake.slash(USER, CHANNEL, "generate", {"prompt": f"job {i}", "steps": 50})
            for i in range(2)
        ]
        await b.until(lambda: all((m := b.fake.original(j)) and m.custom_ids for j in jobs))
        queue = await b.fake.slash(USER, CHANNEL, "queue", locale="ru")
        listing = await b.original(queue)
        assert listing.ephemeral and listing.content.splitlines()[0].startswith(
            t("ru", "queue.header", depth=0)[:5]
        )
        assert len(listing.content.splitlines()) == 3
        cancelled = t("en", "result.cancelled")
        for n in (1, 0):  # the latest live job first
            cancel = await b.fake.slash(USER, CHANNEL, "cancel", locale="ru")
            assert (await b.original(cancel)).content == t("ru", "cancel.done")
            job = b.fake.original(jobs[n])
            assert job is not None

            def shows_cancelled(job: StoredMessage = job) -> bool:
                return cancelled in job.content

            await b.until(shows_cancelled)
        again = await b.fake.slash(USER, CHANNEL, "cancel")
        assert (await b.original(again)).content == t("en", "cancel.nothing")


async def test_help_lists_the_slash_commands_in_the_users_language(bench: DBench) -> None:
    t = bench.frontend.ctx.t
    synced = {c["name"]: c for c in bench.fake.commands}
    for name in ("help", "history", "stats"):  # the picker's descriptions, in every shipped language
        localized = synced[name]["description_localizations"]
        assert (localized["ru"], localized["ko"], localized["zh-TW"]) == (
            t("ru", f"cmd.{name}"),
            t("ko", f"cmd.{name}"),
            t("zh_Hant", f"cmd.{name}"),
        )
    answer = await bench.original(await bench.fake.slash(USER, CHANNEL, "help"))
    assert answer.ephemeral and not answer.components
    assert answer.content.startswith(t("en", "discord.help") + "\n")
    lines = answer.content.splitlines()
    for name in synced.keys() - {"stats"}:
        assert f"/{name} — {t('en', f'cmd.{name}')}" in lines
    assert not [line for line in lines if line.startswith("/stats")], "admins only"
    ko = await bench.original(await bench.fake.slash(USER, CHANNEL, "help", locale="ko"))
    assert ko.ephemeral and ko.content.startswith(t("ko", "discord.help") + "\n")
    ko_lines = ko.content.splitlines()
    assert f"/history — {t('ko', 'cmd.history')}" in ko_lines
    for option in synced["generate"]["options"]:  # each option as the picker describes it
        assert f"  • {option['name']} — {option['description_localizations']['ko']}" in ko_lines
    assert len(ko.content) <= 2000


def _job_of(result: StoredMessage) -> str:
    """The job id behind a result message (its ℹ️ Info button carries it)."""
    return next(c for c in result.custom_ids if c.startswith(RESULT_PREFIX)).removeprefix(RESULT_PREFIX)


async def test_history_lists_my_jobs_and_reroll_buttons_run_them_again(bench: DBench) -> None:
    t = bench.frontend.ctx.t
    empty = await bench.original(await bench.fake.slash(USER, CHANNEL, "history"))
    assert empty.ephemeral and empty.content == t("en", "history.empty") and not empty.custom_ids
    await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": "a blue bird", "steps": 4})
    bird = await bench.result()
    upscale = next(c for c in bird.custom_ids if c.startswith("comfybot:u:"))
    await bench.fake.click(USER, bird.id, upscale)
    await bench.result(count=2)
    listing = await bench.original(await bench.fake.slash(USER, CHANNEL, "history", locale="ru"))
    assert listing.ephemeral
    assert listing.content.splitlines() == [  # newest first, as on Telegram
        t("ru", "history.header"),
        t("ru", "history.line", n=1, state="✅", prompt=t("ru", "wf.upscale"), workflow="upscale"),
        t("ru", "history.line", n=2, state="✅", prompt="a blue bird", workflow="txt2img"),
    ]
    # An upscale has no seed to change: only the bird gets a 🔁, the result's own Reroll button.
    assert listing.custom_ids == [f"comfybot:r:{_job_of(bird)}"] and listing.labels == ["🔁 2"]
    others = await bench.original(await bench.fake.slash(OTHER, CHANNEL, "history"))
    assert others.content == t("en", "history.empty")
    again = await bench.fake.click(USER, listing.id, listing.custom_ids[0], locale="ru")
    rerolled = await bench.result(count=3)
    original = bench.fake.original(again)
    assert original is not None
    assert rerolled.id == original.id and not rerolled.ephemeral
    assert "a blue bird" in rerolled.content and _job_of(rerolled) != _job_of(bird)
    assert len(bench.comfy.received_prompts) == 3


async def test_stats_is_for_admins(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with dbench(tmp_path, registry, monkeypatch, access=AccessPolicy(admins=[USER])) as b:
        t = b.frontend.ctx.t
        with capture_logs(processors=[merge_contextvars]) as logs:
            refused = await b.original(await b.fake.slash(OTHER, CHANNEL, "stats", locale="ru"))
        assert refused.ephemeral and refused.content == t("ru", "error.admin_only")
        denied = [e for e in logs if e["event"] == "access_denied"]
        assert denied and denied[0]["reason"] == "not_admin" and denied[0]["user_id"] == str(OTHER)
        await b.fake.slash(USER, CHANNEL, "generate", {"prompt": "counted", "steps": 4})
        await b.result()
        stats = await b.original(await b.fake.slash(USER, CHANNEL, "stats", locale="zh-TW"))
        assert stats.ephemeral
        lines = stats.content.splitlines()
        assert lines[1:3] == ["等待中的工作：0", "過去 24 小時：✅ 完成 1 · ❌ 失敗 0 · ⏹ 取消 0 · ⏱ 逾時 0"]
        assert re.fullmatch(r"平均執行時間：txt2img [\d.]+ 秒", lines[3])
        server = b.frontend.ctx.gateway.servers()[0]
        up = t("zh_Hant", "stats.server_up", name=server.name, inflight=0, capacity=server.capacity)
        assert lines[-1] == up
        shown = await b.original(await b.fake.slash(USER, CHANNEL, "help"))
        assert f"/stats — {t('en', 'cmd.stats')}" in shown.content.splitlines()


async def test_one_request_traced_by_request_id(bench: DBench) -> None:
    with capture_logs(processors=[merge_contextvars]) as logs:
        await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": "traced", "steps": 4})
        await bench.result()
        await bench.logged(logs, "response_sent")
    [received] = [e for e in logs if e["event"] == "command_received"]
    rid = received["request_id"]
    assert received["platform"] == "discord" and received["user_id"] == str(USER)
    mine = [e["event"] for e in logs if e.get("request_id") == rid]
    for event in (
        "command_received",
        "job_enqueued",
        "comfyui_prompt_sent",
        "job_succeeded",
        "response_sent",
    ):
        assert event in mine
    [sent] = [e for e in logs if e["event"] == "response_sent"]
    assert sent["kind"] == "result" and sent["bytes"] > 0 and sent["duration_ms"] >= 0
    assert not any(bench.fake.interactions[i].token in str(e) for e in logs for i in bench.fake.interactions)


async def test_bad_input_logs_validation_error(bench: DBench) -> None:
    with capture_logs(processors=[merge_contextvars]) as logs:
        # (steps=0 no longer reaches the bot: the client refuses it, below the option's min_value)
        await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": "x", "workflow": "hires", "batch": 2})
        await bench.ephemeral(bench.frontend.ctx.t("en", "field.batch"))
        await bench.logged(logs, "response_sent")
    errors = [e for e in logs if e["event"] == "validation_error" and e.get("component") == "discord"]
    assert errors and errors[0]["field"] == "batch" and errors[0]["reason"] == "unknown_param"
