"""Every frame of every recorded real-ComfyUI trace parses into a typed event."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from comfy.events import (
    Executed,
    Executing,
    ExecutionCached,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionStart,
    ExecutionSuccess,
    FeatureFlags,
    Logs,
    PreviewImage,
    Progress,
    ProgressState,
    ProgressText,
    Status,
    UnknownEvent,
    parse_binary,
    parse_json,
)

TRACES = Path(__file__).resolve().parents[3] / "shared/comfyui/traces"
TRACE_FILES = sorted(TRACES.glob("ws_trace_*.jsonl")) if TRACES.is_dir() else []

EXPECTED_JSON = {
    "status": Status,
    "execution_start": ExecutionStart,
    "execution_cached": ExecutionCached,
    "executing": Executing,
    "progress": Progress,
    "progress_state": ProgressState,
    "executed": Executed,
    "execution_success": ExecutionSuccess,
    "execution_error": ExecutionError,
    "execution_interrupted": ExecutionInterrupted,
    "feature_flags": FeatureFlags,
}


def load_trace(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def frame_from_record(rec: dict[str, Any]) -> bytes:
    """Rebuild the binary frame the server sent from the decoded header the trace stored."""
    event, total = int(rec["event"]), int(rec["len"])
    if event == 1:
        head = struct.pack(">II", 1, rec["image_format"])
    elif event == 3:
        node, text = str(rec["node_id"]).encode(), str(rec["text"]).encode()
        frame = struct.pack(">II", 3, len(node)) + node + text
        assert len(frame) == total, "trace len is the whole frame"
        return frame
    elif event == 4:
        meta = json.dumps(rec["metadata"]).encode()
        head = struct.pack(">II", 4, len(meta)) + meta
    else:
        raise AssertionError(f"unexpected binary event {event}")
    magic = bytes.fromhex(rec["magic"])
    assert total >= len(head) + len(magic)
    return head + magic + b"\0" * (total - len(head) - len(magic))


def records(kind: str) -> list[Any]:
    return [
        pytest.param(rec, id=f"{path.stem}:{n}")
        for path in TRACE_FILES
        for n, rec in enumerate(load_trace(path))
        if rec["kind"] == kind
    ]


pytestmark = pytest.mark.skipif(not TRACE_FILES, reason=f"no recorded traces in {TRACES}")


def test_traces_are_present_and_cover_binary_types() -> None:
    kinds = {(r["kind"], r.get("event")) for p in TRACE_FILES for r in load_trace(p)}
    assert {("binary", 1), ("binary", 3), ("binary", 4), ("json", None)} <= kinds


@pytest.mark.parametrize("rec", records("json"))
def test_json_frame_parses_to_its_typed_event(rec: dict[str, Any]) -> None:
    data = rec["data"]
    event = parse_json(rec["type"], data)
    assert not isinstance(event, UnknownEvent)
    assert isinstance(event, EXPECTED_JSON[rec["type"]])
    if "prompt_id" in data:
        assert event.prompt_id == data["prompt_id"]  # type: ignore[union-attr]  # checked by key above
    match event:
        case Status():
            assert event.queue_remaining == data["status"]["exec_info"]["queue_remaining"]
            assert event.sid == data.get("sid")
        case Executing():
            assert event.node == data["node"]
            assert event.prompt_id == data.get("prompt_id")
        case Progress():
            assert (event.value, event.max, event.node) == (data["value"], data["max"], data["node"])
        case ProgressState():
            assert set(event.nodes) == set(data["nodes"])
            for node_id, state in event.nodes.items():
                assert state.state == data["nodes"][node_id]["state"]
                assert state.max == data["nodes"][node_id]["max"]
        case ExecutionCached():
            assert list(event.nodes) == data["nodes"]
        case Executed():
            assert event.node == data["node"] and event.output == data["output"]
        case ExecutionError():
            assert event.node_id == data["node_id"] and event.exception_type == data["exception_type"]
            assert event.exception_message == data["exception_message"]
            assert list(event.executed) == data["executed"]
            assert event.blocking
        case ExecutionInterrupted():
            assert event.node_id == data["node_id"] and event.node_type == data["node_type"]
        case FeatureFlags():
            assert event.data["supports_preview_metadata"] is True


@pytest.mark.parametrize("rec", records("binary"))
def test_binary_frame_parses_to_its_typed_event(rec: dict[str, Any]) -> None:
    frame = frame_from_record(rec)
    event = parse_binary(frame)
    match rec["event"]:
        case 1:
            assert isinstance(event, PreviewImage)
            assert event.prompt_id is None and event.node_id is None
            assert event.mime == {1: "image/jpeg", 2: "image/png"}[rec["image_format"]]
            assert event.data.startswith(bytes.fromhex(rec["magic"]))
            assert len(event.data) == rec["len"] - 8
        case 3:
            assert event == ProgressText(rec["node_id"], rec["text"])
        case 4:
            assert isinstance(event, PreviewImage)
            meta = rec["metadata"]
            assert (event.prompt_id, event.node_id) == (meta["prompt_id"], meta["node_id"])
            assert event.display_node_id == meta["display_node_id"]
            assert event.mime == meta["image_type"]
            assert event.data.startswith(bytes.fromhex(rec["magic"]))


def test_preview_bytes_stay_out_of_repr() -> None:
    event = parse_binary(struct.pack(">II", 1, 1) + b"\xff\xd8secret-bytes")
    assert "secret" not in repr(event)


def test_unknown_types_are_kept_not_dropped() -> None:
    assert parse_json("crystools.monitor", {"cpu": 3}) == UnknownEvent("crystools.monitor", {"cpu": 3})
    assert parse_json("status", "not a dict") == UnknownEvent("status", "not a dict")
    event = parse_binary(struct.pack(">I", 9) + b"xyz")
    assert isinstance(event, UnknownEvent) and event.type == "binary:9"


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x00\x00",
        struct.pack(">I", 1),
        struct.pack(">II", 3, 10) + b"ab",
        struct.pack(">II", 4, 50) + b"{}",
        struct.pack(">II", 4, 2) + b"{x",
        struct.pack(">II", 4, 2) + b"[]",
    ],
)
def test_malformed_binary_frames_raise_value_error(frame: bytes) -> None:
    with pytest.raises(ValueError):
        parse_binary(frame)


def test_logs_message() -> None:
    event = parse_json("logs", {"entries": [{"t": "2025-10-12", "m": "loaded\n"}, "junk"], "size": None})
    assert event == Logs(({"t": "2025-10-12", "m": "loaded\n"},), None)


def test_missing_fields_do_not_raise() -> None:
    assert parse_json("executing", {}) == Executing(None, None, None)
    assert parse_json("progress", {"value": 1}) == Progress(None, None, 1.0, 0.0)
    assert parse_json("status", {}) == Status(0, None)
