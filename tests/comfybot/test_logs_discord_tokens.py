"""discord.py logs its HTTP routes at DEBUG; interaction tokens in those paths never reach a log line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from core.logs import configure_logging

INTERACTION_TOKEN = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDExMjM0NTY3ODpYeVo1dGhJc0lzU2VjcmV0"


def test_interaction_tokens_in_discord_routes_are_redacted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("bot", tmp_path, "DEBUG", 1_000_000, 1)
    http = logging.getLogger("discord.http")
    # The shapes discord.py 2.7 logs in HTTPClient.request (method, url, payload, status):
    http.debug(
        "%s %s with %s has returned %s",
        "PATCH",
        f"https://discord.com/api/v10/webhooks/1180000000000000001/{INTERACTION_TOKEN}/messages/@original",
        None,
        200,
    )
    http.debug(
        "%s %s with %s has returned %s",
        "POST",
        f"https://discord.com/api/v10/interactions/1180000000000000002/{INTERACTION_TOKEN}/callback",
        None,
        204,
    )
    written = (tmp_path / "bot.log").read_text() + capsys.readouterr().out
    assert INTERACTION_TOKEN not in written
    assert written.count("/webhooks/1180000000000000001/***/messages") == 2  # file and stdout
    assert written.count("/interactions/1180000000000000002/***/callback") == 2
