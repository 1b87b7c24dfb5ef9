"""Hand-written JSON log lines with fixed timestamps, shaped like the ones the processes write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
RID = "0123456789abcdef"
OTHER = "fedcba9876543210"


def rec(offset_s: float, event: str, component: str, level: str = "info", **fields: Any) -> dict[str, Any]:
    ts = (T0 + timedelta(seconds=offset_s)).isoformat().replace("+00:00", "Z")
    return {"timestamp": ts, "level": level, "component": component, "event": event, **fields}


def progress(
    offset_s: float, done: int, label: str, node_type: str, value: int = 0, mx: int = 0
) -> dict[str, Any]:
    return rec(
        offset_s,
        "job_progress",
        "gateway",
        request_id=RID,
        job_id="job-1",
        node_label=label,
        node_type=node_type,
        done_nodes=done,
        total_nodes=16,
        value=value,
        max=mx,
        percent=done * 6.25,
    )


def request_lines() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(bot.log records, gateway.log records) for one request, interleaved with another request's lines."""
    bot = [
        rec(0.0, "command_received", "telegram", request_id=RID, platform="telegram", user_id="7"),
        rec(0.5, "command_received", "telegram", request_id=OTHER, platform="telegram", user_id="8"),
        rec(20.0, "response_sent", "telegram", request_id=RID, message_id=99),
    ]
    gateway = [
        rec(0.010, "job_enqueued", "gateway", request_id=RID, job_id="job-1", position=2),
        rec(1.510, "job_dequeued", "gateway", request_id=RID, job_id="job-1", backend="gpu-a"),
        rec(1.600, "workflow_rendered", "comfy", request_id=RID, job_id="job-1", workflow="txt2img"),
        rec(1.700, "image_uploaded", "comfy", request_id=RID, job_id="job-1", bytes=1000),
        rec(1.800, "comfyui_prompt_sent", "comfy", request_id=RID, job_id="job-1", prompt_id="p-1"),
        progress(2.0, 1, "Loading model", "CheckpointLoaderSimple"),
        rec(
            2.1,
            "job_progress",
            "gateway",
            request_id=OTHER,
            job_id="job-2",
            node_label="Sampling",
            done_nodes=9,
            total_nodes=16,
        ),
        progress(4.5, 9, "Sampling", "KSampler", 1, 30),
        progress(10.0, 9, "Sampling", "KSampler", 15, 30),
        progress(16.9, 12, "Decoding", "VAEDecode"),
        rec(17.0, "worker_heartbeat", "gateway", job_id="job-1", backend="gpu-a"),  # job_id only
        rec(18.0, "image_retrieved", "comfy", request_id=RID, job_id="job-1", bytes=123456),
        rec(18.5, "job_succeeded", "gateway", request_id=RID, job_id="job-1", duration_ms=18490),
    ]
    return bot, gateway


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as f:
        for r in records:
            f.write(orjson.dumps(r) + b"\n")
    return path


def write_request(log_dir: Path) -> None:
    bot, gateway = request_lines()
    write(log_dir / "bot.log", bot)
    write(log_dir / "gateway.log", gateway)
