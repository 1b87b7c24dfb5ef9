"""The embedded backend: everything in this process's memory, nothing to install (the default).

Records are kept as JSON bytes, exactly like the Redis backend keeps them, so a caller that mutates a
record it got back never changes the stored one behind the backend's back.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Collection
from typing import Any

import orjson

from gateway.limits import MemoryRateLimiter, RateRule
from gateway.models import JobEvent, event_from_json, event_to_json
from gateway.quota_stores import MemoryQuotas
from gateway.records import JobRecord
from gateway.store import (
    DURATIONS_MAX,
    EVENTS_MAX,
    OUTCOME_HOURS,
    RECENT_MAX,
    Enqueued,
    Store,
    outcome_fields,
    outcome_hour,
    outcome_hours,
    too_many_pending,
)

CLAIMS_SWEEP_AT = 1024  # claims kept before expired ones are dropped


def kept(raw: bytes) -> bytes:
    """An exact-size copy of ``raw`` for keeping: orjson's ``bytes`` still own their whole output buffer
    (~8 KB, whatever the length), which for 10,000 queued jobs was 80 MB of slack."""
    return bytes(memoryview(raw))


class Channel:
    """A bounded, ordered buffer of events that one or more readers drain (each event to one reader)."""

    def __init__(self) -> None:
        self.items: deque[bytes] = deque(maxlen=EVENTS_MAX)
        self.ready = asyncio.Event()

    def put(self, item: bytes) -> None:
        self.items.append(item)
        self.ready.set()


class LocalChannels:
    """Event channels and cancel broadcasts within this process (memory and SQLite stores)."""

    def __init__(self) -> None:
        self._channels: dict[str, Channel] = {}
        self._cancel_listeners: set[asyncio.Queue[tuple[str, str]]] = set()

    def _channel(self, platform: str) -> Channel:
        channel = self._channels.get(platform)
        if channel is None:
            channel = self._channels[platform] = Channel()
        return channel

    async def subscribe(self, platform: str, *, consumer: str = "main") -> AsyncGenerator[JobEvent, None]:
        channel = self._channel(platform)
        while True:
            while channel.items:
                yield event_from_json(channel.items.popleft())
            channel.ready.clear()
            await channel.ready.wait()

    def _broadcast_cancel(self, job_id: str, by: str) -> None:
        for listener in self._cancel_listeners:
            listener.put_nowait((job_id, by))

    async def cancel_requests(self) -> AsyncGenerator[tuple[str, str], None]:
        listener: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._cancel_listeners.add(listener)
        try:
            while True:
                yield await listener.get()
        finally:
            self._cancel_listeners.discard(listener)


class MemoryStore(MemoryQuotas, LocalChannels, Store):
    """In-process queue, records and event channels. Leases work as in Redis, within this process."""

    name = "memory"
    durable = False

    def __init__(self, *, keep_finished: int = 10_000) -> None:
        Store.__init__(self)
        LocalChannels.__init__(self)
        self.keep_finished = keep_finished  # finished records kept (Redis expires them after a week)
        self._records: dict[str, bytes] = {}
        self._finished: set[str] = set()
        self._finished_order: deque[str] = deque()
        self._waiting: dict[str, tuple[int, int, str]] = {}  # job_id -> (round, seq, user), gateway/fair.py
        self._heap: list[tuple[int, int, str]] = []  # (round, seq, job_id); removed jobs dropped lazily
        self._rounds: dict[str, dict[int, int]] = {}  # user -> round -> waiting jobs in it
        self._seq = 0
        self._has_waiting = asyncio.Condition()
        self._leases: dict[str, tuple[str, float]] = {}  # job_id -> (consumer, last renewal, monotonic)
        self._cancels: dict[str, str] = {}
        self._pending: dict[str, set[str]] = {}
        self._recent: dict[str, deque[str]] = {}
        self._settings: dict[str, bytes] = {}
        self._delivered: set[str] = set()
        self._views: dict[str, bytes] = {}
        self._open_views: dict[str, dict[str, None]] = {}  # platform -> open job ids, oldest first
        self._view_leases: dict[str, tuple[str, float]] = {}  # job id -> (holder, monotonic expiry)
        self._claims: dict[str, float] = {}  # key -> until (monotonic)
        self._durations: dict[str, deque[int]] = {}
        self._rates = MemoryRateLimiter()
        self._outcomes: OrderedDict[str, dict[str, int]] = OrderedDict()  # hour bucket -> counters

    # --- records --------------------------------------------------------------------------------
    async def save(self, record: JobRecord) -> bool:
        if record.job_id in self._finished:
            return False
        self._records[record.job_id] = kept(record.to_json())
        return True

    async def get(self, job_id: str) -> JobRecord | None:
        raw = self._records.get(job_id)
        return None if raw is None else JobRecord.from_json(raw)

    # --- queue ----------------------------------------------------------------------------------
    async def enqueue(
        self,
        record: JobRecord,
        *,
        max_depth: int | None = None,
        max_pending: int | None = None,
        rate: RateRule | None = None,
    ) -> Enqueued | None:
        job_id = record.job_id
        if job_id not in self._records:
            if max_depth is not None and len(self._waiting) >= max_depth:
                return None
            pending = len(self._pending.get(record.user_id, ()))
            if max_pending is not None and pending >= max_pending:
                raise too_many_pending(pending, max_pending)
            if rate is not None:  # hit() never suspends: the checks and the append stay one step
                decision = await self._rates.hit(rate.key, rate.limit, rate.window_s, now=rate.now)
                if not decision.allowed:
                    raise rate.exceeded(decision.retry_after_s)
            self._records[job_id] = kept(record.to_json())
            self._pending.setdefault(record.user_id, set()).add(job_id)
            recent = self._recent.setdefault(record.user_id, deque(maxlen=RECENT_MAX))
            recent.appendleft(job_id)
            async with self._has_waiting:
                position = self._append(job_id, record.user_id)
                self._has_waiting.notify()
                return Enqueued(position=position, depth=len(self._waiting))
        return Enqueued(position=await self.position(job_id) or 0, depth=len(self._waiting))

    async def take(self, consumer: str, timeout_s: float) -> JobRecord | None:
        async with self._has_waiting:
            try:
                async with asyncio.timeout(timeout_s):
                    await self._has_waiting.wait_for(lambda: bool(self._waiting))
            except TimeoutError:
                return None
            job_id = self._pop()
        self._leases[job_id] = (consumer, time.monotonic())
        return await self.get(job_id)

    async def ack(self, job_id: str) -> None:
        self._leases.pop(job_id, None)

    async def renew(self, consumer: str, job_ids: Collection[str]) -> None:
        now = time.monotonic()
        for job_id in job_ids:
            lease = self._leases.get(job_id)
            if lease is not None and lease[0] == consumer:
                self._leases[job_id] = (consumer, now)

    async def release(self, consumer: str, job_ids: Collection[str]) -> None:
        for job_id in job_ids:
            lease = self._leases.get(job_id)
            if lease is not None and lease[0] == consumer:
                self._leases[job_id] = (consumer, -math.inf)

    async def claim_stale(self, consumer: str, min_idle_s: float) -> list[JobRecord]:
        now = time.monotonic()
        claimed: list[JobRecord] = []
        for job_id, (_, renewed) in list(self._leases.items()):
            if now - renewed < min_idle_s:
                continue
            if job_id in self._finished:
                del self._leases[job_id]
                continue
            self._leases[job_id] = (consumer, now)
            record = await self.get(job_id)
            if record is not None:
                claimed.append(record)
        return claimed

    async def remove_queued(self, job_id: str) -> bool:
        if job_id not in self._waiting:
            return False
        self._unwait(job_id)
        return True

    async def position(self, job_id: str) -> int | None:
        if job_id not in self._waiting:
            return None
        # O(depth), and depth is bounded by the global queue cap: fine for the embedded backend.
        mine = self._waiting[job_id][:2]
        return sum(1 for key in self._waiting.values() if key[:2] <= mine)

    async def depth(self) -> int:
        return len(self._waiting)

    async def waiting(self, limit: int) -> list[str]:
        ordered = sorted(self._waiting.items(), key=lambda item: item[1][:2])
        return [job_id for job_id, _ in ordered[:limit]]

    def _append(self, job_id: str, user_id: str) -> int:
        """Queue ``job_id`` in its round (gateway/fair.py); its 1-based position."""
        rounds = self._rounds.setdefault(user_id, {})
        newest = max(rounds.items()) if rounds else None
        rnd = self.fair.round_for(user_id, self._current_round(), newest)
        self._seq += 1
        self._waiting[job_id] = (rnd, self._seq, user_id)
        heapq.heappush(self._heap, (rnd, self._seq, job_id))
        rounds[rnd] = rounds.get(rnd, 0) + 1
        if self.fair.fifo:  # appended last: its position is the depth, no scan
            return len(self._waiting)
        return sum(1 for key in self._waiting.values() if key[0] <= rnd)

    def _current_round(self) -> int:
        while self._heap and self._heap[0][2] not in self._waiting:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else 0

    def _pop(self) -> str:
        self._current_round()  # drops removed jobs from the top
        job_id = heapq.heappop(self._heap)[2]
        self._unwait(job_id)
        return job_id

    def _unwait(self, job_id: str) -> None:
        rnd, _, user_id = self._waiting.pop(job_id)
        rounds = self._rounds[user_id]
        rounds[rnd] -= 1
        if not rounds[rnd]:
            del rounds[rnd]
        if not rounds:
            del self._rounds[user_id]

    # --- outcome and events ---------------------------------------------------------------------
    async def finish(self, record: JobRecord, event: JobEvent) -> bool:
        if record.job_id in self._finished:
            return False
        self._finished.add(record.job_id)
        self._finished_order.append(record.job_id)
        self._records[record.job_id] = kept(record.to_json())
        while len(self._finished_order) > self.keep_finished:
            self._forget(self._finished_order.popleft())
        self._waiting.pop(record.job_id, None)
        self._pending.get(record.user_id, set()).discard(record.job_id)
        bucket = self._outcomes.setdefault(outcome_hour(time.time()), {})
        for name in outcome_fields(event):
            bucket[name] = bucket.get(name, 0) + 1
        while len(self._outcomes) > OUTCOME_HOURS + 1:  # insertion order is time order
            self._outcomes.popitem(last=False)
        await self.publish(record.events_channel, event)
        return True

    async def outcomes(self, now: float | None = None) -> dict[str, int]:
        total: dict[str, int] = {}
        for hour in outcome_hours(time.time() if now is None else now):
            for name, count in self._outcomes.get(hour, {}).items():
                total[name] = total.get(name, 0) + count
        return total

    def _forget(self, job_id: str) -> None:
        """Drop an old finished job entirely, so a long-running embedded process stays bounded."""
        self._finished.discard(job_id)
        self._records.pop(job_id, None)
        self._cancels.pop(job_id, None)
        self._delivered.discard(job_id)
        self._views.pop(job_id, None)
        for open_ids in self._open_views.values():
            open_ids.pop(job_id, None)
        self._view_leases.pop(job_id, None)
        self._leases.pop(job_id, None)

    async def publish(self, platform: str, event: JobEvent) -> None:
        self._channel(platform).put(kept(event_to_json(event)))

    async def event_handled(self, platform: str, job_id: str) -> None:
        pass  # nothing of this store outlives its process, so nothing is owed to a restart

    # --- cancel ---------------------------------------------------------------------------------
    async def request_cancel(self, job_id: str, by: str) -> None:
        self._cancels[job_id] = by
        self._broadcast_cancel(job_id, by)

    async def cancel_requested(self, job_id: str) -> str | None:
        return self._cancels.get(job_id)

    # --- per user and per workflow --------------------------------------------------------------
    async def pending_count(self, user_id: str) -> int:
        return len(self._pending.get(user_id, ()))

    async def pending_jobs(self, user_id: str) -> list[str]:
        return sorted(self._pending.get(user_id, ()))

    async def recent(self, user_id: str, limit: int) -> list[JobRecord]:
        out: list[JobRecord] = []
        for job_id in list(self._recent.get(user_id, ()))[:limit]:
            record = await self.get(job_id)
            if record is not None:
                out.append(record)
        return out

    async def get_settings(self, user_key: str) -> dict[str, Any]:
        raw = self._settings.get(user_key)
        return {} if raw is None else dict(orjson.loads(raw))

    async def set_settings(self, user_key: str, values: dict[str, Any]) -> None:
        self._settings[user_key] = kept(orjson.dumps(values))

    async def mark_delivered(self, job_id: str) -> bool:
        if job_id in self._delivered:
            return False
        self._delivered.add(job_id)
        return True

    async def delivered(self, job_id: str) -> bool:
        return job_id in self._delivered

    async def claim_once(self, key: str, ttl_s: float) -> bool:
        now = time.monotonic()
        if len(self._claims) >= CLAIMS_SWEEP_AT:  # bounded: expired claims go once there are many
            self._claims = {k: until for k, until in self._claims.items() if until > now}
        if self._claims.get(key, 0.0) > now:
            return False
        self._claims[key] = now + ttl_s
        return True

    async def set_view(self, job_id: str, view: dict[str, Any]) -> None:
        self._views[job_id] = kept(orjson.dumps(view))  # forgotten with the job (``_forget``)
        if isinstance(platform := view.get("platform"), str):
            self._open_views.setdefault(platform, {})[job_id] = None

    async def get_view(self, job_id: str) -> dict[str, Any] | None:
        raw = self._views.get(job_id)
        return None if raw is None else dict(orjson.loads(raw))

    async def close_view(self, job_id: str) -> None:
        for open_ids in self._open_views.values():
            open_ids.pop(job_id, None)
        self._view_leases.pop(job_id, None)

    async def lease_view(self, platform: str, job_id: str, owner: str, ttl_s: float) -> str | None:
        if job_id not in self._open_views.get(platform, {}):
            return None
        now = time.monotonic()
        holder, until = self._view_leases.get(job_id, (owner, 0.0))
        if holder == owner or until <= now:
            self._view_leases[job_id] = (owner, now + ttl_s)
            return owner
        return holder

    async def open_views(self, platform: str, limit: int) -> list[tuple[str, dict[str, Any]]]:
        ids = list(self._open_views.get(platform, {}))[:limit]
        return [(i, dict(orjson.loads(self._views[i]))) for i in ids if i in self._views]

    async def add_duration(self, workflow: str, run_ms: int) -> None:
        self._durations.setdefault(workflow, deque(maxlen=DURATIONS_MAX)).appendleft(run_ms)

    async def durations(self, workflow: str) -> list[int]:
        return list(self._durations.get(workflow, ()))


__all__ = ["Channel", "LocalChannels", "MemoryStore", "kept"]
