"""Errors raised while loading, validating and rendering workflows (re-exported by ``comfy.workflows``).

These are not :class:`comfy.errors.ComfyError`: nothing here talks to a server, so there is no ``backend``.
Front ends pick the user's text from the stable ``reason`` code of :class:`ParamError`, never ``str(exc)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any


class WorkflowError(Exception):
    """Base class of every workflow error."""


class WorkflowLoadError(WorkflowError):
    """A workflow file (graph or manifest) or a loader setting is unusable; ``problem`` says why."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class UnknownWorkflow(WorkflowError, LookupError):
    """``registry.get(name)`` for a name that no loaded workflow has."""

    def __init__(self, name: str, known: Iterable[str] = ()) -> None:
        self.name = name
        self.known = tuple(sorted(known))
        super().__init__(f"unknown workflow {name!r} (known: {', '.join(self.known) or 'none'})")


class ParamError(WorkflowError, ValueError):
    """A user-supplied value is refused.

    ``field`` is the parameter (or image input) name, ``reason`` a stable code for localized messages:
    ``required``, ``unknown_param``, ``not_a_number``, ``not_an_integer``, ``too_small``, ``too_large``,
    ``too_long``, ``not_text``, ``not_a_bool``, ``not_in_options``, ``bad_aspect``, ``bad_model_name``,
    ``bad_image_name``. ``bounds`` holds what a message may quote (``min``, ``max``, ``max_length``,
    ``options``, ``min_ratio``, ``max_ratio``...).
    """

    def __init__(self, field: str, reason: str, **bounds: Any) -> None:
        self.field = field
        self.reason = reason
        self.bounds: dict[str, Any] = bounds
        detail = ", ".join(f"{k}={v!r}" for k, v in bounds.items())
        super().__init__(f"{field}: {reason}" + (f" ({detail})" if detail else ""))
