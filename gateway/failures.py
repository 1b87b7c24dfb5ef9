"""One table from what went wrong in an attempt to what the job's failure says.

The worker asks :func:`failure_of` once per exception that ends a job; what is retried instead
(:data:`RETRYABLE`: a server that went away, a prompt it lost, no answer in time) is decided first.
The order of :data:`_TABLE` matters only where types nest (every ``Comfy*`` error is a ``ComfyError``,
so the catch-all for ComfyUI's other answers comes after the specific ones).
"""

from __future__ import annotations

from collections.abc import Callable

from comfy import (
    ComfyError,
    ComfyExecutionError,
    ComfyInterrupted,
    ComfyPromptLost,
    ComfyRejected,
    ComfyTimeout,
    ComfyUnreachable,
)
from comfy.workflow_errors import ParamError
from gateway.errors import GatewayError
from gateway.models import FailureCode
from gateway.servers import NoBackend

__all__ = ["RETRYABLE", "failure_of", "retry_failure"]

#: tried again (with backoff, on another server when one can take the job) up to the attempt limit
RETRYABLE: tuple[type[Exception], ...] = (ComfyUnreachable, ComfyPromptLost, ComfyTimeout)

_Describe = Callable[[Exception], tuple[FailureCode, str]]


def _rejected(exc: Exception) -> tuple[FailureCode, str]:
    assert isinstance(exc, ComfyRejected)
    return FailureCode.COMFY_REJECTED, exc.summary()


def _param(exc: Exception) -> tuple[FailureCode, str]:
    assert isinstance(exc, ParamError)
    return FailureCode.INVALID_INPUT, f"{exc.field}: {exc.reason}"


def _gateway(exc: Exception) -> tuple[FailureCode, str]:
    assert isinstance(exc, GatewayError)
    return exc.code, exc.detail  # e.g. an input image past its retention, an output that is no image


def _code(code: FailureCode) -> _Describe:
    return lambda exc: (code, str(exc))


_TABLE: tuple[tuple[type[Exception], _Describe], ...] = (
    (ComfyRejected, _rejected),  # the graph: never retried
    (ComfyExecutionError, _code(FailureCode.COMFY_EXECUTION_ERROR)),  # the client logged it already
    (ComfyInterrupted, _code(FailureCode.COMFY_EXECUTION_ERROR)),  # someone else's interrupt (UI, admin)
    (NoBackend, _code(FailureCode.NO_BACKEND)),
    (ParamError, _param),
    (GatewayError, _gateway),
    (ComfyError, _code(FailureCode.INTERNAL)),  # an answer that is no outage: a 404 from /view
)


def failure_of(exc: Exception) -> tuple[FailureCode, str] | None:
    """The failure code and detail a job ends with for ``exc``; None: not an expected failure (a bug,
    reported as ``internal`` by the caller with the traceback logged)."""
    for kind, describe in _TABLE:
        if isinstance(exc, kind):
            return describe(exc)
    return None


def retry_failure(exc: Exception) -> FailureCode:
    """The code of a retryable error once the retries are used up."""
    if isinstance(exc, ComfyPromptLost):
        return FailureCode.COMFY_LOST_PROMPT
    return FailureCode.COMFY_UNREACHABLE
