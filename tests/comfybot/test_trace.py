"""``comfybot trace``: selection by request id, timeline order, stage and per-node durations."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from comfybot.logfiles import log_files, read_records
from comfybot.trace import AmbiguousRequestId, nodes, render, select, stages

from .samples import OTHER, RID, rec, write, write_request


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    d = tmp_path / "logs"
    write_request(d)
    return d


def test_select_by_full_and_short_id(log_dir: Path) -> None:
    full = select(read_records(log_files(log_dir)), RID)
    short = select(read_records(log_files(log_dir)), RID[:8])
    assert [e.record for e in full] == [e.record for e in short]
    events = [e.record["event"] for e in full]
    assert events[0] == "command_received" and events[-1] == "response_sent"
    assert all(e.record.get("request_id", RID) == RID for e in full)
    assert "worker_heartbeat" in events  # a job_id-only line of the same job
    offsets = [e.offset_s for e in full]
    assert offsets == sorted(offsets) and offsets[0] == 0 and offsets[-1] == pytest.approx(20.0)


def test_ambiguous_prefix(log_dir: Path) -> None:
    write(log_dir / "bot.log", [rec(30, "command_received", "telegram", request_id=RID[:8] + "ffffffff")])
    with pytest.raises(AmbiguousRequestId, match="matches 2 requests"):
        select(read_records(log_files(log_dir)), RID[:8])
    assert select(read_records(log_files(log_dir)), RID)  # the full id is never ambiguous


def test_stages_and_nodes(log_dir: Path) -> None:
    entries = select(read_records(log_files(log_dir)), RID)
    assert stages(entries) == [  # type: ignore[comparison-overlap]  # pytest.approx compares with floats
        ("received → enqueued (accept)", pytest.approx(0.010)),
        ("enqueued → dequeued (queue wait)", pytest.approx(1.5)),
        ("dequeued → prompt sent (prepare)", pytest.approx(0.29)),
        ("prompt sent → finished (generate)", pytest.approx(16.7)),
        ("finished → response sent (deliver)", pytest.approx(1.5)),
    ]
    assert nodes(entries) == [  # type: ignore[comparison-overlap]  # pytest.approx compares with floats
        ("[ 1/16] Loading model (CheckpointLoaderSimple)", pytest.approx(2.5)),
        ("[ 9/16] Sampling (KSampler)", pytest.approx(12.4)),
        ("[12/16] Decoding (VAEDecode)", pytest.approx(1.6)),
    ]


def test_render_prints_stages_in_order_with_durations(log_dir: Path) -> None:
    text = render(select(read_records(log_files(log_dir)), RID[:8]), RID[:8], colour=False)
    assert "\x1b[" not in text
    assert text.startswith(f"request {RID}")
    assert "+0.000s  telegram command_received" in text
    assert "+1.800s  comfy    comfyui_prompt_sent" in text
    assert "[ 9/16] Sampling (KSampler)  12.4 s" in text
    assert "+20.000s  telegram response_sent" in text
    order = [
        "command_received",
        "job_enqueued",
        "job_dequeued",
        "workflow_rendered",
        "image_uploaded",
        "comfyui_prompt_sent",
        "Loading model",
        "Sampling",
        "Decoding",
        "image_retrieved",
        "job_succeeded",
        "response_sent",
        "queue wait",
        "generate",
        "deliver",
        "total 20.000 s",
    ]
    positions = [text.index(word) for word in order]
    assert positions == sorted(positions)
    assert re.search(r"queue wait\)\s+1\.5 s", text)
    assert re.search(r"generate\)\s+16\.7 s", text)
    assert OTHER not in text and "job-2" not in text
    # progress lines of one node are folded into one row carrying the node's time
    assert text.count("Sampling (KSampler)") == 2  # timeline row + nodes section


def test_render_colours(log_dir: Path) -> None:
    text = render(select(read_records(log_files(log_dir)), RID), RID, colour=True)
    assert "\x1b[32mtotal 20.000 s  (job_succeeded)\x1b[0m" in text


def test_failed_request(tmp_path: Path) -> None:
    records = [
        rec(0, "command_received", "telegram", request_id=RID),
        rec(0.1, "job_enqueued", "gateway", request_id=RID, job_id="j"),
        rec(0.2, "job_dequeued", "gateway", request_id=RID, job_id="j"),
        rec(0.3, "comfyui_prompt_sent", "comfy", request_id=RID, job_id="j"),
        rec(3.3, "comfyui_execution_error", "comfy", "error", request_id=RID, job_id="j", node_id="3"),
        rec(3.4, "job_failed", "gateway", "error", request_id=RID, job_id="j", code="comfy_execution_error"),
    ]
    entries = select(records, RID)
    last = stages(entries)[-1]
    assert last == ("prompt sent → finished (generate)", pytest.approx(3.1))  # type: ignore[comparison-overlap]
    text = render(entries, RID, colour=True)
    assert "\x1b[31mtotal 3.400 s  (job_failed)\x1b[0m" in text


def test_unknown_request(log_dir: Path) -> None:
    assert select(read_records(log_files(log_dir)), "deadbeef") == []
    assert render([], "deadbeef") == "no log lines for request deadbeef\n"


def test_rotated_files_are_read(tmp_path: Path) -> None:
    d = tmp_path / "logs"
    write(d / "gateway.log.1", [rec(0, "job_enqueued", "gateway", request_id=RID)])
    write(d / "gateway.log", [rec(1, "job_succeeded", "gateway", request_id=RID)])
    (d / "notes.txt").write_text("not a log")
    assert [p.name for p in log_files(d)] == ["gateway.log.1", "gateway.log"]
    events = [e.record["event"] for e in select(read_records(log_files(d)), RID)]
    assert events == ["job_enqueued", "job_succeeded"]


def test_garbage_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    write(path, [rec(0, "job_enqueued", "gateway", request_id=RID)])
    with path.open("a") as f:
        f.write("Traceback (most recent call last):\n{not json\n[1, 2]\n\n")
    write(path, [rec(1, "job_succeeded", "gateway", request_id=RID)])
    assert len(select(read_records([path]), RID)) == 2


def test_deliver_stage_is_not_negative_when_the_queued_ack_is_a_response_sent() -> None:
    """Issue 13: the queued acknowledgement is a ``response_sent`` too; deliver must end at the one after."""
    lines = [
        rec(0.0, "command_received", "bot", request_id=RID, platform="telegram"),
        rec(0.012, "job_enqueued", "gateway", request_id=RID, job_id="job-1", position=1),
        rec(0.019, "response_sent", "bot", request_id=RID, kind="queued"),
        rec(0.030, "job_dequeued", "gateway", request_id=RID, job_id="job-1"),
        rec(0.200, "comfyui_prompt_sent", "gateway", request_id=RID, job_id="job-1", prompt_id="p-1"),
        rec(14.047, "job_succeeded", "gateway", request_id=RID, job_id="job-1", duration_ms=14017),
        rec(14.637, "response_sent", "bot", request_id=RID, kind="result"),
    ]
    st = dict(stages(select(lines, RID)))
    assert all(secs >= 0 for secs in st.values()), st
    assert st["finished → response sent (deliver)"] == pytest.approx(0.59)


def test_nodes_from_node_started_and_finished_lines() -> None:
    """Issue 13 item 2: trace prints one line per node from the gateway's node_* lines."""
    node: dict[str, Any] = {"request_id": RID, "job_id": "job-1", "total_nodes": 16}
    lines = [
        rec(0.0, "command_received", "bot", request_id=RID),
        rec(
            1.0,
            "node_started",
            "gateway",
            node_id="3",
            class_type="KSampler",
            node_label="Sampling",
            done_nodes=8,
            **node,
        ),
        rec(
            13.4,
            "node_finished",
            "gateway",
            node_id="3",
            class_type="KSampler",
            node_label="Sampling",
            done_nodes=8,
            duration_ms=12400,
            **node,
        ),
        rec(13.5, "job_succeeded", "gateway", request_id=RID, job_id="job-1"),
    ]
    entries = select(lines, RID)
    assert nodes(entries) == [("[ 9/16] Sampling (KSampler)", pytest.approx(12.4))]  # type: ignore[comparison-overlap]  # approx
    assert "[ 9/16] Sampling (KSampler)  12.4 s" in render(entries, RID, colour=False)
    assert all(secs >= 0 for _, secs in stages(entries))
