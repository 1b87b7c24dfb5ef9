"""The one throttled outlet for every Telegram send and edit.

Telegram allows about one message a second per chat, twenty a minute per group and thirty a second
overall, and **edits count like sends**. Bots that retried without honouring ``retry_after``, or fell
back to a new message when an edit was refused, escalated a 51 s wait to hours. So:

* every operation is a zero-argument coroutine factory (``lambda: bot.send_message(...)``) handed to
  :meth:`TelegramSender.send` or :meth:`TelegramSender.edit`; one scheduler task dispatches them
  within the limits (per chat one at a time, so a chat's sends keep their order);
* progress edits are **coalesced** per message: a pending edit is replaced by the newer one (the
  latest state wins), never queued behind it;
* sends are never dropped; a chat's queue is ordered by priority, then age (**results first**): a
  result or failure (sent, or a final edit) goes before any pending queued notice, progress edit or
  cleanup delete of that chat and of other chats; ops of one priority keep their order;
* ``TelegramRetryAfter`` → wait exactly ``retry_after`` and retry the **same** operation — never a
  duplicate, never a new message. The chat waits; when 429s hit two chats within the global window
  the limit is the bot-wide one and every chat waits;
* "message is not modified" is success; "message to edit not found" / "message can't be edited"
  raise :class:`MessageGone` so the caller sends the result as a new message;
  ``TelegramEntityTooLarge`` propagates to the caller's fallback (send as a document).

The limiter counts an operation from dispatch until ``window`` after it *completed*: whatever the
network latency, the server never sees more than the limit inside any window.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)

from bot.telegram.pace import LocalPace, Pace
from core.logs import get_logger
from gateway import metrics

__all__ = [
    "EditOutcome",
    "MessageGone",
    "Priority",
    "SenderClosed",
    "SenderLimits",
    "TelegramSender",
]

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

log = get_logger("telegram")

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


class TelegramSender:
    """Throttled, coalescing, ``retry_after``-honouring outlet for one bot's sends and edits.

    ``async with TelegramSender(bot) as sender:`` starts the scheduler and, on exit, lets queued sends
    and final edits finish (progress edits are dropped). ``clock``/``sleep`` are injectable so tests
    can run minutes of rate limits in virtual time. ``pace`` keeps the limits (:mod:`bot.telegram.pace`):
    this process's own by default, or a :class:`~bot.telegram.pace.RedisPace` shared by every process
    of the bot.
    """

    def __init__(
        self,
        bot: Bot | None = None,
        *,
        limits: SenderLimits | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        pace: Pace | None = None,
    ) -> None:
        self.bot = bot
        self.limits = limits or SenderLimits()
        self._pace: Pace = pace or LocalPace(self.limits, clock=clock)
        self._clock = clock
        self._sleep = sleep
        self._chats: dict[int, _Chat] = {}
        self._pending: set[int] = set()
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._finalized: OrderedDict[tuple[int, Hashable], None] = OrderedDict()
        self._gone: OrderedDict[tuple[int, int], str] = OrderedDict()
        self._scheduler: asyncio.Task[None] | None = None
        self._closing = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._scheduler is None:
            self._scheduler = asyncio.create_task(self._run(), name="telegram-sender")

    async def close(self, *, drain_timeout_s: float = 10.0) -> None:
        """Stop taking work, finish queued sends and final edits (up to ``drain_timeout_s``), then stop."""
        self._closing = True
        for chat in self._chats.values():
            for key, op in list(chat.edits.items()):
                if op.priority is Priority.PROGRESS:
                    del chat.edits[key]
                    op.resolve(EditOutcome.SUPERSEDED)
        self._wake.set()
        if self._scheduler is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_timeout_s):
                    await asyncio.shield(self._scheduler)
            self._scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler
            self._scheduler = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for chat in self._chats.values():
            for op in [*chat.sends, *chat.edits.values()]:
                op.fail(SenderClosed())
            chat.sends.clear()
            chat.edits.clear()
        await self._pace.close()

    async def __aenter__(self) -> TelegramSender:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ public API

    async def send(
        self, chat_id: int, factory: Callable[[], Awaitable[T]], *, kind: Priority = Priority.RESULT
    ) -> T:
        """Run ``factory()`` (a send to ``chat_id``) within the limits; returns its result.

        Sends of one chat run in the order they were submitted and are never dropped or duplicated;
        errors other than 429 (which is waited out) reach the caller, e.g. ``TelegramEntityTooLarge``.
        """
        if self._closing:
            raise SenderClosed()
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        op = _Op(chat_id=chat_id, factory=factory, priority=kind, seq=next(self._seq), waiters=[fut])
        self._chat(chat_id).sends.append(op)
        self._enqueued(chat_id)
        return await fut

    def submit_edit(
        self,
        chat_id: int,
        message_id: int,
        factory: Callable[[], Awaitable[Any]],
        *,
        coalesce_key: Hashable = None,
        final: bool = False,
    ) -> asyncio.Future[EditOutcome]:
        """Queue an edit without waiting; the future resolves like :meth:`edit` (never left unread)."""
        fut = self._submit_edit(chat_id, message_id, factory, coalesce_key=coalesce_key, final=final)
        fut.add_done_callback(_consume_exception)
        return fut

    async def edit(
        self,
        chat_id: int,
        message_id: int,
        factory: Callable[[], Awaitable[Any]],
        *,
        coalesce_key: Hashable = None,
        final: bool = False,
    ) -> EditOutcome:
        """Edit a message, coalesced with pending edits of the same ``(message_id, coalesce_key)``.

        A pending (not yet started) edit of that slot is replaced by this one, and its waiters get
        this one's outcome. ``final=True`` marks the result: it runs before progress edits and later
        progress edits of that slot are dropped (``SUPERSEDED``). Raises :class:`MessageGone` when
        Telegram says the message can no longer be edited.
        """
        return await self._submit_edit(chat_id, message_id, factory, coalesce_key=coalesce_key, final=final)

    def discard_edits(self, chat_id: int, message_id: int) -> int:
        """Drop pending edits of a message (e.g. its result went out as a new message)."""
        chat = self._chats.get(chat_id)
        if chat is None:
            return 0
        dropped = [k for k, op in chat.edits.items() if op.message_id == message_id]
        for key in dropped:
            chat.edits.pop(key).resolve(EditOutcome.SUPERSEDED)
        return len(dropped)

    def tight(self, chat_id: int) -> bool:
        """A group whose budget is already spoken for: something of it is queued or in flight, or its
        window is spent (the next call would wait longer than the per-chat interval).

        Callers skip what people do not wait for (a "queued" notice) there, so the group's 20 calls a
        minute go to results (see docs/PACE.md)."""
        if chat_id >= 0:
            return False
        chat = self._chats.get(chat_id)
        if chat is not None and (chat.busy or chat.pending()):
            return True
        now = self._clock()
        return self._pace.ready_at(chat_id, now) > now + self.limits.per_chat_interval_s

    @property
    def queued(self) -> int:
        """Operations waiting to be dispatched (not counting the ones in flight)."""
        return sum(len(c.sends) + len(c.edits) for c in self._chats.values())

    # ------------------------------------------------------------------ queueing

    def _chat(self, chat_id: int) -> _Chat:
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = self._chats[chat_id] = _Chat(chat_id)
        return chat

    def _enqueued(self, chat_id: int) -> None:
        self._pending.add(chat_id)
        self._wake.set()

    def _submit_edit(
        self,
        chat_id: int,
        message_id: int,
        factory: Callable[[], Awaitable[Any]],
        *,
        coalesce_key: Hashable,
        final: bool,
    ) -> asyncio.Future[EditOutcome]:
        fut: asyncio.Future[EditOutcome] = asyncio.get_running_loop().create_future()
        if self._closing:
            fut.set_exception(SenderClosed())
            return fut
        key = (message_id, coalesce_key)
        chat = self._chat(chat_id)
        gone = self._gone.get((chat_id, message_id))
        if gone is not None:
            # Telegram already said so: don't spend the chat's budget to hear it again.
            fut.set_exception(MessageGone(chat_id, message_id, gone))
            return fut
        if not final and (chat_id, key) in self._finalized:
            fut.set_result(EditOutcome.SUPERSEDED)
            return fut
        priority = Priority.RESULT if final else Priority.PROGRESS
        pending = chat.edits.get(key)
        if pending is not None:
            if pending.priority is Priority.RESULT and not final:
                fut.set_result(EditOutcome.SUPERSEDED)  # progress never overwrites a pending result
                return fut
            # Latest state wins: swap the operation, keep its place in line, share the outcome.
            pending.factory = factory
            pending.context = contextvars.copy_context()  # log lines follow the newest request
            pending.priority = min(pending.priority, priority)
            pending.waiters.append(fut)
            return fut
        op: _Op[Any] = _Op(
            chat_id=chat_id,
            factory=factory,
            priority=priority,
            seq=next(self._seq),
            waiters=[fut],
            message_id=message_id,
            key=key,
        )
        chat.edits[key] = op
        self._enqueued(chat_id)
        return fut

    def _requeue(self, chat: _Chat, op: _Op[Any]) -> None:
        """Put an op that got a 429 back at the head of its chat, unless a newer edit replaced it."""
        if op.key is None:
            chat.sends.appendleft(op)
        else:
            newer = chat.edits.get(op.key)
            if newer is None:
                chat.edits[op.key] = op
                chat.edits.move_to_end(op.key, last=False)
            else:
                # A newer state of the same message is already waiting: it is the retry.
                newer.waiters.extend(op.waiters)
                newer.priority = min(newer.priority, op.priority)
                newer.seq = min(newer.seq, op.seq)
        self._enqueued(chat.chat_id)

    # ------------------------------------------------------------------ scheduling

    def _ready_at(self, chat: _Chat, now: float) -> float:
        return self._pace.ready_at(chat.chat_id, now)

    def _global_ready_at(self, now: float) -> float | None:
        """When the global budget allows one more dispatch; None: only after an in-flight op ends."""
        return self._pace.global_ready_at(now, self._in_flight)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            if self._closing and not self._pending and not self._in_flight:
                return
            now = self._clock()
            try:
                delay = self._dispatch_ready(now)
            except Exception:  # a bug here must not silently stop every send of the bot
                log.exception("telegram_sender_error")
                delay = 1.0
            if delay == 0.0:
                continue
            if self._closing and not self._pending and not self._in_flight:
                return  # the scan above found only emptied chats
            await self._wait(delay)

    def _dispatch_ready(self, now: float) -> float | None:
        """Dispatch at most one op; 0.0 when one went out, else how long to wait (None: until woken)."""
        global_at = self._global_ready_at(now)
        if global_at is None:
            return None
        if global_at > now:
            return global_at - now
        best: tuple[Priority, int, _Chat, _Op[Any]] | None = None
        soonest: float | None = None
        for chat_id in list(self._pending):
            chat = self._chats[chat_id]
            if chat.busy:
                continue
            op = chat.peek()
            if op is None:
                self._pending.discard(chat_id)
                continue
            ready = self._ready_at(chat, now)
            if ready > now:
                soonest = ready if soonest is None else min(soonest, ready)
                continue
            if best is None or (op.priority, op.seq) < best[:2]:
                best = (op.priority, op.seq, chat, op)
        if best is None:
            return None if soonest is None else soonest - now
        _, _, chat, op = best
        chat.pop(op)
        chat.busy = True
        self._in_flight += 1
        task = asyncio.create_task(self._execute(chat, op), context=op.context)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return 0.0

    async def _wait(self, delay: float | None) -> None:
        if delay is None:
            await self._wake.wait()
            return
        waker = asyncio.ensure_future(self._wake.wait())
        sleeper = asyncio.ensure_future(self._sleep(delay))
        try:
            await asyncio.wait({waker, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (waker, sleeper):
                t.cancel()
            await asyncio.gather(waker, sleeper, return_exceptions=True)

    # ------------------------------------------------------------------ execution

    async def _execute(self, chat: _Chat, op: _Op[Any]) -> None:
        requeue = taken = False
        try:
            taken = await self._take(op)
            requeue = await self._attempt(chat, op) if taken else True
        finally:
            done = self._clock()
            self._in_flight -= 1
            chat.busy = False
            if taken:
                self._pace.done(chat.chat_id, done)
            if requeue:
                self._requeue(chat, op)
            elif chat.pending():
                self._pending.add(chat.chat_id)
            self._wake.set()

    async def _take(self, op: _Op[Any]) -> bool:
        """The pace's slot for ``op`` (False: another process of the bot holds it; try again later)."""
        try:
            return await self._pace.take(op.chat_id)
        except asyncio.CancelledError:
            op.fail(SenderClosed())
            raise

    async def _attempt(self, chat: _Chat, op: _Op[Any]) -> bool:
        """Run the op once; True when it must be retried (it was not applied)."""
        try:
            result = await op.factory()
        except TelegramRetryAfter as exc:
            return self._on_retry_after(chat, op, exc)
        except TelegramBadRequest as exc:
            self._on_bad_request(chat, op, exc)
        except (TelegramServerError, TelegramNetworkError) as exc:
            # A network error may hide a send that did arrive: only idempotent edits retry it.
            retriable = isinstance(exc, TelegramServerError) or op.is_edit
            if retriable and op.retries_error < self.limits.max_server_errors:
                op.retries_error += 1
                until = self._clock() + self.limits.server_error_backoff_s * op.retries_error
                self._pace.back_off(chat.chat_id, until)
                return True
            self._failed(op, exc)
        except asyncio.CancelledError:
            op.fail(SenderClosed())
            raise
        except Exception as exc:  # any other failure belongs to the caller, e.g. TelegramEntityTooLarge
            self._failed(op, exc)
        else:
            if op.is_edit:
                self._edited(op)
                op.resolve(EditOutcome.EDITED)
            else:
                op.resolve(result)
        return False

    def _on_retry_after(self, chat: _Chat, op: _Op[Any], exc: TelegramRetryAfter) -> bool:
        # The chat waits; 429s in two chats within the global window: the whole bot waits (see pace.py).
        is_global = self._pace.retry_after(op.chat_id, exc.retry_after, self._clock())
        metrics.chat_rate_limited("telegram")
        log.warning(
            "telegram_retry_after",
            method=exc.method.__api_method__,
            retry_after=exc.retry_after,
            chat_id=op.chat_id,
            scope="global" if is_global else "chat",
            attempt=op.retries_429 + 1,
        )
        if op.retries_429 >= self.limits.max_retry_after:
            self._failed(op, exc)
            return False
        op.retries_429 += 1
        return True

    def _on_bad_request(self, chat: _Chat, op: _Op[Any], exc: TelegramBadRequest) -> None:
        text = exc.message.lower()
        if op.is_edit and _NOT_MODIFIED in text:
            self._edited(op)
            op.resolve(EditOutcome.NOT_MODIFIED)
            return
        if op.is_edit and op.message_id is not None and any(m in text for m in _GONE_MARKERS):
            log.info(
                "telegram_message_gone", chat_id=op.chat_id, message_id=op.message_id, description=exc.message
            )
            self._remember(self._gone, (op.chat_id, op.message_id), exc.message)
            op.fail(MessageGone(op.chat_id, op.message_id, exc.message))
            # Later edits of that message would fail the same way: answer them now.
            for key, other in list(chat.edits.items()):
                if other.message_id == op.message_id:
                    del chat.edits[key]
                    other.fail(MessageGone(op.chat_id, op.message_id, exc.message))
            return
        self._failed(op, exc)

    def _edited(self, op: _Op[Any]) -> None:
        if op.priority is Priority.RESULT and op.key is not None:
            self._remember(self._finalized, (op.chat_id, op.key), None)

    @staticmethod
    def _remember(memory: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        memory[key] = value
        if len(memory) > _MEMORY:
            memory.popitem(last=False)

    def _failed(self, op: _Op[Any], exc: BaseException) -> None:
        method = getattr(getattr(exc, "method", None), "__api_method__", None)
        metrics.chat_api_error("telegram", type(exc).__name__)
        log.warning(
            "telegram_send_failed",
            method=method,
            chat_id=op.chat_id,
            message_id=op.message_id,
            error=type(exc).__name__,
            description=str(exc),
        )
        op.fail(exc)
