"""Fixtures for comfybot's own tests: logging is reset after every test so other packages see defaults."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.logs import reset_logging


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    reset_logging()
