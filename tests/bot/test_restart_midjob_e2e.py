"""The Telegram front end restarts while a job runs (shared Redis): the user's job message is still found
and replaced by the result — not left behind at "Sampling 40%" beside the picture."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.telegram.app import TelegramFrontend
from comfy.workflows import WorkflowRegistry
from comfybot.config import TelegramSettings
from gateway.redis_store import RedisStore
from tests.bot.conftest import bench
from tests.conftest import RedisServer

USER = CHAT = 7117


@pytest.mark.redis
async def test_front_end_restart_mid_job_edits_the_same_message(
    data_dir: Path, registry: WorkflowRegistry, redis_server: RedisServer
) -> None:
    async with bench(
        data_dir, registry, backend=RedisStore(redis_server.url), comfy_options={"step_delay_s": 0.15}
    ) as b:
        b.fake.send_text(USER, CHAT, "/generate a harbour in fog --steps 20")
        await b.until(lambda: b.comfy.running_prompt_id is not None)
        [job_message] = b.bot_msgs(CHAT)
        await b.frontend.stop()  # the process dies mid-job; the worker and ComfyUI go on

        settings = TelegramSettings(bot_token=b.fake.token, api_base=b.fake.url, previews=False)
        async with TelegramFrontend(settings, b.gateway, registry, bot=b.fake.make_bot(), polling_timeout=1):
            result = await b.result(CHAT)
        # A text message cannot become a photo: the result is sent and the job message removed, as without
        # a restart. Before, the restarted process did not know that message and left it stale.
        assert b.fake.message(CHAT, job_message.message_id).deleted, "the stale progress message is gone"
        assert b.bot_msgs(CHAT) == [result]
