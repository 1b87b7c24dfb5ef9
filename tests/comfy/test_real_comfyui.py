"""ComfyClient against a real ComfyUI at ``COMFYUI_TEST_URL`` (skipped when unset). Model-free graphs only."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from PIL import Image

from comfy.client import ComfyClient, Where
from comfy.errors import ComfyRejected
from comfy.events import ComfyEvent, Executed, Executing, ExecutionStart, ExecutionSuccess

URL = os.environ.get("COMFYUI_TEST_URL", "")
pytestmark = [
    pytest.mark.real_comfyui,
    pytest.mark.skipif(not URL, reason="COMFYUI_TEST_URL is not set"),
]


def empty_image(width: int = 64, color: int = 0x3366CC) -> dict[str, Any]:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": width, "height": 48, "batch_size": 1, "color": color},
        },
        "2": {
            "class_type": "SaveImage",
            "inputs": {"images": ["1", 0], "filename_prefix": "comfybot_test/empty"},
        },
    }


@pytest.fixture
async def client(session: aiohttp.ClientSession) -> AsyncIterator[ComfyClient]:
    async with ComfyClient(URL, session, name="real", ws_stall_timeout_s=30) as c:
        yield c


async def test_empty_image_end_to_end(client: ComfyClient) -> None:
    assert client.connected
    pid = str(uuid.uuid4())  # current ComfyUI takes only a canonical UUID (400 invalid_prompt_id)
    # A colour nobody else uses, so ComfyUI's cache cannot skip the run.
    graph = empty_image(color=uuid.uuid4().int & 0xFFFFFF)
    events: list[ComfyEvent] = []
    async with client.track(pid, timeout_s=120) as tracker:
        await client.submit(graph, prompt_id=pid, extra_data={"request_id": "real-test"})
        events.extend([ev async for ev in tracker])
    assert isinstance(events[0], ExecutionStart)
    assert any(isinstance(e, Executed) and e.node == "2" for e in events)
    assert any(isinstance(e, ExecutionSuccess) for e in events)
    assert events[-1] == Executing(pid, None, None)
    assert tracker.result is not None and len(tracker.result.images) == 1
    data = await client.view(tracker.result.images[0])
    assert Image.open(io.BytesIO(data)).size == (64, 48)
    history = await client.history(pid)
    assert history is not None and history.images == tracker.result.images
    found = await client.locate(pid)  # /api/jobs on current ComfyUI, /history + /queue on 0.3.x
    assert found.where is Where.DONE and found.result is not None
    assert found.result.images == tracker.result.images
    assert client.server_features.get("supports_preview_metadata") is True


async def test_rejection_summary(client: ComfyClient) -> None:
    with pytest.raises(ComfyRejected) as info:
        await client.submit(empty_image(width=-5), prompt_id=str(uuid.uuid4()))
    assert info.value.summary() == "node 1 (EmptyImage): width: Value -5 smaller than min of 1"


async def test_upload_and_endpoints(client: ComfyClient) -> None:
    png = io.BytesIO()
    Image.new("RGB", (8, 8), "green").save(png, "PNG")
    name = await client.upload_image(png.getvalue(), "comfybot_test.png", subfolder="comfybot_test")
    assert name == await client.upload_image(png.getvalue(), "comfybot_test.png", subfolder="comfybot_test")
    assert "EmptyImage" in await client.object_info("EmptyImage")
    assert "system" in await client.system_stats()
    assert await client.queue_remaining() >= 0
    await client.queue()
