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
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)

from bot.telegram.pace import LocalPace, Pace
from bot.telegram.sender_queue import SenderQueue
from bot.telegram.sender_types import (
    _GONE_MARKERS,
    _NOT_MODIFIED,
    EditOutcome,
    MessageGone,
    Priority,
    SenderClosed,
    SenderLimits,
    _Chat,
    _consume_exception,
    _Op,
)
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


class TelegramSender(SenderQueue):
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
        super().__init__()
        self.bot = bot
        self.limits = limits or SenderLimits()
        self._pace: Pace = pace or LocalPace(self.limits, clock=clock)
        self._clock = clock
        self._sleep = sleep
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._scheduler: asyncio.Task[None] | None = None

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
