"""Telegram: a job no ComfyUI server can run says why in its message (with Cancel), runs when a server
can take it, and fails at the queue timeout; /queue and /stats show the servers that are down."""

from __future__ import annotations

from pathlib import Path

from comfy.workflows import WorkflowRegistry
from gateway.limits import AccessPolicy, Limits
from tests.bot.conftest import Bench, bench
from tests.fakes.telegram import StoredMessage

USER = CHAT = 9701
DOWN = "The image server is not reachable — your job starts as soon as it is back."


def _cancel_button(msg: StoredMessage) -> str | None:
    return next((x["callback_data"] for r in msg.buttons for x in r if "j:c:" in x["callback_data"]), None)


async def _job_message(b: Bench, needle: str) -> StoredMessage:
    """The job's message once it says ``needle`` (polled: edits arrive as the health loop sees changes)."""

    def found() -> StoredMessage | None:
        return next((m for m in b.bot_msgs(CHAT) if needle in (m.text or "") and _cancel_button(m)), None)

    msg: StoredMessage = await b.until(found)
    return msg


async def test_server_down_from_the_start_says_so_and_runs_when_it_is_back(
    data_dir: Path, registry: WorkflowRegistry
) -> None:
    async with bench(data_dir, registry, comfy_down=True, access=AccessPolicy(admins=[USER])) as b:
        b.fake.send_text(USER, CHAT, "/generate a lighthouse at dusk --seed 42 --steps 4")
        job = await _job_message(b, DOWN)
        assert "In the queue: position 1 of 1" in (job.text or "")
        first = b.fake.calls_of("sendMessage", CHAT, ok=True)[0]
        assert DOWN in str(first.params.get("text")), "the submit's own answer says so at once"

        b.fake.send_text(USER, CHAT, "/queue")
        queue = await b.text_reply(CHAT, "Yours:")
        assert queue.text is not None and DOWN in queue.text
        assert "Image servers not reachable right now: 1 of 1." in queue.text
        b.fake.send_text(USER, CHAT, "/stats")
        stats = await b.text_reply(CHAT, "Statistics")
        assert stats.text is not None and "🔴 comfy0: down (ComfyUnreachable" in stats.text

        await b.comfy.accept_connections()
        result = await b.result(CHAT)
        assert "a lighthouse at dusk" in (result.caption or "")
        assert [p["prompt"]["3"]["inputs"]["seed"] for p in b.comfy.received_prompts] == [42]


async def test_server_that_stays_down_fails_the_job_at_the_queue_timeout(
    data_dir: Path, registry: WorkflowRegistry
) -> None:
    async with bench(data_dir, registry, comfy_down=True, limits=Limits(queue_timeout_s=1.0)) as b:
        b.fake.send_text(USER, CHAT, "/generate a lighthouse at dusk")
        job = await _job_message(b, DOWN)
        failed = await b.text_reply(CHAT, "No image server is available right now")
        assert failed.message_id == job.message_id, "the job's own message turns into the failure"
        assert "Request ID" in (failed.text or "") and _cancel_button(failed) is None
        assert not b.comfy.received_prompts


async def test_server_without_the_model_names_it_and_cancel_still_works(
    data_dir: Path, registry: WorkflowRegistry
) -> None:
    async with bench(data_dir, registry, comfy_options={"checkpoints": ("other.safetensors",)}) as b:
        b.fake.send_text(USER, CHAT, "/generate a lighthouse at dusk")
        job = await _job_message(b, "No image server has the model v1-5-pruned-emaonly.safetensors")
        b.fake.send_text(USER, CHAT, "/queue")
        queue = await b.text_reply(CHAT, "Yours:")
        assert queue.text is not None and "• next in line" in queue.text
        assert "No image server has the model v1-5-pruned-emaonly.safetensors" in queue.text
        assert "not reachable" not in queue.text, "the server is up"

        button = _cancel_button(job)
        assert button is not None
        b.fake.press_button(USER, CHAT, job.message_id, button)
        cancelled = await b.text_reply(CHAT, "Cancelled")
        assert cancelled.message_id == job.message_id
        assert not b.comfy.received_prompts


async def test_job_waiting_for_a_model_runs_once_it_is_installed(
    data_dir: Path, registry: WorkflowRegistry
) -> None:
    async with bench(data_dir, registry, comfy_options={"checkpoints": ("other.safetensors",)}) as b:
        b.fake.send_text(USER, CHAT, "/generate a lighthouse at dusk --steps 4")
        await _job_message(b, "No image server has the model v1-5-pruned-emaonly.safetensors")
        b.comfy.set_models(checkpoints=["other.safetensors", "v1-5-pruned-emaonly.safetensors"])
        result = await b.result(CHAT)
        assert "a lighthouse at dusk" in (result.caption or "")
