"""The small HTTP API: bearer token, submit → poll → result, cancel, health, refusals as JSON."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from structlog.testing import capture_logs

from gateway.http_api import EVENTS, loopback, start_api
from gateway.models import Cancelled, Succeeded
from tests.conftest import free_port
from tests.gateway.conftest import EventLog, harness

TOKEN = "s3cret-token"


@pytest.fixture
async def api(session, registry, data_dir):
    async with harness(session, registry, data_dir) as h:
        port = free_port()
        runner = await start_api(h.gateway, TOKEN, port=port)
        h.log = EventLog()  # the API's jobs publish on the "http" platform, which the API consumes
        collector = asyncio.create_task(h.log.collect(runner.app[EVENTS].tap()))
        try:
            yield h, f"http://127.0.0.1:{port}"
        finally:
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector
            await runner.cleanup()


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_token_required(api, session) -> None:
    _, url = api
    async with session.get(f"{url}/v1/health") as resp:
        assert resp.status == 401
    async with session.get(f"{url}/v1/health", headers=auth("wrong")) as resp:
        assert resp.status == 401
    async with session.get(f"{url}/v1/health", headers=auth()) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["ok"] and body["servers"][0]["healthy"] and body["store"] == "memory"


async def test_submit_poll_result(api, session) -> None:
    h, url = api
    job = {
        "user_id": "script",
        "chat_id": "-",
        "workflow": "txt2img",
        "params": {"prompt": "a cat", "steps": 3},
    }
    async with session.post(f"{url}/v1/jobs", json=job, headers=auth()) as resp:
        assert resp.status == 202
        accepted = await resp.json()
    job_id = accepted["job_id"]
    assert accepted["position"] >= 1
    assert isinstance(await h.log.terminal(job_id), Succeeded)
    async with session.get(f"{url}/v1/jobs/{job_id}", headers=auth()) as resp:
        assert resp.status == 200
        record = await resp.json()
    assert record["state"] == "succeeded" and record["request"]["platform"] == "http" and record["images"]
    async with session.get(f"{url}/v1/jobs/nope", headers=auth()) as resp:
        assert resp.status == 404


async def test_refusals_are_json_with_codes(api, session) -> None:
    _, url = api
    bad = {"user_id": "s", "chat_id": "-", "workflow": "txt2img", "params": {"prompt": "x", "steps": 999}}
    async with session.post(f"{url}/v1/jobs", json=bad, headers=auth()) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["code"] == "invalid_input" and body["field"] == "steps"
    async with session.post(f"{url}/v1/jobs", data=b"not json", headers=auth()) as resp:
        assert resp.status == 400
    unknown = {"user_id": "s", "chat_id": "-", "workflow": "nope"}
    async with session.post(f"{url}/v1/jobs", json=unknown, headers=auth()) as resp:
        assert resp.status == 404 and (await resp.json())["code"] == "unknown_workflow"


async def test_cancel(api, session) -> None:
    h, url = api
    h.fakes[0].run_time_s = 5.0
    job = {"user_id": "s", "chat_id": "-", "workflow": "txt2img", "params": {"prompt": "slow"}}
    async with session.post(f"{url}/v1/jobs", json=job, headers=auth()) as resp:
        job_id = (await resp.json())["job_id"]
    async with session.delete(f"{url}/v1/jobs/{job_id}", headers=auth()) as resp:
        assert (await resp.json())["cancelled"] is True
    ended = await h.log.terminal(job_id)
    assert isinstance(ended, Cancelled) and ended.by == "http-api"


async def test_stats_count_the_day_and_name_the_servers(api, session) -> None:
    h, url = api
    job = {"user_id": "s", "chat_id": "-", "workflow": "txt2img", "params": {"prompt": "a cat", "steps": 3}}
    async with session.post(f"{url}/v1/jobs", json=job, headers=auth()) as resp:
        job_id = (await resp.json())["job_id"]
    assert isinstance(await h.log.terminal(job_id), Succeeded)
    h.fakes[0].fail_node("KSampler", times=1)
    async with session.post(f"{url}/v1/jobs", json=job, headers=auth()) as resp:
        failing = (await resp.json())["job_id"]
    await h.log.terminal(failing)
    async with session.get(f"{url}/v1/stats", headers=auth()) as resp:
        assert resp.status == 200
        stats = await resp.json()
    assert stats["outcomes"] == {"succeeded": 1, "failed": 1, "failed:comfy_execution_error": 1}
    assert stats["depth"] == 0 and stats["mean_run_s"]["txt2img"] >= 0
    assert [(s["name"], s["healthy"], s["capacity"]) for s in stats["servers"]] == [("comfy0", True, 2)]


async def test_prompt_is_cleaned_and_an_invisible_one_refused(api, session) -> None:
    """No path sends ComfyUI raw controls: the API's prompt is cleaned as a chat's is."""
    h, url = api
    job = {
        "user_id": "s",
        "chat_id": "-",
        "workflow": "txt2img",
        "params": {
            "prompt": "\x1b[31mred\x1b[0m \u202efox\x00 👩\u200d💻",
            "negative": "\u200bblur",
            "steps": 2,
        },
    }
    async with session.post(f"{url}/v1/jobs", json=job, headers=auth()) as resp:
        assert resp.status == 202
        job_id = (await resp.json())["job_id"]
    assert isinstance(await h.log.terminal(job_id), Succeeded)
    [sent] = h.fakes[0].received_prompts
    assert sent["prompt"]["6"]["inputs"]["text"] == "red fox 👩\u200d💻"
    assert sent["prompt"]["7"]["inputs"]["text"] == "blur"
    invisible = {**job, "params": {"prompt": "\u200b\u200b\ufeff\u202e"}}
    async with session.post(f"{url}/v1/jobs", json=invisible, headers=auth()) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert (body["code"], body["field"], body["reason"]) == ("invalid_input", "prompt", "required")
    assert len(h.fakes[0].received_prompts) == 1


@pytest.mark.parametrize(
    "path",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "inputs/20260101/../../../etc/passwd.png",
        "inputs\\20260101\\" + "a" * 64 + ".png",
        "",
    ],
)
async def test_an_image_path_outside_the_data_dir_is_refused_at_submit(api, session, path) -> None:
    h, url = api
    job = {
        "user_id": "s",
        "chat_id": "-",
        "workflow": "img2img",
        "params": {"prompt": "a cat"},
        "inputs": {"image": {"path": path, "width": 64, "height": 64, "bytes": 100}},
    }
    async with session.post(f"{url}/v1/jobs", json=job, headers=auth()) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert (body["code"], body["field"], body["reason"]) == (
        "invalid_input",
        "inputs.image.path",
        "bad_image_ref",
    )
    assert await h.gateway.store.depth() == 0 and not await h.gateway.recent_jobs("s")
    assert not h.fakes[0].received_prompts


async def test_an_image_of_an_earlier_result_is_accepted(api, session) -> None:
    h, url = api
    job = {"user_id": "s", "chat_id": "-", "workflow": "txt2img", "params": {"prompt": "a cat", "steps": 2}}
    async with session.post(f"{url}/v1/jobs", json=job, headers=auth()) as resp:
        first = (await resp.json())["job_id"]
    assert isinstance(await h.log.terminal(first), Succeeded)
    async with session.get(f"{url}/v1/jobs/{first}", headers=auth()) as resp:
        [image] = (await resp.json())["images"]
    redraw = {**job, "workflow": "img2img", "inputs": {"image": image}}
    async with session.post(f"{url}/v1/jobs", json=redraw, headers=auth()) as resp:
        assert resp.status == 202, await resp.text()
        second = (await resp.json())["job_id"]
    assert isinstance(await h.log.terminal(second), Succeeded)


@pytest.mark.parametrize(("host", "exposed"), [("0.0.0.0", True), ("127.0.0.1", False), ("localhost", False)])
async def test_a_bind_beyond_loopback_logs_a_warning(session, registry, data_dir, host, exposed) -> None:
    async with harness(session, registry, data_dir) as h:
        with capture_logs() as logs:
            runner = await start_api(h.gateway, TOKEN, host=host, port=free_port())
            await runner.cleanup()
    warnings = [e for e in logs if e["event"] == "http_api_exposed"]
    assert [(e["log_level"], e["host"]) for e in warnings] == ([("warning", host)] if exposed else [])
    assert TOKEN not in repr(logs)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.5", False),
        ("10.0.0.1", False),
        ("example.org", False),
    ],
)
def test_loopback(host: str, expected: bool) -> None:
    assert loopback(host) is expected
