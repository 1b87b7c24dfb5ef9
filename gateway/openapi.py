"""The OpenAPI 3 document of the HTTP API (``GET /v1/openapi.json``; a copy is in ``docs/openapi.json``).

``tests/gateway/test_openapi.py`` checks that every route of the aiohttp app is here and that real
answers have the documented status codes and required fields.
"""

from __future__ import annotations

import copy
from typing import Any

_ERROR_CODES = [
    "invalid_input",
    "invalid_image",
    "image_too_large",
    "prompt_too_long",
    "prompt_blocked",
    "unknown_workflow",
    "rate_limited",
    "too_many_pending",
    "quota_exceeded",
    "queue_full",
    "access_denied",
    "shutting_down",
    "internal",
    "not_found",
]

_IMAGE = {
    "type": "object",
    "required": ["path", "width", "height", "bytes", "mime"],
    "properties": {
        "path": {"type": "string", "description": "reference inside the data dir"},
        "width": {"type": "integer"},
        "height": {"type": "integer"},
        "bytes": {"type": "integer"},
        "mime": {"type": "string"},
        "url": {"type": "string", "description": "GET it (same token): only in events and webhooks"},
    },
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["code"],
        "properties": {
            "code": {"type": "string", "enum": _ERROR_CODES},
            "detail": {"type": "string"},
            "field": {"type": "string", "nullable": True, "description": "the offending parameter"},
            "reason": {"type": "string", "nullable": True, "description": "too_large, bad_url..."},
            "retry_after_s": {"type": "number", "nullable": True},
        },
    },
    "Image": _IMAGE,
    "JobSubmit": {
        "type": "object",
        "required": ["user_id", "chat_id", "workflow"],
        "properties": {
            "user_id": {"type": "string"},
            "chat_id": {"type": "string"},
            "workflow": {"type": "string", "description": "txt2img, img2img, upscale, hires, ..."},
            "params": {"type": "object", "description": "the workflow's parameters (see its manifest)"},
            "inputs": {
                "type": "object",
                "description": "image inputs: an Image of an earlier job",
                "additionalProperties": {"$ref": "#/components/schemas/Image"},
            },
            "locale": {"type": "string"},
            "request_id": {"type": "string"},
            "callback_url": {
                "type": "string",
                "format": "uri",
                "description": "http(s) URL POSTed the outcome, signed: X-Comfybot-Timestamp and "
                "X-Comfybot-Signature: sha256=<hex HMAC-SHA256 of '<timestamp>.<body>' with "
                "COMFYBOT_WEBHOOK_SECRET>; retried with exponential backoff. Refused unless the "
                "secret is set.",
            },
        },
    },
    "Blocked": {
        "type": "object",
        "nullable": True,
        "required": ["reason", "name"],
        "properties": {"reason": {"type": "string"}, "name": {"type": "string"}},
    },
    "Accepted": {
        "type": "object",
        "required": ["job_id", "request_id", "position", "depth", "eta_s", "blocked"],
        "properties": {
            "job_id": {"type": "string"},
            "request_id": {"type": "string"},
            "position": {"type": "integer", "description": "1: runs next"},
            "depth": {"type": "integer"},
            "eta_s": {"type": "number", "nullable": True},
            "blocked": {"$ref": "#/components/schemas/Blocked"},
        },
    },
    "JobRecord": {
        "type": "object",
        "required": ["job_id", "request", "state", "values", "images"],
        "properties": {
            "job_id": {"type": "string"},
            "request": {"type": "object", "required": ["request_id", "platform", "workflow"]},
            "state": {
                "type": "string",
                "enum": ["queued", "submitted", "running", "succeeded", "failed", "cancelled", "timed_out"],
            },
            "values": {"type": "object"},
            "images": {"type": "array", "items": {"$ref": "#/components/schemas/Image"}},
            "seed": {"type": "integer", "nullable": True},
            "failure": {"type": "string", "nullable": True},
            "detail": {"type": "string"},
        },
    },
    "CancelResult": {
        "type": "object",
        "required": ["cancelled"],
        "properties": {"cancelled": {"type": "boolean"}},
    },
    "Server": {
        "type": "object",
        "required": ["name", "healthy", "inflight", "capacity", "queue_remaining", "down_reason"],
        "properties": {
            "name": {"type": "string"},
            "healthy": {"type": "boolean"},
            "inflight": {"type": "integer"},
            "capacity": {"type": "integer"},
            "queue_remaining": {"type": "integer"},
            "down_reason": {"type": "string", "nullable": True},
        },
    },
    "Health": {
        "type": "object",
        "required": ["ok", "ready", "store", "depth", "servers"],
        "properties": {
            "ok": {"type": "boolean"},
            "ready": {"type": "boolean"},
            "store": {"type": "string"},
            "depth": {"type": "integer"},
            "servers": {"type": "array", "items": {"$ref": "#/components/schemas/Server"}},
        },
    },
    "Stats": {
        "type": "object",
        "required": ["depth", "outcomes", "mean_run_s", "servers"],
        "properties": {
            "depth": {"type": "integer"},
            "outcomes": {"type": "object", "additionalProperties": {"type": "integer"}},
            "mean_run_s": {"type": "object", "additionalProperties": {"type": "number"}},
            "servers": {"type": "array", "items": {"$ref": "#/components/schemas/Server"}},
        },
    },
    "Event": {
        "type": "object",
        "description": "The data of one Server-Sent Event (its SSE 'event' is the kind). Every event has an "
        "'id'; the outcome's id is 'outcome', and the stream ends after it.",
        "required": ["kind", "job_id", "request_id", "at"],
        "properties": {
            "kind": {
                "type": "string",
                "enum": [
                    "queued",
                    "held",
                    "started",
                    "progress",
                    "preview",
                    "succeeded",
                    "failed",
                    "cancelled",
                    "timed_out",
                ],
            },
            "job_id": {"type": "string"},
            "request_id": {"type": "string"},
            "at": {"type": "number"},
            "position": {"type": "integer", "description": "queued"},
            "depth": {"type": "integer", "description": "queued"},
            "node_label": {"type": "string", "description": "progress"},
            "percent": {"type": "number", "description": "progress: overall, 0..100"},
            "image": {"$ref": "#/components/schemas/Image"},
            "images": {"type": "array", "items": {"$ref": "#/components/schemas/Image"}},
            "seed": {"type": "integer", "nullable": True},
            "code": {"type": "string", "description": "failed: the failure code"},
            "by": {"type": "string", "description": "cancelled"},
        },
    },
}


def _json_response(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _error(description: str) -> dict[str, Any]:
    return _json_response(description, "Error")


_UNAUTHORIZED = _error("no or wrong bearer token")
_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}

_PATHS: dict[str, Any] = {
    "/v1/jobs": {
        "post": {
            "summary": "Queue a job",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobSubmit"}}},
            },
            "responses": {
                "202": _json_response("queued", "Accepted"),
                "400": _error("invalid input (names the field and reason)"),
                "401": _UNAUTHORIZED,
                "403": _error("access denied"),
                "404": _error("unknown workflow"),
                "429": _error("rate limited or too many pending jobs (retry_after_s)"),
                "503": _error("queue full or unavailable"),
            },
        }
    },
    "/v1/jobs/{job_id}": {
        "parameters": [_JOB_ID],
        "get": {
            "summary": "The job record",
            "responses": {
                "200": _json_response("the record", "JobRecord"),
                "401": _UNAUTHORIZED,
                "404": _error("no such job"),
            },
        },
        "delete": {
            "summary": "Cancel the job",
            "responses": {
                "200": _json_response("whether it was cancelled", "CancelResult"),
                "401": _UNAUTHORIZED,
            },
        },
    },
    "/v1/jobs/{job_id}/events": {
        "parameters": [
            _JOB_ID,
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "resume after this event (an EventSource sends it when it reconnects)",
            },
            {
                "name": "last_event_id",
                "in": "query",
                "required": False,
                "schema": {"type": "string"},
                "description": "the same, for clients that cannot set headers",
            },
        ],
        "get": {
            "summary": "The job's events as Server-Sent Events, up to and including its outcome",
            "responses": {
                "200": {
                    "description": "an event stream; each event's data is an Event",
                    "content": {"text/event-stream": {"schema": {"$ref": "#/components/schemas/Event"}}},
                },
                "204": {"description": "the client already has the outcome (Last-Event-ID: outcome)"},
                "401": _UNAUTHORIZED,
                "404": _error("no such job"),
            },
        },
    },
    "/v1/images/{path}": {
        "parameters": [
            {
                "name": "path",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": "an image reference the API handed out (previews/..., outputs/...)",
            }
        ],
        "get": {
            "summary": "A stored image (preview, result or input)",
            "responses": {
                "200": {
                    "description": "the image",
                    "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
                },
                "401": _UNAUTHORIZED,
                "404": _error("no such image, or not a reference inside the data dir"),
            },
        },
    },
    "/v1/health": {
        "get": {
            "summary": "Readiness, store, queue depth and servers",
            "responses": {
                "200": _json_response("ready", "Health"),
                "401": _UNAUTHORIZED,
                "503": _json_response("no ComfyUI server is up (jobs still wait)", "Health"),
            },
        }
    },
    "/v1/stats": {
        "get": {
            "summary": "Queue depth, the last 24 h's outcomes, mean run times, servers",
            "responses": {"200": _json_response("the numbers", "Stats"), "401": _UNAUTHORIZED},
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics of this process (docs/METRICS.md)",
            "responses": {
                "200": {
                    "description": "Prometheus text exposition format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "401": _UNAUTHORIZED,
            },
        }
    },
    "/v1/openapi.json": {
        "get": {
            "summary": "This document",
            "responses": {
                "200": {
                    "description": "OpenAPI 3",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "401": _UNAUTHORIZED,
            },
        }
    },
}

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "comfybot HTTP API",
        "version": "1",
        "description": "Every route needs 'Authorization: Bearer <COMFYBOT_API_TOKEN>'.",
    },
    "components": {
        "schemas": _SCHEMAS,
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
    "security": [{"bearer": []}],
    "paths": _PATHS,
}


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the document (callers may change it)."""
    return copy.deepcopy(_DOCUMENT)


__all__ = ["openapi_document"]
