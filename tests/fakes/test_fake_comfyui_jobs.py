"""The fake's current-ComfyUI surface (UUID prompt ids, /api/jobs, atomic cancel, ``activity``) and its
0.3.64 switch (``legacy=True``)."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp

from tests.fakes.comfyui import FakeComfyUI, WsRecorder
from tests.fakes.test_fake_comfyui_faults import post, submit, txt2img


async def test_prompt_id_must_be_a_canonical_uuid(
    fake_comfy: FakeComfyUI, http: aiohttp.ClientSession
) -> None:
    status, body = await post(http, fake_comfy.url, {"prompt": txt2img(), "prompt_id": "comfybot-test-1"})
    if fake_comfy.legacy:
        assert status == 200 and body["prompt_id"] == "comfybot-test-1"
        return
    assert status == 400 and body["error"]["type"] == "invalid_prompt_id" and body["node_errors"] == {}
    upper = str(uuid.uuid4()).upper()
    status, body = await post(http, fake_comfy.url, {"prompt": txt2img(), "prompt_id": upper})
    assert status == 400  # canonical lowercase only
    good = str(uuid.uuid4())
    status, body = await post(http, fake_comfy.url, {"prompt": txt2img(), "prompt_id": good})
    assert status == 200 and body["prompt_id"] == good


async def test_jobs_routes(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession) -> None:
    pid = await submit(http, fake_comfy.url, txt2img())
    await fake_comfy.wait_history(pid)
    async with http.get(f"{fake_comfy.url}/api/jobs/{pid}") as r:
        status, job = r.status, (await r.json() if r.content_type == "application/json" else None)
    if fake_comfy.legacy:
        assert status == 404 and job is None  # aiohttp's plain-text 404: the route does not exist
        return
    assert status == 200 and job is not None
    assert job["id"] == pid and job["status"] == "completed" and job["outputs_count"] == 1
    assert job["outputs"]["9"]["images"][0]["asset_id"]
    assert job["execution_status"]["status_str"] == "success" and "execution_error" not in job
    assert job["execution_end_time"] >= job["execution_start_time"]
    async with http.get(f"{fake_comfy.url}/api/jobs/{uuid.uuid4()}") as r:
        assert r.status == 404 and await r.json() == {"error": "Job not found"}
    async with http.get(f"{fake_comfy.url}/api/jobs") as r:
        listing = await r.json()
    assert [j["id"] for j in listing["jobs"]] == [pid] and listing["pagination"]["total"] == 1


async def test_atomic_cancel(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession) -> None:
    if fake_comfy.legacy:
        async with http.post(f"{fake_comfy.url}/api/jobs/{uuid.uuid4()}/cancel") as r:
            assert r.status == 404
        return
    slow = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {
            "class_type": "GwSlowProgress",
            "inputs": {"image": ["1", 0], "steps": 500, "delay": 0.02, "preview": False, "fail_at": -1},
        },
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "s"}},
    }
    running = await submit(http, fake_comfy.url, slow)
    async with asyncio.timeout(10):
        while fake_comfy.running_prompt_id != running:  # noqa: ASYNC110  # the fake's state has no Event
            await asyncio.sleep(0.01)
    pending = await submit(http, fake_comfy.url, txt2img())
    async with http.post(f"{fake_comfy.url}/api/jobs/{pending}/cancel") as r:
        assert await r.json() == {"cancelled": True}
    assert fake_comfy.pending_prompt_ids == []
    async with http.post(f"{fake_comfy.url}/api/jobs/{running}/cancel") as r:
        assert await r.json() == {"cancelled": True}
    await fake_comfy.wait_history(running)
    async with http.get(f"{fake_comfy.url}/api/jobs/{running}") as r:
        assert (await r.json())["status"] == "cancelled"
    async with http.post(f"{fake_comfy.url}/api/jobs/{running}/cancel") as r:
        assert await r.json() == {"cancelled": False}  # finished: a no-op, not an error


async def test_loader_reports_loading_activity(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession) -> None:
    async with WsRecorder(http, fake_comfy.url, client_id="c-act") as rec:
        pid = await submit(http, fake_comfy.url, txt2img(), client_id="c-act")
        await rec.wait_done(pid)
    states = [f["data"]["nodes"] for f in rec.frames if f.get("type") == "progress_state"]
    loading = [n["4"].get("activity") for n in states if "4" in n and n["4"]["state"] == "running"]
    assert loading == ([None] if fake_comfy.legacy else ["loading"])
