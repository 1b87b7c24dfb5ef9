"""The sender's queues: per chat, sends in order and edits coalesced per message slot, plus what
Telegram already said (finalized slots, gone messages). :class:`~bot.telegram.sender.TelegramSender`
adds the scheduling and execution on top."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from bot.telegram.sender_types import (
    _MEMORY,
    EditOutcome,
    MessageGone,
    Priority,
    SenderClosed,
    _Chat,
    _Op,
)

__all__ = ["SenderQueue"]


class SenderQueue:
    """Pending operations of every chat; no I/O (the subclass dispatches them)."""

    def __init__(self) -> None:
        self._chats: dict[int, _Chat] = {}
        self._pending: set[int] = set()
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._finalized: OrderedDict[tuple[int, Hashable], None] = OrderedDict()
        self._gone: OrderedDict[tuple[int, int], str] = OrderedDict()
        self._closing = False

    def discard_edits(self, chat_id: int, message_id: int) -> int:
        """Drop pending edits of a message (e.g. its result went out as a new message)."""
        chat = self._chats.get(chat_id)
        if chat is None:
            return 0
        dropped = [k for k, op in chat.edits.items() if op.message_id == message_id]
        for key in dropped:
            chat.edits.pop(key).resolve(EditOutcome.SUPERSEDED)
        return len(dropped)

    @property
    def queued(self) -> int:
        """Operations waiting to be dispatched (not counting the ones in flight)."""
        return sum(len(c.sends) + len(c.edits) for c in self._chats.values())

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

    def _edited(self, op: _Op[Any]) -> None:
        if op.priority is Priority.RESULT and op.key is not None:
            self._remember(self._finalized, (op.chat_id, op.key), None)

    @staticmethod
    def _remember(memory: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        memory[key] = value
        if len(memory) > _MEMORY:
            memory.popitem(last=False)
