"""Fixtures for the fake ComfyUI's own tests (other packages use ``running_fake_comfyui`` directly)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.fakes.comfyui import FakeComfyUI, running_fake_comfyui


@pytest.fixture(params=[False, True], ids=["current", "v0.3.64"])
async def fake_comfy(request: pytest.FixtureRequest) -> AsyncIterator[FakeComfyUI]:
    """A started fake with fast defaults (2 ms per node and per sampler step), as the newest ComfyUI
    and as 0.3.64 (``legacy=True``)."""
    async with running_fake_comfyui(legacy=bool(request.param)) as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
