"""/workflows, /queue and /cancel (ephemeral, localized), and one request traced by its request_id."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from comfy.workflows import WorkflowRegistry
from tests.bot.discord.conftest import CHANNEL, USER, DBench, dbench


async def test_workflows_lists_the_registry(bench: DBench) -> None:
    inter = await bench.fake.slash(USER, CHANNEL, "workflows", locale="zh-TW")
    answer = await bench.original(inter)
    assert answer.ephemeral
    assert answer.content.startswith(bench.frontend.ctx.t("zh_Hant", "discord.workflows_header"))
    for name in bench.registry.names():
        assert f"• {name} — " in answer.content


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
            await b.until(lambda n=n: cancelled in b.fake.original(jobs[n]).content)
        again = await b.fake.slash(USER, CHANNEL, "cancel")
        assert (await b.original(again)).content == t("en", "cancel.nothing")


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
        await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": "x", "steps": 0})
        await bench.ephemeral(bench.frontend.ctx.t("en", "field.steps"))
        await bench.logged(logs, "response_sent")
    errors = [e for e in logs if e["event"] == "validation_error" and e.get("component") == "discord"]
    assert errors and errors[0]["field"] == "steps" and errors[0]["reason"] == "too_small"
