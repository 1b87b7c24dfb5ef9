"""One request followed through the JSON logs by its request_id: chat → gateway → ComfyUI → chat."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from comfy.workflows import WorkflowRegistry
from comfybot import trace
from core.logs import configure_logging, reset_logging
from tests.bot.conftest import bench, jpeg

USER, CHAT = 8008, 8008


@pytest.fixture
def log_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "logs"
    configure_logging("comfybot", directory, "INFO", stdout=False)
    try:
        yield directory
    finally:
        reset_logging()


def _lines(log_dir: Path) -> list[dict[str, Any]]:
    return [
        orjson.loads(line) for line in (log_dir / "comfybot.log").read_text().splitlines() if line.strip()
    ]


async def test_one_request_traced_by_request_id(
    data_dir: Path, registry: WorkflowRegistry, log_dir: Path
) -> None:
    async with bench(data_dir, registry) as b:
        b.fake.send_text(USER, CHAT, "/generate a lighthouse --steps 4")
        await b.result(CHAT)
        await b.until(lambda: len(b.bot_msgs(CHAT)) == 1)
        token = b.fake.token
    lines = _lines(log_dir)
    received = next(
        x for x in lines if x.get("event") == "command_received" and x.get("user_id") == str(USER)
    )
    rid = received["request_id"]
    mine = [x for x in lines if x.get("request_id") == rid]
    events = [x["event"] for x in mine]
    for expected in (
        "command_received",
        "job_enqueued",
        "comfyui_prompt_sent",
        "job_succeeded",
        "response_sent",
    ):
        assert expected in events, f"{expected} missing from {events}"
    assert events.index("command_received") < events.index("job_enqueued") < events.index("job_succeeded")
    result = [x for x in mine if x["event"] == "response_sent" and x.get("kind") == "photo"]
    assert result and result[0]["bytes"] > 0 and result[0]["duration_ms"] >= 0
    components = {x.get("component") for x in mine}
    assert {"telegram", "gateway", "comfy"} <= components
    assert all(x.get("platform") == "telegram" for x in mine if x.get("component") == "telegram")
    assert token not in (log_dir / "comfybot.log").read_text()


async def test_photo_received_is_logged_with_size(
    data_dir: Path, registry: WorkflowRegistry, log_dir: Path
) -> None:
    async with bench(data_dir, registry) as b:
        b.fake.send_photo(USER, CHAT, jpeg(120, 80), caption="snowy")
        await b.result(CHAT)
        token = b.fake.token
    text = (log_dir / "comfybot.log").read_text()
    assert token not in text, "the file URL (with the token) is never logged"
    photo = next(x for x in _lines(log_dir) if x.get("event") == "photo_received")
    assert photo["width"] == 120 and photo["height"] == 80 and photo["bytes"] > 0
    assert photo["request_id"]


async def test_validation_error_is_logged(data_dir: Path, registry: WorkflowRegistry, log_dir: Path) -> None:
    async with bench(data_dir, registry) as b:
        b.fake.send_text(USER, CHAT, "/generate x --steps 99999")
        await b.text_reply(CHAT, "--steps")
    errors = [
        x for x in _lines(log_dir) if x.get("event") == "validation_error" and x.get("field") == "steps"
    ]
    assert errors and errors[0]["reason"] == "too_large" and errors[0]["request_id"]


async def test_trace_of_a_real_run_has_every_stage_non_negative_and_one_line_per_node(
    data_dir: Path, registry: WorkflowRegistry, log_dir: Path
) -> None:
    """The log of a real run (aiogram ↔ fake Bot API, gateway, comfy client ↔ fake ComfyUI) read by
    ``comfybot trace``: node lines carry the request id, and the deliver stage is not negative."""
    async with bench(data_dir, registry) as b:
        b.fake.send_text(USER, CHAT, "/generate a lighthouse --steps 4")
        await b.result(CHAT)
        await b.until(lambda: len(b.bot_msgs(CHAT)) == 1)
    lines = _lines(log_dir)
    rid = next(x for x in lines if x.get("event") == "command_received")["request_id"]
    finished = [x for x in lines if x.get("event") == "node_finished" and x.get("request_id") == rid]
    assert finished and all(x["duration_ms"] >= 0 and x["class_type"] for x in finished)
    entries = trace.select(lines, rid)
    assert all(seconds >= 0 for _, seconds in trace.stages(entries))
    rows = trace.nodes(entries)
    assert len(rows) >= len(finished) and any("KSampler" in label for label, _ in rows)
