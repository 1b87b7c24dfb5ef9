"""Fixtures for the ComfyUI client tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from comfy.client import ComfyClient
from tests.fakes.comfyui import FakeComfyUI, running_fake_comfyui


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """The caller-owned session the client borrows (the client must not close it)."""
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture(params=[False, True], ids=["current", "v0.3.64"])
async def fake(request: pytest.FixtureRequest) -> AsyncIterator[FakeComfyUI]:
    """A fast fake ComfyUI (1 ms per node and per sampler step), as the newest server and as 0.3.64."""
    legacy = bool(request.param)
    async with running_fake_comfyui(node_delay_s=0.001, step_delay_s=0.001, legacy=legacy) as server:
        yield server


@pytest.fixture
async def client(fake: FakeComfyUI, session: aiohttp.ClientSession) -> AsyncIterator[ComfyClient]:
    """A started client of ``fake`` (stall timeout 5 s)."""
    async with ComfyClient(fake.url, session, name="fake", ws_stall_timeout_s=5.0) as c:
        yield c


def pid(name: str) -> str:
    """A readable test name as the canonical UUID current ComfyUI requires for ``prompt_id``."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"comfybot-test-{name}"))
