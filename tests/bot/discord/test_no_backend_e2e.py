"""Discord: a job no ComfyUI server can run says why in its message (with Cancel), runs when a server
can take it, and fails at the queue timeout; /queue and /stats show the servers that are down."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfy.workflows import WorkflowRegistry
from gateway.limits import AccessPolicy, Limits
from tests.bot.discord.conftest import CHANNEL, USER, DBench, dbench
from tests.fakes.discord import FakeInteraction, StoredMessage

CANCEL = "comfybot:c:"


async def _saying(b: DBench, inter: FakeInteraction, needle: str) -> StoredMessage:
    """The job's message once it says ``needle`` (polled: edits follow what the health loop sees)."""

    def found() -> StoredMessage | None:
        msg = b.fake.original(inter)
        return msg if msg is not None and needle in msg.content else None

    msg: StoredMessage = await b.until(found)
    return msg


async def test_server_down_from_the_start_says_so_and_runs_when_it_is_back(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    access = AccessPolicy(admins=[USER])
    async with dbench(tmp_path, registry, monkeypatch, comfy_down=True, access=access) as b:
        t = b.frontend.ctx.t
        down = t("ru", "progress.blocked.servers_down")
        inter = await b.fake.slash(
            USER, CHANNEL, "generate", {"prompt": "маяк в сумерках", "steps": 4}, locale="ru"
        )
        job = await _saying(b, inter, down)
        assert t("ru", "progress.queued", position=1, depth=1) in job.content
        assert any(c.startswith(CANCEL) for c in job.custom_ids)

        listing = await b.original(await b.fake.slash(USER, CHANNEL, "queue", locale="ru"))
        assert down in listing.content
        assert t("ru", "queue.servers_down", down=1, total=1) in listing.content
        stats = await b.original(await b.fake.slash(USER, CHANNEL, "stats"))
        assert "🔴 comfy0: down (ComfyUnreachable" in stats.content

        await b.comfy.accept_connections()
        result = await b.result()
        assert result.id == job.id and "маяк в сумерках" in result.content


async def test_server_that_stays_down_fails_the_job_at_the_queue_timeout(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = Limits(queue_timeout_s=1.0)
    async with dbench(tmp_path, registry, monkeypatch, comfy_down=True, limits=limits) as b:
        t = b.frontend.ctx.t
        inter = await b.fake.slash(USER, CHANNEL, "generate", {"prompt": "a lighthouse", "steps": 4})
        await _saying(b, inter, t("en", "progress.blocked.servers_down"))
        failed = await _saying(b, inter, t("en", "error.no_backend"))
        assert not any(c.startswith(CANCEL) for c in failed.custom_ids)
        assert not b.comfy.received_prompts


async def test_server_without_the_model_names_it_and_cancel_still_works(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = {"checkpoints": ("other.safetensors",)}
    async with dbench(tmp_path, registry, monkeypatch, comfy_options=options) as b:
        t = b.frontend.ctx.t
        missing = t("ko", "progress.blocked.missing_model", name="v1-5-pruned-emaonly.safetensors")
        inter = await b.fake.slash(USER, CHANNEL, "generate", {"prompt": "등대", "steps": 4}, locale="ko")
        job = await _saying(b, inter, missing)
        listing = await b.original(await b.fake.slash(USER, CHANNEL, "queue", locale="ko"))
        assert missing in listing.content and t("ko", "queue.next") in listing.content

        cancel = next(c for c in job.custom_ids if c.startswith(CANCEL))
        await b.fake.click(USER, job.id, cancel, locale="ko")
        await _saying(b, inter, t("ko", "result.cancelled"))
        assert not b.comfy.received_prompts
