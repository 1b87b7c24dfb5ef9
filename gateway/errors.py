"""The gateway's error hierarchy.

Every error carries a stable :class:`~gateway.models.FailureCode` in ``code``; front ends pick the
localized text by that code and never show ``str(exc)`` or ``detail`` to users. ``detail`` is for logs
and admins. Subclasses add the structured fields a caller needs to act (``retry_after_s``, ``field``).
"""

from __future__ import annotations

from gateway.models import FailureCode


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose.

    ``code`` is the stable failure code; ``detail`` is a developer-facing explanation.
    """

    default_code: FailureCode = FailureCode.INTERNAL

    def __init__(self, detail: str = "", *, code: FailureCode | None = None) -> None:
        self.code: FailureCode = code if code is not None else self.default_code
        self.detail: str = detail
        super().__init__(f"{self.code.value}: {detail}" if detail else self.code.value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code.value!r}, detail={self.detail!r})"


class ImageRejected(GatewayError):
    """An uploaded image was refused.

    ``INVALID_IMAGE``: not an image, corrupt, truncated. ``IMAGE_TOO_LARGE``: bytes or pixels over the
    limits, including decompression bombs.
    """

    default_code = FailureCode.INVALID_IMAGE


class LimitExceeded(GatewayError):
    """A limit was hit: rate, pending jobs, queue cap, prompt length.

    ``retry_after_s`` is set when waiting helps (rate limits); ``None`` otherwise.
    """

    default_code = FailureCode.RATE_LIMITED

    def __init__(
        self, detail: str = "", *, code: FailureCode | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(detail, code=code)
        self.retry_after_s: float | None = retry_after_s


class AccessDenied(GatewayError):
    """The user (or chat) may not use the bot, or may not run an admin-only action."""

    default_code = FailureCode.ACCESS_DENIED

    def __init__(self, detail: str = "", *, user_id: str | None = None, chat_id: str | None = None) -> None:
        super().__init__(detail)
        self.user_id: str | None = user_id
        self.chat_id: str | None = chat_id


class InputInvalid(GatewayError):
    """A request field is invalid: ``field`` names it, ``reason`` is a short machine-friendly cause.

    The code defaults to ``INVALID_INPUT``; the prompt filter uses ``PROMPT_BLOCKED``.
    """

    default_code = FailureCode.INVALID_INPUT

    def __init__(
        self, field: str, reason: str, *, code: FailureCode | None = None, detail: str | None = None
    ) -> None:
        super().__init__(detail if detail is not None else f"{field}: {reason}", code=code)
        self.field: str = field
        self.reason: str = reason


class StorageError(GatewayError):
    """A stored image could not be found or a reference is unsafe (e.g. path traversal)."""

    default_code = FailureCode.INTERNAL


class UnknownWorkflowError(GatewayError):
    """The requested workflow name is not in the registry."""

    default_code = FailureCode.UNKNOWN_WORKFLOW

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown workflow {name!r}")
        self.name: str = name


class ShuttingDown(GatewayError):
    """The process is stopping and its store would not keep a new job (the memory store)."""

    default_code = FailureCode.SHUTTING_DOWN


__all__ = [
    "AccessDenied",
    "GatewayError",
    "ImageRejected",
    "InputInvalid",
    "LimitExceeded",
    "ShuttingDown",
    "StorageError",
    "UnknownWorkflowError",
]
