"""How fast the Telegram sender may go: the accounting behind :class:`~bot.telegram.sender.TelegramSender`.

Telegram's limits are per bot token, not per process. :class:`LocalPace` keeps them for one process (the
default, nothing shared). :class:`RedisPace` keeps them in Redis for every process of one bot, so N
front-end replicas behind one webhook URL together send no faster than one may:

* per chat one operation at a time and ``per_chat_interval_s`` after it completed; per group
  ``group_max`` in ``group_window_s``; bot-wide ``global_max`` in ``global_window_s`` — sliding windows
  (sorted sets) in one Lua script that *takes* a slot atomically or says how long to wait;
* an operation in flight is counted until it completes (its entry is scored in the future until
  :meth:`Pace.done` rescores it), so the window runs from completion, as in-process;
* every ``retry_after`` penalty (a chat's, or the bot's) is written to Redis: the other replicas wait too.

Time is Redis's own clock (``TIME``), so processes on machines whose clocks differ agree. Keys are
``<prefix>tgpace:{<hash of the bot id>}:…`` (never the token; one hash slot, so a cluster takes the
script). The local accounting stays in front of Redis: a process never asks for a slot it already knows
is taken. When Redis cannot be reached, a take falls back to the local pace (logged
``telegram_pace_unavailable``) — a Redis blip must not stop every send.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from redis.exceptions import RedisError

from core.logs import get_logger

if TYPE_CHECKING:
    from bot.telegram.sender import SenderLimits

__all__ = ["LocalPace", "Pace", "RedisPace", "pace_prefix"]

Clock = Callable[[], float]
log = get_logger("telegram")

CALL_TIMEOUT_S = 2.0  # longer than this, and a send goes on with the local pace


class Pace(Protocol):
    """The sender's limits: what it may dispatch now, what it did, what Telegram told it."""

    def ready_at(self, chat_id: int, now: float) -> float:
        """When ``chat_id`` may get its next operation, as far as this process knows."""
        ...

    def global_ready_at(self, now: float, in_flight: int) -> float | None:
        """When the bot may dispatch one more; None: only after one of ``in_flight`` ends."""
        ...

    async def take(self, chat_id: int) -> bool:
        """Reserve the slot for one operation to ``chat_id``: False when another process holds it (then
        :meth:`ready_at` says when to try again). Call :meth:`done` after every True."""
        ...

    def done(self, chat_id: int, at: float) -> None:
        """The operation of a :meth:`take` completed at ``at`` (whatever its outcome)."""
        ...

    def retry_after(self, chat_id: int, seconds: float, now: float) -> bool:
        """Telegram said wait ``seconds``: block the chat (and the bot, when the 429 looks bot-wide:
        429s in two chats within the global window). True when the bot-wide limit was hit."""
        ...

    def back_off(self, chat_id: int, until: float) -> None:
        """This process waits for the chat until ``until`` (after a 5xx): not shared."""
        ...

    async def close(self) -> None:
        """Finish writes still on their way."""
        ...


@dataclass(eq=False)
class _ChatPace:
    next_at: float = 0.0
    blocked_until: float = 0.0
    group_done: deque[float] = field(default_factory=deque)


class LocalPace:
    """The limits kept by this process alone (no Redis): what the sender always did."""

    def __init__(self, limits: SenderLimits, *, clock: Clock = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._chats: defaultdict[int, _ChatPace] = defaultdict(_ChatPace)
        self._global_done: deque[float] = deque()
        self._global_blocked_until = 0.0
        self._recent_429: deque[tuple[float, int]] = deque()

    def ready_at(self, chat_id: int, now: float) -> float:
        chat = self._chats[chat_id]
        t = max(chat.next_at, chat.blocked_until)
        if chat_id < 0:  # a group
            horizon = now - self.limits.group_window_s
            while chat.group_done and chat.group_done[0] <= horizon:
                chat.group_done.popleft()
            if len(chat.group_done) >= self.limits.group_max:
                t = max(t, chat.group_done[0] + self.limits.group_window_s)
        return t

    def global_ready_at(self, now: float, in_flight: int) -> float | None:
        lim = self.limits
        while self._global_done and self._global_done[0] <= now - lim.global_window_s:
            self._global_done.popleft()
        t = self._global_blocked_until
        if in_flight >= lim.global_max:
            return None
        if in_flight + len(self._global_done) >= lim.global_max:
            # the oldest completions age out first
            oldest = self._global_done[in_flight + len(self._global_done) - lim.global_max]
            t = max(t, oldest + lim.global_window_s)
        return t

    async def take(self, chat_id: int) -> bool:
        return True  # ready_at and global_ready_at already said yes

    def done(self, chat_id: int, at: float) -> None:
        chat = self._chats[chat_id]
        self._global_done.append(at)
        chat.next_at = at + self.limits.per_chat_interval_s
        if chat_id < 0:
            chat.group_done.append(at)

    def retry_after(self, chat_id: int, seconds: float, now: float) -> bool:
        until = now + seconds
        chat = self._chats[chat_id]
        chat.blocked_until = max(chat.blocked_until, until)
        # Telegram does not say which limit it was. 429s in two different chats within a window
        # mean the bot-wide limit: then every chat waits, not just this one.
        while self._recent_429 and self._recent_429[0][0] <= now - self.limits.global_window_s:
            self._recent_429.popleft()
        is_global = any(c != chat_id for _, c in self._recent_429)
        self._recent_429.append((now, chat_id))
        if is_global:
            self._global_blocked_until = max(self._global_blocked_until, until)
        return is_global

    def back_off(self, chat_id: int, until: float) -> None:
        chat = self._chats[chat_id]
        chat.blocked_until = max(chat.blocked_until, until)

    async def close(self) -> None:
        return None


def pace_prefix(bot_id: int, prefix: str = "comfybot:") -> str:
    """The keys of one bot's pace: a hash of its id (never the token), in braces (one cluster slot)."""
    digest = hashlib.sha256(f"telegram:{bot_id}".encode()).hexdigest()[:16]
    return f"{prefix}tgpace:{{{digest}}}:"


# KEYS: chat, chat block, global window, global block, group window.
# ARGV: member, lease ms, is group (0/1), group max, group window ms, global max, global window ms, poll ms.
# Returns {0, ""} when the slot is taken for ``member``; else {ms to wait, "chat" | "global"}.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease, poll = tonumber(ARGV[2]), tonumber(ARGV[8])
local wait, scope = 0, 'chat'
local function later(w, s)
  if w > wait then wait, scope = w, s end
end
local function blocked(key, s)
  local v = tonumber(redis.call('GET', key) or '0')
  if v > now then later(v - now, s) end
end
local function window(key, max, win, s)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - win)
  local n = redis.call('ZCARD', key)
  if n >= max then
    local e = redis.call('ZRANGE', key, n - max, n - max, 'WITHSCORES')
    local score = tonumber(e[2])
    if score > now then later(poll, s) else later(score + win - now, s) end
  end
end
blocked(KEYS[4], 'global')
blocked(KEYS[2], 'chat')
local chat = redis.call('GET', KEYS[1])
if chat then
  local at = tonumber(chat)
  if at == nil then later(poll, 'chat') elseif at > now then later(at - now, 'chat') end
end
local group, gmax, gwin = ARGV[3] == '1', tonumber(ARGV[4]), tonumber(ARGV[5])
local bmax, bwin = tonumber(ARGV[6]), tonumber(ARGV[7])
window(KEYS[3], bmax, bwin, 'global')
if group then window(KEYS[5], gmax, gwin, 'chat') end
if wait > 0 then return {math.ceil(wait), scope} end
redis.call('SET', KEYS[1], 'busy:' .. ARGV[1], 'PX', lease)
redis.call('ZADD', KEYS[3], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[3], lease + bwin)
if group then
  redis.call('ZADD', KEYS[5], now + lease, ARGV[1])
  redis.call('PEXPIRE', KEYS[5], lease + gwin)
end
return {0, ''}
"""

# KEYS: chat, global window, group window. ARGV: member, interval ms, is group, global window ms,
# group window ms. The chat's next slot is ``interval`` after now; the windows count from now.
_DONE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('GET', KEYS[1]) == 'busy:' .. ARGV[1] then
  redis.call('SET', KEYS[1], now + tonumber(ARGV[2]), 'PX', math.max(1, tonumber(ARGV[2])))
end
redis.call('ZADD', KEYS[2], 'XX', now, ARGV[1])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]))
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[3], 'XX', now, ARGV[1])
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[5]))
end
return 1
"""

# KEYS: block key. ARGV: ms. The block ends ``ms`` after now (Redis's clock), never earlier than it did.
_BLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local till = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if till > cur then redis.call('SET', KEYS[1], till, 'PX', tonumber(ARGV[1])) end
return 1
"""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisPace(LocalPace):
    """The limits of one bot token kept in Redis for all its processes (see the module docstring).

    ``redis`` is a ``redis.asyncio`` client (the store's); ``lease_s`` bounds how long a process that
    died mid-call holds a chat; ``poll_s`` is how soon to ask again when the slot is held by an
    operation in flight elsewhere (its end is not known here).
    """

    def __init__(
        self,
        redis: Any,
        limits: SenderLimits,
        *,
        bot_id: int,
        prefix: str = "comfybot:",
        clock: Clock = time.monotonic,
        lease_s: float = 30.0,
        poll_s: float = 0.05,
    ) -> None:
        super().__init__(limits, clock=clock)
        self._redis = redis
        self._keys = pace_prefix(bot_id, prefix)
        self._take = redis.register_script(_TAKE)
        self._done = redis.register_script(_DONE)
        self._block = redis.register_script(_BLOCK)
        self.lease_s, self.poll_s = lease_s, poll_s
        self._members: dict[int, str] = {}
        self._ids = itertools.count()
        self._tag = secrets.token_hex(4)
        self._not_before: defaultdict[int, float] = defaultdict(float)
        self._global_not_before = 0.0
        self._writes: set[asyncio.Task[None]] = set()

    def _chat_keys(self, chat_id: int) -> list[str]:
        k = self._keys
        return [f"{k}chat:{chat_id}", f"{k}block:{chat_id}", f"{k}global", f"{k}block", f"{k}group:{chat_id}"]

    def ready_at(self, chat_id: int, now: float) -> float:
        return max(super().ready_at(chat_id, now), self._not_before[chat_id])

    def global_ready_at(self, now: float, in_flight: int) -> float | None:
        t = super().global_ready_at(now, in_flight)
        return None if t is None else max(t, self._global_not_before)

    async def take(self, chat_id: int) -> bool:
        lim, member = self.limits, f"{self._tag}:{next(self._ids)}"
        args = [member, _ms(self.lease_s), int(chat_id < 0), lim.group_max, _ms(lim.group_window_s)]
        args += [lim.global_max, _ms(lim.global_window_s), _ms(self.poll_s)]
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):  # a half-open connection never answers
                wait_ms, scope = await self._take(keys=self._chat_keys(chat_id), args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("telegram_pace_unavailable", error=repr(exc))
            return True
        if int(wait_ms) == 0:
            self._members[chat_id] = member
            return True
        until = self._clock() + int(wait_ms) / 1000
        if scope in (b"global", "global"):
            self._global_not_before = max(self._global_not_before, until)
        else:
            self._not_before[chat_id] = max(self._not_before[chat_id], until)
        return False

    def done(self, chat_id: int, at: float) -> None:
        super().done(chat_id, at)
        member = self._members.pop(chat_id, None)
        if member is None:
            return  # the take fell back to the local pace
        lim, keys = self.limits, self._chat_keys(chat_id)
        args = [member, _ms(lim.per_chat_interval_s), int(chat_id < 0)]
        args += [_ms(lim.global_window_s), _ms(lim.group_window_s)]
        self._write("done", self._done(keys=[keys[0], keys[2], keys[4]], args=args))

    def retry_after(self, chat_id: int, seconds: float, now: float) -> bool:
        is_global = super().retry_after(chat_id, seconds, now)
        keys = self._chat_keys(chat_id)
        self._write("retry_after", self._block(keys=[keys[1]], args=[_ms(seconds)]))
        if is_global:
            self._write("retry_after", self._block(keys=[keys[3]], args=[_ms(seconds)]))
        return is_global

    def _write(self, what: str, call: Any) -> None:
        async def run() -> None:
            try:
                async with asyncio.timeout(CALL_TIMEOUT_S):
                    await call
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("telegram_pace_unavailable", step=what, error=repr(exc))

        task = asyncio.get_running_loop().create_task(run())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def close(self) -> None:
        if self._writes:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await asyncio.gather(*self._writes, return_exceptions=True)
