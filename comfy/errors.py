"""Errors raised by the ComfyUI client.

Every error carries ``backend`` (the server's name) and a stable ``code`` that the gateway maps to a
localized message; users never see ``str(exc)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

__all__ = [
    "ComfyError",
    "ComfyExecutionError",
    "ComfyInterrupted",
    "ComfyPromptLost",
    "ComfyRejected",
    "ComfyResponseError",
    "ComfyTimeout",
    "ComfyUnreachable",
]


class ComfyError(Exception):
    """Base of every ComfyUI client error."""

    code: ClassVar[str] = "comfy_error"

    def __init__(self, message: str, *, backend: str) -> None:
        super().__init__(message)
        self.backend = backend

    def __str__(self) -> str:
        return f"[{self.backend}] {super().__str__()}"


class ComfyUnreachable(ComfyError):
    """The server could not be reached or answered 403/5xx (connection refused/reset, DNS, ...)."""

    code: ClassVar[str] = "comfy_unreachable"

    def __init__(self, message: str, *, backend: str, status: int | None = None) -> None:
        super().__init__(message, backend=backend)
        self.status = status


class ComfyResponseError(ComfyError):
    """An unexpected HTTP answer that is not an outage (e.g. 404 from ``/view``, 400 from ``/upload``)."""

    code: ClassVar[str] = "comfy_bad_response"

    def __init__(self, message: str, *, backend: str, status: int, path: str) -> None:
        super().__init__(message, backend=backend)
        self.status = status
        self.path = path


class ComfyRejected(ComfyError):
    """``POST /prompt`` answered 400: the graph failed validation."""

    code: ClassVar[str] = "comfy_rejected"

    def __init__(
        self,
        *,
        backend: str,
        error_type: str,
        message: str,
        details: str = "",
        node_errors: Mapping[str, Any] | None = None,
    ) -> None:
        self.error_type = error_type
        self.message = message
        self.details = details
        self.node_errors: dict[str, Any] = dict(node_errors or {})
        super().__init__(self.summary(), backend=backend)

    def summary(self) -> str:
        """One readable line, e.g. ``node 3 (KSampler): steps: Value 99999 bigger than max of 10000``."""
        parts = [line for node_id, node in self.node_errors.items() for line in _node_lines(node_id, node)]
        if parts:
            return "; ".join(parts)
        if self.details:
            return f"{self.message} ({self.details})"
        return self.message or self.error_type


def _node_lines(node_id: str, node: Any) -> list[str]:
    if not isinstance(node, Mapping):
        return [f"node {node_id}: invalid"]
    prefix = f"node {node_id} ({node.get('class_type', '?')})"
    errors = node.get("errors")
    if not isinstance(errors, Sequence) or not errors:
        return [f"{prefix}: invalid"]
    return [f"{prefix}: {_error_text(err)}" for err in errors if isinstance(err, Mapping)]


def _error_text(err: Mapping[str, Any]) -> str:
    message = str(err.get("message") or err.get("type") or "invalid")
    details = str(err.get("details") or "")
    extra = err.get("extra_info")
    input_name = str(extra.get("input_name") or "") if isinstance(extra, Mapping) else ""
    # ComfyUI's `details` often repeats the input name ("steps", "upscale_method: 'x' not in [...]");
    # strip it so the line reads "input: message: rest" once.
    if input_name:
        for sep in (": ", ", ", " - "):
            if details.startswith(input_name + sep):
                details = details[len(input_name) + len(sep) :]
                break
        if details == input_name:
            details = ""
    text = f"{input_name}: {message}" if input_name else message
    return f"{text}: {details}" if details else text


class ComfyExecutionError(ComfyError):
    """The prompt failed while running (WS ``execution_error`` or an error status in history)."""

    code: ClassVar[str] = "comfy_execution_error"

    def __init__(
        self,
        *,
        backend: str,
        prompt_id: str,
        node_id: str | None,
        node_type: str | None,
        exception_type: str,
        exception_message: str,
    ) -> None:
        self.prompt_id = prompt_id
        self.node_id = node_id
        self.node_type = node_type
        self.exception_type = exception_type
        self.exception_message = exception_message
        where = f"node {node_id} ({node_type})" if node_id else "prompt"
        super().__init__(f"{where} failed: {exception_type}: {exception_message.strip()}", backend=backend)


class ComfyInterrupted(ComfyError):
    """The prompt was interrupted (``execution_interrupted``)."""

    code: ClassVar[str] = "comfy_interrupted"

    def __init__(self, *, backend: str, prompt_id: str, node_id: str | None = None) -> None:
        self.prompt_id = prompt_id
        self.node_id = node_id
        super().__init__(f"prompt {prompt_id} interrupted", backend=backend)


class ComfyTimeout(ComfyError):
    """A wait ran out: an HTTP request (``operation``) or following a prompt (``prompt_id``)."""

    code: ClassVar[str] = "timeout"

    def __init__(self, *, backend: str, prompt_id: str | None = None, operation: str = "") -> None:
        self.prompt_id = prompt_id
        self.operation = operation
        what = operation or f"prompt {prompt_id}"
        super().__init__(f"timed out: {what}", backend=backend)


class ComfyPromptLost(ComfyError):
    """The server knows the prompt neither in its history nor in its queue (it probably restarted)."""

    code: ClassVar[str] = "comfy_prompt_lost"

    def __init__(self, *, backend: str, prompt_id: str) -> None:
        self.prompt_id = prompt_id
        super().__init__(f"prompt {prompt_id} is neither in history nor in queue", backend=backend)
