"""Fixtures for the ComfyUI client tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """The caller-owned session the client borrows (the client must not close it)."""
    async with aiohttp.ClientSession() as s:
        yield s
