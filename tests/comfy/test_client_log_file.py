"""One request through the client, read back from the JSON log FILE the way an admin would with jq.

``jq -c 'select(.request_id=="<id>")' logs/*.log`` must return every line of that request — the lines the
client writes on the caller's behalf (upload, prompt sent, history checked, finished, image retrieved) and
the stdlib lines of aiohttp under it — and nothing of another request, even when the websocket reader
(a long-lived background task of the client) was started while some earlier request was being served.
"""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from PIL import Image

from comfy.client import ComfyClient
from core.logs import bind_request, bound, clear_request, configure_logging, get_logger, reset_logging
from tests.fakes.comfyui import running_fake_comfyui

#: Lines of the connection, not of any request: the websocket reader writes them for every prompt it serves.
CONNECTION_EVENTS = {"comfyui_ws_connected", "comfyui_ws_reconnect"}


@pytest.fixture(autouse=True)
def _logs_reset() -> Iterator[None]:
    yield
    reset_logging()


def read_log(path: Path) -> list[dict[str, Any]]:
    """Every line of the file must be one JSON object (as ``jq`` needs)."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def select(records: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    """``jq -c 'select(.k=="v")'``."""
    return [r for r in records if all(r.get(k) == v for k, v in match.items())]


def img2img(image: str) -> dict[str, Any]:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "10": {"class_type": "LoadImage", "inputs": {"image": image}},
        "11": {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}},
        "3": {"class_type": "KSampler",
              "inputs": {"model": ["4", 0], "seed": 1, "steps": 3, "cfg": 7.0, "sampler_name": "euler",
                         "scheduler": "normal", "positive": ["6", 0], "negative": ["7", 0],
                         "latent_image": ["11", 0], "denoise": 0.6}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "comfybot/t"}},
    }  # fmt: skip


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 12), "red").save(buf, "PNG")
    return buf.getvalue()


async def serve_request(client: ComfyClient, request_id: str, job_id: str) -> str:
    """What a worker does for one chat request: upload, submit, follow, download. Returns the prompt id."""
    log = get_logger("gateway")
    bind_request(request_id, platform="telegram", user_id="7")
    try:
        log.info("request_received")
        with bound(job_id=job_id, backend=client.name):
            name = await client.upload_image(png(), f"{job_id}.png")
            prompt_id = str(uuid.uuid4())
            with bound(prompt_id=prompt_id):
                async with client.track(prompt_id, timeout_s=30) as tracker:
                    extra = {"request_id": request_id}
                    await client.submit(img2img(name), prompt_id=prompt_id, extra_data=extra)
                    result = await tracker.wait()
                for image in result.images:
                    await client.view(image)
                logging.getLogger("aiohttp.client").info("stdlib line inside the request")
                log.info("job_succeeded", duration_ms=1)
        log.info("response_sent")
        return prompt_id
    finally:
        clear_request()


async def test_every_line_of_a_request_carries_its_request_id_in_the_log_file(tmp_path: Path) -> None:
    configure_logging("gateway", tmp_path, stdout=False)
    async with running_fake_comfyui() as fake, aiohttp.ClientSession() as session:
        # The client (and its websocket reader task) is opened while an earlier request is being served.
        bind_request("0000earlier00000")
        client = ComfyClient(fake.url, session, name="gpu-a", ws_stall_timeout_s=5)
        await client.start()
        clear_request()
        try:
            get_logger().info("idle_before")
            prompt_id = await serve_request(client, "aaaa1111bbbb2222", "job-1")
            # The second request has its websocket dropped mid-run: reconnect + /history check.
            fake.drop_ws_mid_run = True
            second_prompt = await serve_request(client, "cccc3333dddd4444", "job-2")
            get_logger().info("idle_after")
        finally:
            await client.close()

    records = read_log(tmp_path / "gateway.log")
    requests = (("aaaa1111bbbb2222", prompt_id, "job-1"), ("cccc3333dddd4444", second_prompt, "job-2"))
    for rid, pid, job in requests:
        mine = select(records, request_id=rid)
        # Every line written while the request was served, except the connection's own, is in the selection.
        start = records.index(select(mine, event="request_received")[0])
        end = records.index(select(mine, event="response_sent")[0])
        window = [r for r in records[start : end + 1] if r["event"] not in CONNECTION_EVENTS]
        assert mine == window
        events = [r["event"] for r in mine]
        for expected in (
            "image_uploaded",
            "comfyui_prompt_sent",
            "comfyui_prompt_finished",
            "image_retrieved",
            "stdlib line inside the request",
            "job_succeeded",
        ):
            assert expected in events, (rid, events)
        in_job = [r for r in mine if r["event"] not in ("request_received", "response_sent")]
        assert all(r.get("job_id") == job for r in in_job)
        # Everything about the prompt is in the request's selection.
        assert select(records, prompt_id=pid) == [r for r in mine if r.get("prompt_id") == pid]
        assert all(r["component"] == "comfy" for r in mine if r["event"].startswith("comfyui_"))
    second = [r["event"] for r in select(records, request_id="cccc3333dddd4444")]
    assert "comfyui_history_checked" in second  # the reconnect made the tracker ask /history, in-request
    # The connection's lines belong to no request: not the one that was live when the reader started.
    connection = [r for r in records if r["event"] in CONNECTION_EVENTS]
    assert len(connection) >= 2  # connected at start, and again after the drop
    assert all("request_id" not in r and "job_id" not in r for r in connection), connection
    assert all(r["backend"] == "gpu-a" for r in connection)
    assert select(records, request_id="0000earlier00000") == []
    assert "request_id" not in select(records, event="idle_after")[0]


async def test_request_id_reaches_comfyui_history() -> None:
    """The request_id travels to ComfyUI in extra_data, so ComfyUI's own history can be matched too."""
    async with running_fake_comfyui() as comfy, aiohttp.ClientSession() as session:
        async with ComfyClient(comfy.url, session) as client:
            pid = await serve_request(client, "eeee5555ffff6666", "job-3")
        assert comfy.history[pid]["prompt"][3]["request_id"] == "eeee5555ffff6666"
