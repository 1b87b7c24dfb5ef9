"""One contract, every store: memory, SQLite and Redis are held to the same behaviour."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gateway import redis_scripts
from gateway.errors import LimitExceeded
from gateway.limits import RateRule
from gateway.memory import CLAIMS_SWEEP_AT, MemoryStore
from gateway.models import (
    Cancelled,
    Failed,
    FailureCode,
    JobEvent,
    JobRequest,
    JobState,
    Progress,
    Queued,
    Succeeded,
)
from gateway.records import JobRecord
from gateway.redis_store import RedisStore
from gateway.sqlite_store import SqliteStore
from gateway.store import QuotaCounter, Store


def make_record(user: str = "u1", platform: str = "telegram", workflow: str = "txt2img") -> JobRecord:
    req = JobRequest(
        platform=platform,
        user_id=user,
        chat_id="c1",
        workflow=workflow,
        params={"prompt": "a lighthouse"},
    )
    return JobRecord(request=req, values={"prompt": "a lighthouse", "seed": 42})


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "memory":
        async with MemoryStore() as mem:
            yield mem
    elif request.param == "sqlite":
        async with SqliteStore(tmp_path / "comfybot.db") as lite:
            yield lite
    else:
        srv = request.getfixturevalue("redis_server")
        async with RedisStore(srv.url, retry_for_s=10) as red:
            yield red


async def next_event(it: AsyncIterator[object]) -> object:
    async with asyncio.timeout(5):
        return await anext(it)


class TestBackendContract:
    async def test_enqueue_reports_position_and_depth(self, backend: Store) -> None:
        a, b = make_record(), make_record()
        first = await backend.enqueue(a)
        second = await backend.enqueue(b)
        assert first is not None and (first.position, first.depth) == (1, 1)
        assert second is not None and (second.position, second.depth) == (2, 2)
        assert await backend.position(b.job_id) == 2
        assert await backend.depth() == 2
        assert await backend.waiting(10) == [a.job_id, b.job_id]

    async def test_enqueue_is_idempotent_per_job(self, backend: Store) -> None:
        rec = make_record()
        await backend.enqueue(rec)
        again = await backend.enqueue(rec)
        assert again is not None and again.depth == 1
        assert await backend.pending_count("u1") == 1

    async def test_queue_cap_refuses(self, backend: Store) -> None:
        assert await backend.enqueue(make_record(), max_depth=1) is not None
        assert await backend.enqueue(make_record(), max_depth=1) is None
        assert await backend.depth() == 1

    async def test_take_is_fifo_and_updates_positions(self, backend: Store) -> None:
        a, b = make_record(), make_record()
        await backend.enqueue(a)
        await backend.enqueue(b)
        taken = await backend.take("w1", 1.0)
        assert taken is not None and taken.job_id == a.job_id
        assert taken.request == a.request
        assert await backend.position(a.job_id) is None
        assert await backend.position(b.job_id) == 1

    async def test_take_times_out_empty(self, backend: Store) -> None:
        assert await backend.take("w1", 0.05) is None

    async def test_take_wakes_when_a_job_arrives(self, backend: Store) -> None:
        waiter = asyncio.create_task(backend.take("w1", 5.0))
        await asyncio.sleep(0)  # let the taker block first
        rec = make_record()
        await backend.enqueue(rec)
        taken = await waiter
        assert taken is not None and taken.job_id == rec.job_id

    async def test_removed_job_is_never_taken(self, backend: Store) -> None:
        a, b = make_record(), make_record()
        await backend.enqueue(a)
        await backend.enqueue(b)
        assert await backend.remove_queued(a.job_id)
        assert not await backend.remove_queued(a.job_id)
        taken = await backend.take("w1", 1.0)
        # Redis may hand out the removed entry's slot as None first; the next take gets b.
        if taken is None:
            taken = await backend.take("w1", 1.0)
        assert taken is not None and taken.job_id == b.job_id
        assert not await backend.remove_queued(b.job_id)  # already taken: cancel must interrupt instead

    async def test_save_and_get_roundtrip(self, backend: Store) -> None:
        rec = make_record()
        await backend.enqueue(rec)
        rec.state = JobState.SUBMITTED
        rec.prompt_id = "p-1"
        rec.backend = "A"
        assert await backend.save(rec)
        got = await backend.get(rec.job_id)
        assert got is not None and got.prompt_id == "p-1" and got.state is JobState.SUBMITTED
        assert await backend.get("nope") is None

    async def test_finish_publishes_once_and_freezes_record(self, backend: Store) -> None:
        rec = make_record()
        await backend.enqueue(rec)
        await backend.take("w1", 1.0)
        rec.state = JobState.SUCCEEDED
        event = Succeeded(job_id=rec.job_id, request_id=rec.request.request_id, images=[], duration_ms=5)
        assert await backend.finish(rec, event)
        assert not await backend.finish(rec, event)
        rec.state = JobState.RUNNING
        assert not await backend.save(rec)
        got = await backend.get(rec.job_id)
        assert got is not None and got.state is JobState.SUCCEEDED
        assert await backend.pending_count("u1") == 0
        async with contextlib.aclosing(backend.subscribe("telegram")) as events:
            assert await next_event(events) == event
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await anext(events)

    async def test_events_are_per_platform_and_ordered(self, backend: Store) -> None:
        sent: list[JobEvent] = [
            Queued(job_id="j", request_id="r", position=2, depth=2),
            Queued(job_id="j", request_id="r", position=1, depth=1),
            Progress(job_id="j", request_id="r", node_label="Sampling", done_nodes=1, total_nodes=3),
        ]
        for ev in sent:
            await backend.publish("telegram", ev)
        other = Cancelled(job_id="k", request_id="r2", by="u")
        await backend.publish("discord", other)
        async with contextlib.aclosing(backend.subscribe("telegram")) as events:
            got = [await next_event(events) for _ in sent]
        assert got == sent
        async with contextlib.aclosing(backend.subscribe("discord")) as events:
            assert await next_event(events) == other

    async def test_events_published_before_subscribing_are_kept(self, backend: Store) -> None:
        ev = Cancelled(job_id="j", request_id="r", by="admin")
        await backend.publish("telegram", ev)
        async with contextlib.aclosing(backend.subscribe("telegram")) as events:
            assert await next_event(events) == ev
        # A subscriber that comes back later gets only what it has not seen.
        later = Cancelled(job_id="j2", request_id="r2", by="admin")
        await backend.publish("telegram", later)
        async with contextlib.aclosing(backend.subscribe("telegram")) as events:
            assert await next_event(events) == later

    async def test_stale_lease_is_claimed_by_another_consumer(self, backend: Store) -> None:
        rec = make_record()
        await backend.enqueue(rec)
        assert await backend.take("dead", 1.0) is not None
        assert await backend.claim_stale("w2", 30.0) == []  # still fresh
        await asyncio.sleep(0.15)
        claimed = await backend.claim_stale("w2", 0.1)
        assert [r.job_id for r in claimed] == [rec.job_id]
        assert await backend.claim_stale("w3", 30.0) == []  # the claim refreshed the lease

    async def test_a_released_lease_is_claimed_at_once(self, backend: Store) -> None:
        mine, other = make_record(), make_record()
        await backend.enqueue(mine)
        await backend.enqueue(other)
        assert await backend.take("stopping", 1.0) is not None
        assert await backend.take("w1", 1.0) is not None
        await backend.release("w1", [mine.job_id])  # not w1's lease: nothing changes
        assert await backend.claim_stale("w2", 30.0) == []
        await backend.release("stopping", [mine.job_id])
        claimed = await backend.claim_stale("w2", 30.0)
        assert [r.job_id for r in claimed] == [mine.job_id], "released, so stale before its lease lapsed"
        assert await backend.claim_stale("w3", 30.0) == [], "the claim made it w2's, freshly leased"

    async def test_renewed_lease_is_not_claimed(self, backend: Store) -> None:
        rec = make_record()
        await backend.enqueue(rec)
        await backend.take("w1", 1.0)
        await asyncio.sleep(0.15)
        await backend.renew("w1", [rec.job_id])
        assert await backend.claim_stale("w2", 0.1) == []

    async def test_acked_or_finished_jobs_are_not_claimed(self, backend: Store) -> None:
        a, b = make_record(), make_record()
        await backend.enqueue(a)
        await backend.enqueue(b)
        await backend.take("w1", 1.0)
        await backend.take("w1", 1.0)
        await backend.ack(a.job_id)
        b.state = JobState.CANCELLED
        await backend.finish(b, Cancelled(job_id=b.job_id, request_id="r", by="u1"))
        await asyncio.sleep(0.15)
        assert await backend.claim_stale("w2", 0.1) == []

    async def test_cancel_requests_reach_listeners_and_flag(self, backend: Store) -> None:
        async with contextlib.aclosing(backend.cancel_requests()) as requests:
            listen = asyncio.create_task(next_event(requests))
            await asyncio.sleep(0.2)  # subscribed (Redis pub/sub needs the SUBSCRIBE to land)
            await backend.request_cancel("j1", "u1")
            assert await listen == ("j1", "u1")
        assert await backend.cancel_requested("j1") == "u1"
        assert await backend.cancel_requested("j2") is None

    async def test_per_user_pending_and_recent(self, backend: Store) -> None:
        recs = [make_record("alice") for _ in range(3)] + [make_record("bob")]
        for rec in recs:
            await backend.enqueue(rec)
        assert await backend.pending_count("alice") == 3
        assert sorted(await backend.pending_jobs("alice")) == sorted(r.job_id for r in recs[:3])
        recent = await backend.recent("alice", 2)
        assert [r.job_id for r in recent] == [recs[2].job_id, recs[1].job_id]
        assert await backend.recent("nobody", 5) == []

    async def test_settings_roundtrip(self, backend: Store) -> None:
        assert await backend.settings.get("telegram:1") == {}
        await backend.settings.set("telegram:1", {"steps": 30, "ar": "16:9"})
        assert await backend.settings.get("telegram:1") == {"steps": 30, "ar": "16:9"}

    async def test_mark_delivered_is_true_once(self, backend: Store) -> None:
        assert not await backend.delivered("j1")
        assert await backend.mark_delivered("j1")
        assert await backend.delivered("j1")
        assert not await backend.mark_delivered("j1")
        assert await backend.mark_delivered("j2")

    async def test_claim_once_is_true_once_until_it_expires(self, backend: Store) -> None:
        assert await backend.claim_once("press:telegram:5:9:j:r:abc:0", 60)
        assert not await backend.claim_once("press:telegram:5:9:j:r:abc:0", 60)
        assert await backend.claim_once("press:telegram:5:9:j:v:abc:0", 60), "another button"
        assert await backend.claim_once("press:telegram:5:10:j:r:abc:0", 60), "another message"
        assert await backend.claim_once("short", 0.05)
        assert not await backend.claim_once("short", 60)
        # Free again once its time is up (polled: the store's own clock decides).
        async with asyncio.timeout(5):
            while True:
                if await backend.claim_once("short", 60):
                    break
                await asyncio.sleep(0.02)
        assert not await backend.claim_once("short", 60), "the new claim holds"

    async def test_claim_once_is_atomic_under_concurrent_claims(self, backend: Store) -> None:
        results = await asyncio.gather(*(backend.claim_once("k", 60) for _ in range(20)))
        assert results.count(True) == 1

    async def test_quota_counts_each_job_once_and_all_windows_or_none(self, backend: Store) -> None:
        until = time.time() + 3600
        hour, day = QuotaCounter("hour:1:u1", 2, until), QuotaCounter("day:1:u1", 3, until)
        assert await backend.quota_take("j1", [hour, day]) is None
        assert await backend.quota_take("j1", [hour, day]) is None, "a retry is not counted again"
        assert await backend.quota_take("j2", [hour, day]) is None
        assert await backend.quota_take("j3", [hour, day]) == 0, "the hour is full"
        assert await backend.quota_counts("day:1:") == {"day:1:u1": 2}, "a refused take counts nowhere"
        await backend.quota_give_back("j2", [hour.key, day.key])
        assert await backend.quota_counts("") == {"hour:1:u1": 1, "day:1:u1": 1}
        gone = QuotaCounter("hour:0:u1", 1, time.time() - 1)
        assert await backend.quota_take("j4", [gone]) is None
        assert await backend.quota_counts("hour:0:") == {}, "a window that ended is dropped"

    async def test_quota_is_atomic_under_concurrent_takes(self, backend: Store) -> None:
        counter = QuotaCounter("day:1:u9", 3, time.time() + 60)
        results = await asyncio.gather(*(backend.quota_take(f"j{i}", [counter]) for i in range(20)))
        assert results.count(None) == 3
        assert await backend.quota_counts("day:1:u9") == {"day:1:u9": 3}

    async def test_pending_cap_is_atomic_with_enqueue(self, backend: Store) -> None:
        """Regression: checked before the enqueue only, a flood from several processes passed it at once."""
        results = await asyncio.gather(
            *(backend.enqueue(make_record(user="flood"), max_pending=3) for _ in range(20)),
            return_exceptions=True,
        )
        refused = [r for r in results if isinstance(r, LimitExceeded)]
        assert len(refused) == 17 and all(r.code is FailureCode.TOO_MANY_PENDING for r in refused)
        assert await backend.pending_count("flood") == 3
        assert await backend.enqueue(make_record(user="someone-else"), max_pending=3) is not None

    async def test_outcomes_are_counted_once_per_job_for_a_day(self, backend: Store) -> None:
        assert await backend.outcomes() == {}
        done = [make_record() for _ in range(4)]
        events: list[JobEvent] = [
            Succeeded(job_id=done[0].job_id, request_id="r", images=[], duration_ms=5),
            Succeeded(job_id=done[1].job_id, request_id="r", images=[], duration_ms=5),
            Failed(job_id=done[2].job_id, request_id="r", code=FailureCode.COMFY_UNREACHABLE),
            Cancelled(job_id=done[3].job_id, request_id="r", by="u1"),
        ]
        for rec, event in zip(done, events, strict=True):
            await backend.enqueue(rec)
            assert await backend.finish(rec, event)
            assert not await backend.finish(rec, event)  # a second finish counts nothing
        assert await backend.outcomes() == {
            "succeeded": 2,
            "failed": 1,
            "failed:comfy_unreachable": 1,
            "cancelled": 1,
        }
        assert await backend.outcomes(now=time.time() + 25 * 3600) == {}  # a day later: gone

    # --- the submission rate, applied by enqueue (time is passed in, never slept) ----------------
    async def test_rate_admits_up_to_the_limit_then_refuses_with_retry_after(self, backend: Store) -> None:
        for i in range(3):
            assert await backend.enqueue(make_record(), rate=RateRule("submit:u1", 3, 60, now=1000.0 + i))
        with pytest.raises(LimitExceeded) as info:
            await backend.enqueue(make_record(), rate=RateRule("submit:u1", 3, 60, now=1005.0))
        assert info.value.code is FailureCode.RATE_LIMITED
        assert info.value.retry_after_s == pytest.approx(55.0)  # the first (t=1000) leaves at 1060
        assert await backend.depth() == 3  # the refused job was not queued
        assert await backend.enqueue(make_record(user="u2"), rate=RateRule("submit:u2", 3, 60, now=1005.0))

    async def test_rate_window_slides_and_refusals_are_not_counted(self, backend: Store) -> None:
        async def admitted(t: float) -> bool:
            try:
                return await backend.enqueue(make_record(), rate=RateRule("k", 2, 1.5, now=t)) is not None
            except LimitExceeded:
                return False

        assert [await admitted(t) for t in (100.25, 100.5, 101.0, 101.5, 101.74)] == [
            True,
            True,
            False,
            False,
            False,
        ]
        assert await admitted(101.75)  # t=100.25 is exactly one window old; the refusals left no trace
        with pytest.raises(LimitExceeded) as info:
            await backend.enqueue(make_record(), rate=RateRule("k", 2, 1.5, now=101.8))
        assert info.value.retry_after_s == pytest.approx(0.2)

    async def test_rate_is_spent_only_by_admitted_jobs(self, backend: Store) -> None:
        """The caps are checked before the rate: a flood refused for too many pending jobs, or by a full
        queue, spends none of the user's rate."""
        rule = RateRule("submit:u1", 3, 60, now=0.0)
        assert await backend.enqueue(make_record(), max_pending=1, rate=rule)
        for _ in range(5):
            with pytest.raises(LimitExceeded) as info:
                await backend.enqueue(make_record(), max_pending=1, rate=rule)
            assert info.value.code is FailureCode.TOO_MANY_PENDING
            assert await backend.enqueue(make_record(user="u9"), max_depth=1, rate=rule) is None
        assert await backend.enqueue(make_record(), rate=rule)
        assert await backend.enqueue(make_record(), rate=rule)  # the third of 3: the refusals cost nothing
        with pytest.raises(LimitExceeded):
            await backend.enqueue(make_record(), rate=rule)

    async def test_rate_counts_a_retried_enqueue_once(self, backend: Store) -> None:
        rec, rule = make_record(), RateRule("k", 1, 60, now=0.0)
        assert await backend.enqueue(rec, rate=rule)
        again = await backend.enqueue(rec, rate=rule)  # a retry after a lost reply: same job, no new hit
        assert again is not None and again.position == 1

    async def test_rate_is_atomic_under_concurrent_enqueues(self, backend: Store) -> None:
        results = await asyncio.gather(
            *(backend.enqueue(make_record(), rate=RateRule("k", 5, 60, now=50.0)) for _ in range(40)),
            return_exceptions=True,
        )
        refused = [r for r in results if isinstance(r, LimitExceeded)]
        assert len(refused) == 35 and all(r.code is FailureCode.RATE_LIMITED for r in refused)
        assert await backend.depth() == 5

    async def test_rate_of_zero_refuses_and_own_clock_when_now_is_omitted(self, backend: Store) -> None:
        with pytest.raises(LimitExceeded) as info:
            await backend.enqueue(make_record(), rate=RateRule("z", 0, 60))
        assert info.value.retry_after_s == 60.0
        assert await backend.enqueue(make_record(), rate=RateRule("k", 1, 3600))
        with pytest.raises(LimitExceeded) as info:
            await backend.enqueue(make_record(), rate=RateRule("k", 1, 3600))
        assert info.value.retry_after_s is not None and 0 < info.value.retry_after_s <= 3600

    async def test_view_of_a_job_roundtrip(self, backend: Store) -> None:
        assert await backend.get_view("j1") is None
        await backend.set_view("j1", {"chat_id": 5, "message_id": 9, "media": False})
        await backend.set_view("j1", {"chat_id": 5, "message_id": 10, "media": True})  # it moved
        assert await backend.get_view("j1") == {"chat_id": 5, "message_id": 10, "media": True}
        assert await backend.get_view("j2") is None

    async def test_open_views_until_closed(self, backend: Store) -> None:
        await backend.set_view("a", {"platform": "telegram", "chat_id": 1, "message_id": 1})
        await backend.set_view("b", {"platform": "telegram", "chat_id": 2, "message_id": 2})
        await backend.set_view("c", {"platform": "discord", "channel_id": 3})
        await backend.set_view("d", {"chat_id": 4, "message_id": 4})  # no platform: never open
        await backend.set_view("a", {"platform": "telegram", "chat_id": 1, "message_id": 5})  # it moved
        got = dict(await backend.open_views("telegram", 100))
        assert got == {
            "a": {"platform": "telegram", "chat_id": 1, "message_id": 5},
            "b": {"platform": "telegram", "chat_id": 2, "message_id": 2},
        }
        assert len(await backend.open_views("telegram", 1)) == 1
        await backend.close_view("a")
        await backend.close_view("zz")  # unknown: nothing happens
        assert [j for j, _ in await backend.open_views("telegram", 100)] == ["b"]
        assert [j for j, _ in await backend.open_views("discord", 100)] == ["c"]
        assert await backend.get_view("a") == {"platform": "telegram", "chat_id": 1, "message_id": 5}

    async def test_view_lease_has_one_holder_until_it_lapses(self, backend: Store) -> None:
        assert await backend.lease_view("telegram", "j1", "a", 30) is None  # no view: nothing to lease
        await backend.set_view("j1", {"platform": "telegram", "chat_id": 1, "message_id": 1})
        assert await backend.lease_view("discord", "j1", "a", 30) is None  # not open on that platform
        holders = await asyncio.gather(*(backend.lease_view("telegram", "j1", o, 30) for o in "abcab"))
        first = holders[0]
        assert first is not None and holders == [first] * 5  # one holder, whoever asks
        other = "b" if first == "a" else "a"
        assert await backend.lease_view("telegram", "j1", first, 0.05) == first  # renewed, shortened
        await asyncio.sleep(0.3)  # not renewed: it lapses
        assert await backend.lease_view("telegram", "j1", other, 30) == other  # taken over
        assert await backend.lease_view("telegram", "j1", first, 30) == other
        await backend.close_view("j1")  # the outcome is shown: no lease any more, for anyone
        assert await backend.lease_view("telegram", "j1", other, 30) is None
        assert await backend.lease_view("telegram", "j1", first, 30) is None
        await backend.set_view("j1", {"platform": "telegram", "chat_id": 1, "message_id": 2})
        assert await backend.lease_view("telegram", "j1", first, 30) == first  # a fresh lease

    async def test_durations_newest_first_bounded(self, backend: Store) -> None:
        for ms in range(30):
            await backend.add_duration("txt2img", ms)
        got = await backend.durations("txt2img")
        assert got[0] == 29 and len(got) == 20
        assert await backend.durations("other") == []


async def test_redis_claim_holds_across_processes(redis_server) -> None:
    """Two front-end replicas on one Redis: a double press that reaches both still makes one job."""
    async with RedisStore(redis_server.url) as one, RedisStore(redis_server.url) as two:
        results = await asyncio.gather(
            *(store.claim_once("press:discord:77:comfybot:r:abc:0", 60) for store in (one, two) * 5)
        )
        assert results.count(True) == 1
        assert await one.claim_once("press:discord:78:comfybot:r:abc:0", 60)


async def test_redis_jobs_survive_a_restart(redis_server) -> None:
    """AOF on: a queued job and its record are still there after redis-server restarts."""
    rec = make_record()
    async with RedisStore(redis_server.url, retry_for_s=10) as red:
        await red.enqueue(rec)
    redis_server.restart()
    async with RedisStore(redis_server.url, retry_for_s=10) as red:
        assert await red.position(rec.job_id) == 1
        taken = await red.take("w1", 1.0)
        assert taken is not None and taken.job_id == rec.job_id


async def test_redis_terminal_event_is_owed_until_the_front_end_has_shown_it(redis_server) -> None:
    """A front end killed after reading a job's outcome but before showing it gets it again on restart
    (two store objects with one consumer name are the process before and after the kill); once
    ``event_handled`` is called it is not delivered again."""
    done = Cancelled(job_id="j1", request_id="r1", by="u")
    progress = Progress(job_id="j2", request_id="r2", node_label="Sampling", done_nodes=1, total_nodes=3)
    async with RedisStore(redis_server.url, retry_for_s=10) as before:
        await before.publish("telegram", done)
        await before.publish("telegram", progress)
        events = before.subscribe("telegram")
        assert await next_event(events) == done
        assert await next_event(events) == progress
        # killed here: the generator never finishes and event_handled is never called
    async with (
        RedisStore(redis_server.url, retry_for_s=10) as after,
        contextlib.aclosing(after.subscribe("telegram")) as events,
    ):
        assert await next_event(events) == done  # owed
        assert await next_event(events) == progress  # in hand at the kill (a fresh one is shown again)
        await after.event_handled("telegram", "j1")
        later = Cancelled(job_id="j3", request_id="r3", by="u")
        await after.publish("telegram", later)
        assert await next_event(events) == later
        await after.event_handled("telegram", "j3")
    async with (
        RedisStore(redis_server.url, retry_for_s=10) as third,
        contextlib.aclosing(third.subscribe("telegram")) as events,
    ):
        last = Cancelled(job_id="j4", request_id="r4", by="u")
        await third.publish("telegram", last)
        assert await next_event(events) == last  # j1 and j3 were handled: not read again


async def test_redis_outcomes_a_dead_replica_read_are_taken_over_by_a_live_one(redis_server) -> None:
    """Two replicas, each its own consumer name: what one read and never showed (it was killed) goes
    to the other once it has been idle for the lease; what a live replica owes it keeps (renewed)."""
    lost = Cancelled(job_id="j1", request_id="r1", by="u")
    kept = Cancelled(job_id="j2", request_id="r2", by="u")
    async with (
        RedisStore(redis_server.url, retry_for_s=10, event_lease_s=1.0) as dead,
        RedisStore(redis_server.url, retry_for_s=10, event_lease_s=1.0) as live,
    ):
        await dead.publish("telegram", lost)
        killed = dead.subscribe("telegram", consumer="replica-a")
        assert await next_event(killed) == lost  # read, never shown: replica-a is killed here
        async with contextlib.aclosing(live.subscribe("telegram", consumer="replica-b")) as events:
            await live.publish("telegram", kept)
            assert await next_event(events) == kept
            assert await next_event(events) == lost  # replica-a's, after its lease lapsed
            await live.event_handled("telegram", "j1")
            # replica-b still owes j2 and renews it while it reads on: nobody takes it from a live replica
            reading = asyncio.create_task(anext(events))
            async with contextlib.aclosing(dead.subscribe("telegram", consumer="replica-c")) as third:
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(2.5):
                        await anext(third)
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
        stream = live._key("events", "telegram")
        pending = await live.redis.xpending(stream, "frontends")
        assert pending["pending"] == 1  # j2, still owed (never handled)
        names = {c["name"] for c in await live.redis.xinfo_consumers(stream, "frontends")}
        assert b"replica-a" not in names, "a gone replica that owes nothing is dropped from the group"
        assert b"replica-b" in names, "one that owes is kept"


async def test_redis_owed_events_are_not_read_twice_by_one_process(redis_server) -> None:
    """Re-opening the subscription in the same process (after a Redis error) does not hand an outcome
    that a tracker is still showing to a second tracker."""
    done = Cancelled(job_id="j1", request_id="r1", by="u")
    async with RedisStore(redis_server.url, retry_for_s=10) as red:
        await red.publish("telegram", done)
        async with contextlib.aclosing(red.subscribe("telegram")) as events:
            assert await next_event(events) == done
        async with contextlib.aclosing(red.subscribe("telegram")) as events:
            nxt = Cancelled(job_id="j2", request_id="r2", by="u")
            await red.publish("telegram", nxt)
            assert await next_event(events) == nxt


async def test_redis_calls_ride_out_a_restart(redis_server) -> None:
    """A call made while Redis is down is retried until it is back, not raised."""
    async with RedisStore(redis_server.url, retry_for_s=20) as red:
        await red.enqueue(make_record())
        redis_server.stop()
        depth = asyncio.create_task(red.depth())
        await asyncio.sleep(0.3)
        assert not depth.done()
        await asyncio.to_thread(redis_server.start)
        assert await depth == 1


async def test_redis_rate_log_is_one_expiring_key_that_survives_a_restart(redis_server) -> None:
    async with RedisStore(redis_server.url, prefix="p:", retry_for_s=10) as red:
        assert await red.enqueue(make_record(), rate=RateRule("submit:u1", 2, 30))
        assert 0 < await red.redis.pttl("p:rate:submit:u1") <= 30_000
        assert await red.redis.zcard("p:rate:submit:u1") == 1
    await asyncio.to_thread(redis_server.restart)  # AOF: the hit survives (and the script is reloaded)
    async with RedisStore(redis_server.url, prefix="p:", retry_for_s=10) as red:
        assert await red.enqueue(make_record(), rate=RateRule("submit:u1", 2, 30))
        with pytest.raises(LimitExceeded):
            await red.enqueue(make_record(), rate=RateRule("submit:u1", 2, 30))


async def test_memory_claims_stay_bounded() -> None:
    """Every button press leaves a claim; the embedded store drops the expired ones."""
    async with MemoryStore() as mem:
        for i in range(3 * CLAIMS_SWEEP_AT):
            assert await mem.claim_once(f"press:{i}", 0)  # expired at once
        assert len(mem._claims) <= CLAIMS_SWEEP_AT
        assert await mem.claim_once("live", 60) and not await mem.claim_once("live", 60)


async def test_memory_backend_forgets_old_finished_jobs() -> None:
    """The embedded backend stays bounded in a process that runs for months."""
    async with MemoryStore(keep_finished=3) as mem:
        records = [make_record() for _ in range(5)]
        for rec in records:
            await mem.enqueue(rec)
            await mem.take("w", 1.0)
            rec.state = JobState.SUCCEEDED
            await mem.finish(rec, Succeeded(job_id=rec.job_id, request_id="r", images=[], duration_ms=1))
            await mem.mark_delivered(rec.job_id)
        assert [await mem.get(r.job_id) is None for r in records] == [True, True, False, False, False]
        assert [r.job_id for r in await mem.recent("u1", 10)] == [r.job_id for r in reversed(records[2:])]


class ReplyDropper:
    """A TCP proxy to Redis that loses the reply to the first request containing ``marker``: the request
    reaches Redis and runs, then the client's connection is closed, as when a network blip eats a reply."""

    def __init__(self, target_port: int, marker: bytes) -> None:
        self.target_port = target_port
        self.marker = marker
        self.dropped = 0
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> ReplyDropper:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _client(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        s_reader, s_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        drop = asyncio.Event()

        async def upstream() -> None:
            while data := await c_reader.read(65536):
                s_writer.write(data)
                await s_writer.drain()
                if self.marker in data and not self.dropped:
                    self.dropped += 1
                    drop.set()

        async def downstream() -> None:
            while data := await s_reader.read(65536):
                if drop.is_set():
                    return
                c_writer.write(data)
                await c_writer.drain()

        tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for writer in (c_writer, s_writer):
            writer.close()


async def test_redis_take_retried_after_a_lost_reply_still_takes_the_job(redis_server) -> None:
    """The take script ran (the job left the waiting set) but its reply was lost: the retry must hand
    over the same job, not acknowledge its stream entry as if the job had been cancelled."""
    rec = make_record()
    take_sha = hashlib.sha1(redis_scripts.TAKE.encode()).hexdigest().encode()
    direct = Redis.from_url(redis_server.url)
    assert (await direct.script_load(redis_scripts.TAKE)).encode() == take_sha  # no NOSCRIPT round first
    await direct.aclose()
    async with (
        ReplyDropper(redis_server.port, take_sha) as proxy,
        RedisStore(proxy.url, retry_for_s=10) as red,
    ):
        await red.enqueue(rec)
        taken = await red.take("w1", 1.0)
        assert proxy.dropped == 1
        assert taken is not None and taken.job_id == rec.job_id
        assert await red.depth() == 0
