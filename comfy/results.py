"""Value types the client returns: output images, prompt results, queue state."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from comfy.errors import ComfyExecutionError, ComfyInterrupted

__all__ = ["OutputImage", "PromptResult", "QueueState", "images_from_outputs"]


@dataclass(frozen=True)
class OutputImage:
    """One image a node produced, as ``/view`` wants it (``type`` is ``output``, ``temp`` or ``input``)."""

    filename: str
    subfolder: str = ""
    type: str = "output"


@dataclass(frozen=True)
class PromptResult:
    """The outcome of a finished prompt: UI outputs per node and the images among them.

    ``status_str`` is ComfyUI's ``success`` or ``error``; ``messages`` are the history status messages
    (``[(type, data), ...]``), empty when the result was assembled from websocket events.
    """

    prompt_id: str
    outputs: dict[str, dict[str, Any]]
    images: list[OutputImage]
    status_str: str = "success"
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def images_of(self, node_ids: Iterable[str]) -> list[OutputImage]:
        """Images of the given output nodes only, in node order given."""
        return images_from_outputs({n: self.outputs[n] for n in node_ids if n in self.outputs})

    def failure(self, backend: str) -> ComfyExecutionError | ComfyInterrupted | None:
        """The error this result stands for (from its status messages), or ``None`` for success."""
        for kind, data in reversed(self.messages):
            if kind == "execution_interrupted":
                return ComfyInterrupted(
                    backend=backend, prompt_id=self.prompt_id, node_id=_opt(data, "node_id")
                )
            if kind == "execution_error" and data.get("exception_type") != "ExecutionBlocked":
                return ComfyExecutionError(
                    backend=backend,
                    prompt_id=self.prompt_id,
                    node_id=_opt(data, "node_id"),
                    node_type=_opt(data, "node_type"),
                    exception_type=str(data.get("exception_type", "")),
                    exception_message=str(data.get("exception_message", "")),
                )
        if self.status_str == "success":
            return None
        return ComfyExecutionError(
            backend=backend,
            prompt_id=self.prompt_id,
            node_id=None,
            node_type=None,
            exception_type="unknown",
            exception_message=f"status {self.status_str!r}",
        )

    @classmethod
    def from_history(cls, prompt_id: str, entry: Mapping[str, Any]) -> PromptResult:
        """Build from one ``GET /history/{id}`` entry."""
        raw_outputs = entry.get("outputs")
        outputs = (
            {str(k): dict(v) for k, v in raw_outputs.items() if isinstance(v, Mapping)}
            if isinstance(raw_outputs, Mapping)
            else {}
        )
        status = entry.get("status")
        status = status if isinstance(status, Mapping) else {}
        messages = [
            (str(msg[0]), dict(msg[1]))
            for msg in status.get("messages") or []
            if isinstance(msg, list | tuple) and len(msg) == 2 and isinstance(msg[1], Mapping)
        ]
        return cls(
            prompt_id=prompt_id,
            outputs=outputs,
            images=images_from_outputs(outputs),
            status_str=str(status.get("status_str") or "success"),
            messages=messages,
        )


def _opt(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)


def images_from_outputs(outputs: Mapping[str, Mapping[str, Any]]) -> list[OutputImage]:
    """Every ``images`` entry of the given UI outputs, in node order."""
    found: list[OutputImage] = []
    for output in outputs.values():
        images = output.get("images")
        if not isinstance(images, list):
            continue
        found.extend(
            OutputImage(
                str(img["filename"]), str(img.get("subfolder") or ""), str(img.get("type") or "output")
            )
            for img in images
            if isinstance(img, Mapping) and "filename" in img
        )
    return found


@dataclass(frozen=True)
class QueueState:
    """``GET /queue``: ids running now and pending ids in the order they will run."""

    running: list[str]
    pending: list[str]

    def position(self, prompt_id: str) -> int | None:
        """0 while running, 1.. for pending (1 = next), ``None`` when not in the queue."""
        if prompt_id in self.running:
            return 0
        if prompt_id in self.pending:
            return self.pending.index(prompt_id) + 1
        return None

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self.running or prompt_id in self.pending

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QueueState:
        def ids(items: Any, *, ordered: bool) -> list[str]:
            rows = (
                [i for i in items if isinstance(i, list | tuple) and len(i) >= 2]
                if isinstance(items, list)
                else []
            )
            if ordered:
                # queue_pending is ComfyUI's raw heap list; run order is by number (front = negative).
                rows.sort(key=lambda r: r[0] if isinstance(r[0], int | float) else 0)
            return [str(r[1]) for r in rows]

        return cls(
            running=ids(data.get("queue_running"), ordered=False),
            pending=ids(data.get("queue_pending"), ordered=True),
        )
