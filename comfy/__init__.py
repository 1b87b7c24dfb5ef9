"""ComfyUI client: HTTP + WebSocket protocol, typed events, workflow templating."""

from comfy.client import ComfyClient
from comfy.errors import (
    ComfyError,
    ComfyExecutionError,
    ComfyInterrupted,
    ComfyPromptLost,
    ComfyRejected,
    ComfyResponseError,
    ComfyTimeout,
    ComfyUnreachable,
)
from comfy.jobs import Location, Where
from comfy.results import OutputImage, PromptResult, QueueState
from comfy.tracker import PromptTracker

__all__ = [
    "ComfyClient",
    "ComfyError",
    "ComfyExecutionError",
    "ComfyInterrupted",
    "ComfyPromptLost",
    "ComfyRejected",
    "ComfyResponseError",
    "ComfyTimeout",
    "ComfyUnreachable",
    "Location",
    "OutputImage",
    "PromptResult",
    "PromptTracker",
    "QueueState",
    "Where",
]
