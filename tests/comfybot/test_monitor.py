"""``comfybot monitor``: colours by kind of event, columns, --no-color, following files across rotation."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from comfybot.monitor import (
    BLUE,
    GREEN,
    RED,
    RESET,
    YELLOW,
    colour_of,
    follow,
    render,
    render_line,
    show_files,
)

from .samples import RID, rec, write, write_request


@pytest.mark.parametrize(
    ("record", "colour"),
    [
        (rec(0, "job_succeeded", "gateway", duration_ms=5), GREEN),
        (rec(0, "response_sent", "telegram"), GREEN),
        (rec(0, "result_delivered", "telegram"), GREEN),
        (rec(0, "workflow_rendered", "comfy"), BLUE),
        (rec(0, "image_uploaded", "comfy", bytes=10), BLUE),
        (rec(0, "comfyui_prompt_sent", "comfy"), BLUE),
        (rec(0, "image_retrieved", "comfy", bytes=10), BLUE),
        (rec(0, "job_progress", "gateway", node_label="Sampling", done_nodes=9, total_nodes=16), YELLOW),
        (rec(0, "job_enqueued", "gateway"), YELLOW),
        (rec(0, "comfyui_ws_reconnect", "comfy", "warning"), YELLOW),
        (rec(0, "rate_limited", "gateway", "warning"), YELLOW),
        (rec(0, "Failed to fetch updates", "aiogram", "warning"), YELLOW),
        (rec(0, "job_failed", "gateway", code="timeout"), RED),
        (rec(0, "comfyui_execution_error", "comfy", "error"), RED),
        (rec(0, "validation_error", "bot"), RED),
        (rec(0, "job_timed_out", "gateway"), RED),
        (rec(0, "anything", "aiohttp", "error"), RED),
        (rec(0, "command_received", "telegram"), ""),
    ],
    ids=lambda v: v["event"] if isinstance(v, dict) else repr(v),
)
def test_colours(record: dict[str, Any], colour: str) -> None:
    assert colour_of(record) == colour
    line = render(record, colour=True)
    if colour:
        assert line.startswith(colour) and line.endswith(RESET)
    else:
        assert "\x1b[" not in line


def test_columns() -> None:
    r = rec(1.25, "comfyui_prompt_sent", "comfy", request_id=RID, job_id="job-1", prompt_id="p 1")
    assert render(r, colour=False) == (
        "03:04:06.250 info  comfy      01234567 comfyui_prompt_sent  job_id=job-1 prompt_id='p 1'"
    )
    w = rec(0, "slow", "aiohttp", "warning")
    assert render(w, colour=False).startswith("03:04:05.000 warn  aiohttp    -        slow")


def test_progress_rendering() -> None:
    r = rec(
        0,
        "job_progress",
        "gateway",
        request_id=RID,
        node_label="Sampling",
        node_type="KSampler",
        done_nodes=9,
        total_nodes=16,
        value=12,
        max=30,
        percent=56.0,
    )
    assert "job_progress  [ 9/16] Sampling (KSampler) 12/30 56%" in render(r, colour=False)


def test_exception_lines_are_indented() -> None:
    exc = "Traceback (most recent call last):\nKeyError: 'x'"
    r = rec(0, "job_failed", "gateway", "error", exception=exc)
    text = render(r, colour=False)
    assert text.splitlines()[1:] == ["    Traceback (most recent call last):", "    KeyError: 'x'"]


def test_non_json_passthrough() -> None:
    assert render_line("plain text\n", colour=False) == "plain text"
    assert render_line("plain text\n", colour=True) == "\x1b[2mplain text\x1b[0m"


def test_show_files_merges_by_time_without_colour(tmp_path: Path) -> None:
    write_request(tmp_path)
    out = io.StringIO()
    n = show_files([tmp_path / "bot.log", tmp_path / "gateway.log"], out, colour=False)
    lines = out.getvalue().splitlines()
    assert n == len(lines) == 16
    assert "\x1b[" not in out.getvalue()
    assert lines == sorted(lines)  # rows start with the time
    assert "command_received" in lines[0] and "response_sent" in lines[-1]


class _Out(io.StringIO):
    def wait_for(self, text: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.getvalue():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared in:\n{self.getvalue()}")
            time.sleep(0.01)


def test_follow_survives_rotation_and_new_files(tmp_path: Path) -> None:
    log = write(tmp_path / "gateway.log", [rec(0, "old_line", "gateway")])
    out = _Out()
    done = threading.Event()
    worker = threading.Thread(
        target=follow,
        args=([log], out, False),
        kwargs={
            "backlog": 5,
            "poll_s": 0.01,
            "stop": done.is_set,
            "discover": lambda: sorted(tmp_path.glob("*.log")),
        },
    )
    worker.start()
    try:
        out.wait_for("old_line")
        write(log, [rec(1, "job_enqueued", "gateway")])
        out.wait_for("job_enqueued")
        log.rename(tmp_path / "gateway.log.1")  # rotation: a new file takes the name
        write(log, [rec(2, "after_rotation", "gateway")])
        out.wait_for("after_rotation")
        with log.open("a") as f:  # a half-written line is held until its newline arrives
            f.write('{"event": "partial", "timestamp": "2026-01-02T03:04:09Z"')
        time.sleep(0.05)
        assert "partial" not in out.getvalue()
        with log.open("a") as f:
            f.write("}\n")
        out.wait_for("partial")
        write(tmp_path / "bot.log", [rec(3, "new_process", "bot")])
        out.wait_for("new_process")
    finally:
        done.set()
        worker.join(timeout=10)
    assert out.getvalue().count("old_line") == 1
