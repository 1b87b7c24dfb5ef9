"""The embedded SQLite store keeps everything through a SIGKILL of its process, and owns its file alone."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.models import Cancelled, JobRequest, JobState, Progress, Succeeded
from gateway.records import JobRecord
from gateway.sqlite_schema import StoreLocked, purge
from gateway.sqlite_store import SqliteStore
from gateway.store import RECORD_TTL_S

# The process that is killed: it queues two jobs, runs one, finishes a third (its outcome not shown yet),
# and keeps settings, a view, a delivery marker, a run time and a cancel request; then it waits for the kill.
CHILD = """
import asyncio, sys
from gateway.models import JobRequest, JobState, Succeeded
from gateway.records import JobRecord
from gateway.sqlite_store import SqliteStore

def record(n):
    req = JobRequest(platform="telegram", user_id="alice", chat_id="c", workflow="txt2img",
                     params={"prompt": f"job {n}"}, request_id=f"r{n}")
    return JobRecord(request=req, job_id=f"j{n}", values={"prompt": f"job {n}"})

async def main():
    store = SqliteStore(sys.argv[1])
    await store.start()
    for n in (1, 2, 3):
        await store.enqueue(record(n))
    running = await store.take("worker-a", 1.0)
    running.state = JobState.RUNNING
    running.prompt_id = "p-1"
    await store.save(running)
    done = await store.take("worker-a", 1.0)
    done.state = JobState.SUCCEEDED
    await store.finish(done, Succeeded(job_id="j2", request_id="r2", images=[], duration_ms=7))
    await store.set_settings("telegram:alice", {"ar": "16:9"})
    await store.set_view("j1", {"chat_id": 5, "message_id": 9})
    await store.mark_delivered("j0")
    await store.add_duration("txt2img", 1234)
    await store.request_cancel("j3", "alice")
    print("ready", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def kill_after_ready(db: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        for line in child.stdout:  # log lines first (structlog's default is stdout)
            if line.strip() == "ready":
                break
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL


def make_record(user: str = "u1") -> JobRecord:
    req = JobRequest(
        platform="telegram", user_id=user, chat_id="c1", workflow="txt2img", params={"prompt": "x"}
    )
    return JobRecord(request=req, values={"prompt": "x"})


async def next_event(events: object) -> object:
    async with asyncio.timeout(5):
        return await anext(events)  # type: ignore[call-overload]


async def test_everything_survives_a_sigkill_of_the_process(tmp_path: Path) -> None:
    db = tmp_path / "comfybot.db"
    await asyncio.to_thread(kill_after_ready, db)
    async with SqliteStore(db) as store:
        assert await store.waiting(10) == ["j3"]
        assert await store.position("j3") == 1
        # The running job's lease belonged to the dead process: claimable at once, not after a lease.
        claimed = await store.claim_stale("worker-b", 30.0)
        assert [(r.job_id, r.state, r.prompt_id) for r in claimed] == [("j1", JobState.RUNNING, "p-1")]
        finished = await store.get("j2")
        assert finished is not None and finished.state is JobState.SUCCEEDED
        assert await store.pending_jobs("alice") == ["j1", "j3"]
        assert [r.job_id for r in await store.recent("alice", 10)] == ["j3", "j2", "j1"]
        assert await store.get_settings("telegram:alice") == {"ar": "16:9"}
        assert await store.get_view("j1") == {"chat_id": 5, "message_id": 9}
        assert await store.delivered("j0") and not await store.delivered("j2")
        assert await store.durations("txt2img") == [1234]
        assert await store.cancel_requested("j3") == "alice"
        assert (await store.outcomes()).get("succeeded") == 1
        async with contextlib.aclosing(store.subscribe("telegram")) as events:
            owed = await next_event(events)
            assert isinstance(owed, Succeeded) and owed.job_id == "j2"  # the outcome no chat has shown
            await store.event_handled("telegram", "j2")
    async with SqliteStore(db) as store, contextlib.aclosing(store.subscribe("telegram")) as events:
        later = Cancelled(job_id="j9", request_id="r9", by="u")
        await store.publish("telegram", later)
        assert await next_event(events) == later  # j2 was shown: not handed out again


async def test_an_owed_outcome_is_read_once_per_process_and_again_after_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "comfybot.db"
    done = Cancelled(job_id="j1", request_id="r1", by="u")
    async with SqliteStore(db) as store:
        await store.publish("telegram", done)
        await store.publish(
            "telegram",
            Progress(job_id="j2", request_id="r2", node_label="Sampling", done_nodes=1, total_nodes=3),
        )
        async with contextlib.aclosing(store.subscribe("telegram")) as events:
            assert await next_event(events) == done
        async with contextlib.aclosing(store.subscribe("telegram")) as events:
            progress = await next_event(events)
            assert isinstance(progress, Progress)  # the outcome is not handed to a second tracker
    async with SqliteStore(db) as store, contextlib.aclosing(store.subscribe("telegram")) as events:
        assert await next_event(events) == done  # never marked handled: owed to the next process
        with pytest.raises(TimeoutError):  # progress lives only as long as its process
            async with asyncio.timeout(0.2):
                await anext(events)


async def test_a_second_process_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "comfybot.db"
    async with SqliteStore(db):
        with pytest.raises(StoreLocked, match="in use by another comfybot process"):
            await SqliteStore(db).start()
    async with SqliteStore(db) as again:  # released on close
        assert await again.depth() == 0


async def test_finished_jobs_are_purged_after_a_week(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "comfybot.db") as store:
        old, young = make_record(), make_record()
        for rec in (old, young):
            await store.enqueue(rec)
            await store.take("w", 1.0)
        old.state = JobState.SUCCEEDED
        await store.finish(old, Succeeded(job_id=old.job_id, request_id="r", images=[], duration_ms=1))
        await store.set_view(old.job_id, {"m": 1})
        await store.mark_delivered(old.job_id)
        await store.event_handled("telegram", old.job_id)
        await store.set_view(young.job_id, {"m": 2})
        purge(store.db, time.time() + RECORD_TTL_S + 1)
        assert await store.get(old.job_id) is None
        assert await store.get_view(old.job_id) is None and not await store.delivered(old.job_id)
        assert await store.get(young.job_id) is not None  # still running: never purged
        assert await store.get_view(young.job_id) == {"m": 2}
