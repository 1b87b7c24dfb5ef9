"""The newest ComfyUI's jobs API for the fake: ``/api/jobs`` JSON shapes and the prompt-id rule.

Follows ``comfy_execution/jobs.py`` of current ComfyUI (statuses pending / in_progress / completed /
failed / cancelled; a history entry's status from ``status_str`` and its ``execution_*`` messages;
``None`` fields left out like its ``prune_dict``). ComfyUI 0.3.64 has none of it.
"""

from __future__ import annotations

import uuid
from typing import Any

JSON = dict[str, Any]

#: Loader nodes that report ``activity: "loading"`` in progress_state while weights move.
LOADING_NODES = frozenset({"CheckpointLoaderSimple", "UpscaleModelLoader", "LoraLoader", "VAELoader"})

INVALID_PROMPT_ID: JSON = {
    "error": {
        "type": "invalid_prompt_id",
        "message": "prompt_id must be a valid UUID",
        "details": "prompt_id must be a UUID string in canonical lowercase hyphenated form; "
        "omit it to let the server generate one",
        "extra_info": {},
    },
    "node_errors": {},
}


def valid_job_id(value: Any) -> bool:
    """Canonical lowercase hyphenated UUID only, like the server's ``validate_job_id``."""
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def _prune(data: JSON) -> JSON:
    return {k: v for k, v in data.items() if v is not None}


def _queue_job(item: list[Any], status: str, *, detail: bool) -> JSON:
    number, prompt_id, prompt, extra_data = item[0], item[1], item[2], item[3]
    job = _prune(
        {
            "id": prompt_id,
            "status": status,
            "priority": number,
            "create_time": extra_data.get("create_time"),
            "outputs_count": 0,
            "previewable_outputs_count": 0,
        }
    )
    if detail:
        job["workflow"] = {"prompt": prompt, "extra_data": extra_data}
    return job


def _history_job(prompt_id: str, entry: JSON, *, detail: bool) -> JSON:
    number, _, prompt, extra_data = entry["prompt"][:4]
    status_info = entry.get("status") or {}
    start = end = error = None
    interrupted = False
    for name, data in status_info.get("messages", []):
        if name == "execution_start":
            start = data.get("timestamp")
        elif name in ("execution_success", "execution_error", "execution_interrupted"):
            end = data.get("timestamp")
            error = data if name == "execution_error" else error
            interrupted = interrupted or name == "execution_interrupted"
    status = "completed"
    if status_info.get("status_str") == "error":
        status = "cancelled" if interrupted else "failed"
    outputs = entry.get("outputs") or {}
    count = sum(len(v) for o in outputs.values() for k, v in o.items() if isinstance(v, list))
    job = _prune(
        {
            "id": prompt_id,
            "status": status,
            "priority": number,
            "create_time": extra_data.get("create_time"),
            "execution_start_time": start,
            "execution_end_time": end,
            "execution_error": error,
            "outputs_count": count,
            "previewable_outputs_count": count,
        }
    )
    if detail:
        job["outputs"] = outputs
        job["execution_status"] = status_info
        job["workflow"] = {"prompt": prompt, "extra_data": extra_data}
    return job


def get_job(prompt_id: str, running: list[list[Any]], queued: list[list[Any]], history: JSON) -> JSON | None:
    """``GET /api/jobs/{id}``: history first, then running, then pending; None when unknown."""
    if prompt_id in history:
        return _history_job(prompt_id, history[prompt_id], detail=True)
    for items, status in ((running, "in_progress"), (queued, "pending")):
        for item in items:
            if item[1] == prompt_id:
                return _queue_job(item, status, detail=True)
    return None


def all_jobs(running: list[list[Any]], queued: list[list[Any]], history: JSON) -> JSON:
    """``GET /api/jobs`` without filters: every job and the pagination block."""
    found = [_queue_job(i, "in_progress", detail=False) for i in running]
    found += [_queue_job(i, "pending", detail=False) for i in queued]
    found += [_history_job(pid, e, detail=False) for pid, e in history.items()]
    pagination = {"offset": 0, "limit": None, "total": len(found), "has_more": False}
    return {"jobs": found, "pagination": pagination}
