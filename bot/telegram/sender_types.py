"""The sender's data: priorities, outcomes, errors and limits (public), and the queued operation and
per-chat queue (:class:`_Op`, :class:`_Chat`) that :mod:`bot.telegram.sender` schedules."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = [
    "EditOutcome",
    "MessageGone",
    "Priority",
    "SenderClosed",
    "SenderLimits",
]

T = TypeVar("T")

_GONE_MARKERS = (
    "message to edit not found",
    "message can't be edited",
    "message_id_invalid",
    "there is no text in the message to edit",
    "there is no caption in the message to edit",
)
_NOT_MODIFIED = "message is not modified"
_MEMORY = 10_000  # finalized slots and gone messages remembered (oldest forgotten first)


class Priority(enum.IntEnum):
    """Lower runs first when the limits force a choice."""

    RESULT = 0  # a job's result (sent, or edited into its message)
    REPLY = 1  # an answer to a command: "queued #3", /help text
    PROGRESS = 2  # progress/preview edits: coalesced, may be superseded
    CLEANUP = 3  # removing a finished job's status message: after everything people wait for


class EditOutcome(enum.Enum):
    """What became of an :meth:`TelegramSender.edit`."""

    EDITED = "edited"
    NOT_MODIFIED = "not_modified"  # Telegram said nothing changed: success
    SUPERSEDED = "superseded"  # a final edit of that message already won; this progress was dropped


class MessageGone(Exception):
    """The message can no longer be edited (deleted, too old, not ours): send a new one instead."""

    def __init__(self, chat_id: int, message_id: int, description: str) -> None:
        super().__init__(f"message {message_id} in chat {chat_id} is gone: {description}")
        self.chat_id = chat_id
        self.message_id = message_id
        self.description = description


class SenderClosed(Exception):
    """The sender was closed before the operation could run."""


@dataclass(frozen=True)
class SenderLimits:
    """Throttling; the defaults are Telegram's published guidance."""

    per_chat_interval_s: float = 1.0
    group_max: int = 20
    group_window_s: float = 60.0
    global_max: int = 30
    global_window_s: float = 1.0
    max_retry_after: int = 8  # 429s for one operation before it fails to its caller
    max_server_errors: int = 3  # 5xx retries (sends and edits), network-error retries (edits only)
    server_error_backoff_s: float = 1.0


@dataclass(eq=False)
class _Op(Generic[T]):
    chat_id: int
    factory: Callable[[], Awaitable[T]]
    priority: Priority
    seq: int
    waiters: list[asyncio.Future[Any]] = field(default_factory=list)
    message_id: int | None = None  # edits only
    key: Hashable | None = None  # edits only: the coalescing slot
    retries_429: int = 0
    retries_error: int = 0
    #: the submitter's log context (request_id, job_id): lines about this op carry them
    context: contextvars.Context = field(default_factory=contextvars.copy_context)

    @property
    def is_edit(self) -> bool:
        return self.key is not None

    @property
    def abandoned(self) -> bool:
        return bool(self.waiters) and all(w.done() for w in self.waiters)

    def resolve(self, value: Any) -> None:
        for w in self.waiters:
            if not w.done():
                w.set_result(value)

    def fail(self, exc: BaseException) -> None:
        for w in self.waiters:
            if not w.done():
                w.set_exception(exc)


@dataclass(eq=False)
class _Chat:
    chat_id: int
    sends: deque[_Op[Any]] = field(default_factory=deque)
    edits: OrderedDict[Hashable, _Op[Any]] = field(default_factory=OrderedDict)
    busy: bool = False

    @property
    def is_group(self) -> bool:
        return self.chat_id < 0

    def pending(self) -> bool:
        return bool(self.sends or self.edits)

    def peek(self) -> _Op[Any] | None:
        """Next op of this chat: sends and edits by priority, then age (results first)."""
        if any(op.abandoned for op in self.sends):
            self.sends = deque(op for op in self.sends if not op.abandoned)  # their callers gave up
        ops = [*self.sends, *self.edits.values()]
        if not ops:
            return None
        return min(ops, key=lambda op: (op.priority, op.seq))

    def pop(self, op: _Op[Any]) -> None:
        if op.key is not None:
            if self.edits.get(op.key) is op:
                del self.edits[op.key]
            return
        with contextlib.suppress(ValueError):
            self.sends.remove(op)


def _consume_exception(fut: asyncio.Future[Any]) -> None:
    """For fire-and-forget edits: mark the outcome as seen so asyncio does not log it at GC."""
    if not fut.cancelled():
        fut.exception()
