"""A POST /prompt whose answer never arrives may still have queued the prompt: never run it twice."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from comfy import ComfyClient, ComfyUnreachable
from tests.comfy.conftest import pid
from tests.fakes.comfyui import FakeComfyUI, running_fake_comfyui

GRAPH = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "late"}},
}


@pytest.fixture
async def comfy() -> AsyncIterator[FakeComfyUI]:
    async with running_fake_comfyui() as fake:
        yield fake


async def test_late_answer_counts_as_submitted_and_completes(comfy: FakeComfyUI) -> None:
    comfy.answer_late(1.0)
    async with (
        aiohttp.ClientSession() as session,
        ComfyClient(comfy.url, session, request_timeout_s=0.3) as client,
        client.track(pid("late-1")) as tracker,
    ):
        number = await client.submit(GRAPH, prompt_id=pid("late-1"))
        result = await tracker.wait()
    assert number == -1  # unconfirmed: found in ComfyUI's queue/history after the timeout
    assert result.images and len(comfy.received_prompts) == 1


async def test_timeout_of_a_prompt_that_never_landed_still_raises(comfy: FakeComfyUI) -> None:
    comfy.reject_next(500)  # the POST fails and nothing is queued
    async with aiohttp.ClientSession() as session, ComfyClient(comfy.url, session) as client:
        with pytest.raises(ComfyUnreachable):
            await client.submit(GRAPH, prompt_id=pid("never"))
