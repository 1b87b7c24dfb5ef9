"""Typed ComfyUI websocket events (JSON and binary frames), per ``shared/comfyui/PROTOCOL.md``.

``parse_json(type, data)`` and ``parse_binary(frame)`` never raise on unexpected *content* of a known
type (missing keys become ``None``/defaults); unknown types become :class:`UnknownEvent`. Only a binary
frame too short to hold its header raises :class:`ValueError`.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ComfyEvent",
    "Executed",
    "Executing",
    "ExecutionCached",
    "ExecutionError",
    "ExecutionInterrupted",
    "ExecutionStart",
    "ExecutionSuccess",
    "FeatureFlags",
    "Logs",
    "NodeState",
    "PreviewImage",
    "Progress",
    "ProgressState",
    "ProgressText",
    "Status",
    "UnknownEvent",
    "parse_binary",
    "parse_json",
]

# protocol.BinaryEventTypes
BINARY_PREVIEW_IMAGE = 1
BINARY_TEXT = 3
BINARY_PREVIEW_IMAGE_WITH_METADATA = 4
_IMAGE_FORMATS = {1: "image/jpeg", 2: "image/png"}


@dataclass(frozen=True)
class Status:
    """Queue size, broadcast on every queue change; ``sid`` only in the first one after connecting."""

    queue_remaining: int
    sid: str | None = None


@dataclass(frozen=True)
class ExecutionStart:
    prompt_id: str
    timestamp: int | None = None


@dataclass(frozen=True)
class ExecutionCached:
    """Nodes whose outputs come from cache; they get no ``executing``."""

    prompt_id: str
    nodes: tuple[str, ...]
    timestamp: int | None = None


@dataclass(frozen=True)
class Executing:
    """A node starts; ``node is None`` means the prompt finished (the definitive completion signal).

    ``prompt_id`` is ``None`` only in the replay sent to a socket that reconnects mid-run.
    """

    prompt_id: str | None
    node: str | None
    display_node: str | None = None


@dataclass(frozen=True)
class Progress:
    prompt_id: str | None
    node: str | None
    value: float
    max: float


@dataclass(frozen=True)
class NodeState:
    value: float
    max: float
    state: str  # "running" | "finished" | "error"
    node_id: str
    display_node_id: str | None = None
    parent_node_id: str | None = None
    real_node_id: str | None = None
    #: current ComfyUI: what a running node does before it reports steps, e.g. ``"loading"`` (weights
    #: moving); None on 0.3.x and when the node just runs.
    activity: str | None = None


@dataclass(frozen=True)
class ProgressState:
    """Snapshot of every non-pending node of the prompt so far."""

    prompt_id: str
    nodes: Mapping[str, NodeState]


@dataclass(frozen=True)
class Executed:
    """A node returned UI output, e.g. ``{"images": [{"filename", "subfolder", "type"}]}``."""

    prompt_id: str
    node: str
    output: Mapping[str, Any]
    display_node: str | None = None


@dataclass(frozen=True)
class ExecutionSuccess:
    prompt_id: str
    timestamp: int | None = None


@dataclass(frozen=True)
class ExecutionError:
    prompt_id: str
    node_id: str | None
    node_type: str | None
    exception_type: str
    exception_message: str
    traceback: tuple[str, ...] = ()
    executed: tuple[str, ...] = ()
    timestamp: int | None = None

    @property
    def blocking(self) -> bool:
        """False for ``ExecutionBlocked`` notices, after which the prompt carries on."""
        return self.exception_type != "ExecutionBlocked"


@dataclass(frozen=True)
class ExecutionInterrupted:
    prompt_id: str
    node_id: str | None
    node_type: str | None
    executed: tuple[str, ...] = ()


@dataclass(frozen=True)
class PreviewImage:
    """Binary type 1 (no ids; attributed by the client) or type 4 (ids in its metadata)."""

    prompt_id: str | None
    node_id: str | None
    mime: str
    data: bytes = field(repr=False)  # never in reprs or logs
    display_node_id: str | None = None


@dataclass(frozen=True)
class ProgressText:
    """Binary type 3: a text line for a node; broadcast, carries no prompt id."""

    node_id: str
    text: str


@dataclass(frozen=True)
class FeatureFlags:
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Logs:
    """Server log lines; only sent after ``/internal/logs/subscribe``. ``size``: terminal size or None."""

    entries: tuple[Mapping[str, Any], ...]
    size: Any = None


@dataclass(frozen=True)
class UnknownEvent:
    """A message this client does not model (custom nodes, ``logs``, unknown binary types)."""

    type: str
    data: Any = field(repr=False)


ComfyEvent = (
    Status
    | ExecutionStart
    | ExecutionCached
    | Executing
    | Progress
    | ProgressState
    | Executed
    | ExecutionSuccess
    | ExecutionError
    | ExecutionInterrupted
    | PreviewImage
    | ProgressText
    | FeatureFlags
    | Logs
    | UnknownEvent
)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _strs(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()


def _node_state(node_id: str, raw: Any) -> NodeState:
    d = raw if isinstance(raw, Mapping) else {}
    return NodeState(
        value=_num(d.get("value")),
        max=_num(d.get("max")),
        state=str(d.get("state", "")),
        node_id=str(d.get("node_id", node_id)),
        display_node_id=_str(d.get("display_node_id")),
        parent_node_id=_str(d.get("parent_node_id")),
        real_node_id=_str(d.get("real_node_id")),
        activity=_str(d.get("activity")),
    )


def _status(data: Mapping[str, Any]) -> Status:
    status = data.get("status")
    info = status.get("exec_info") if isinstance(status, Mapping) else None
    remaining = _int(info.get("queue_remaining")) if isinstance(info, Mapping) else None
    return Status(queue_remaining=remaining or 0, sid=_str(data.get("sid")))


def _progress_state(pid: str, data: Mapping[str, Any]) -> ProgressState:
    nodes = data.get("nodes")
    states = {str(k): _node_state(str(k), v) for k, v in nodes.items()} if isinstance(nodes, Mapping) else {}
    return ProgressState(pid, states)


def _execution_error(pid: str, data: Mapping[str, Any]) -> ExecutionError:
    return ExecutionError(
        prompt_id=pid,
        node_id=_str(data.get("node_id")),
        node_type=_str(data.get("node_type")),
        exception_type=str(data.get("exception_type", "")),
        exception_message=str(data.get("exception_message", "")),
        traceback=_strs(data.get("traceback")),
        executed=_strs(data.get("executed")),
        timestamp=_int(data.get("timestamp")),
    )


def _logs(data: Mapping[str, Any]) -> Logs:
    entries = data.get("entries")
    rows = tuple(e for e in entries if isinstance(e, Mapping)) if isinstance(entries, list) else ()
    return Logs(rows, data.get("size"))


def parse_json(type_: str, data: Any) -> ComfyEvent:
    """Turn one JSON frame ``{"type": type_, "data": data}`` into a typed event."""
    if not isinstance(data, Mapping):
        return UnknownEvent(type_, data)
    pid = str(data.get("prompt_id", ""))
    match type_:
        case "status":
            return _status(data)
        case "execution_start":
            return ExecutionStart(pid, _int(data.get("timestamp")))
        case "execution_cached":
            return ExecutionCached(pid, _strs(data.get("nodes")), _int(data.get("timestamp")))
        case "executing":
            return Executing(
                _str(data.get("prompt_id")), _str(data.get("node")), _str(data.get("display_node"))
            )
        case "progress":
            return Progress(
                _str(data.get("prompt_id")),
                _str(data.get("node")),
                _num(data.get("value")),
                _num(data.get("max")),
            )
        case "progress_state":
            return _progress_state(pid, data)
        case "executed":
            output = data.get("output")
            return Executed(
                pid,
                str(data.get("node", "")),
                output if isinstance(output, Mapping) else {},
                _str(data.get("display_node")),
            )
        case "execution_success":
            return ExecutionSuccess(pid, _int(data.get("timestamp")))
        case "execution_error":
            return _execution_error(pid, data)
        case "execution_interrupted":
            return ExecutionInterrupted(
                pid, _str(data.get("node_id")), _str(data.get("node_type")), _strs(data.get("executed"))
            )
        case "feature_flags":
            return FeatureFlags(dict(data))
        case "logs":
            return _logs(data)
        case _:
            return UnknownEvent(type_, data)


_U32 = struct.Struct(">I")


def _u32(frame: bytes, offset: int) -> int:
    if len(frame) < offset + 4:
        raise ValueError(f"binary frame too short: {len(frame)} bytes")
    value: int = _U32.unpack_from(frame, offset)[0]
    return value


def parse_binary(frame: bytes) -> ComfyEvent:
    """Turn one binary frame (``uint32 event_type`` big-endian + payload) into a typed event.

    Raises ``ValueError`` for a frame too short for its header or with unreadable metadata.
    """
    event_type = _u32(frame, 0)
    if event_type == BINARY_PREVIEW_IMAGE:
        image_format = _u32(frame, 4)
        mime = _IMAGE_FORMATS.get(image_format, "application/octet-stream")
        return PreviewImage(None, None, mime, bytes(frame[8:]))
    if event_type == BINARY_TEXT:
        size = _u32(frame, 4)
        if len(frame) < 8 + size:
            raise ValueError("binary text frame shorter than its node id")
        node_id = bytes(frame[8 : 8 + size]).decode("utf-8", "replace")
        return ProgressText(node_id, bytes(frame[8 + size :]).decode("utf-8", "replace"))
    if event_type == BINARY_PREVIEW_IMAGE_WITH_METADATA:
        size = _u32(frame, 4)
        if len(frame) < 8 + size:
            raise ValueError("binary preview frame shorter than its metadata")
        try:
            meta = json.loads(bytes(frame[8 : 8 + size]))
        except ValueError as exc:
            raise ValueError(f"binary preview metadata is not JSON: {exc}") from exc
        if not isinstance(meta, Mapping):
            raise ValueError("binary preview metadata is not an object")
        return PreviewImage(
            prompt_id=_str(meta.get("prompt_id")),
            node_id=_str(meta.get("node_id")),
            mime=str(meta.get("image_type") or "application/octet-stream"),
            data=bytes(frame[8 + size :]),
            display_node_id=_str(meta.get("display_node_id")),
        )
    return UnknownEvent(f"binary:{event_type}", bytes(frame[4:]))
