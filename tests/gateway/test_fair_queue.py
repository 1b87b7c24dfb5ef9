"""Round-robin over users (gateway/fair.py), the same on every store: take order, positions, recovery."""

from __future__ import annotations

from gateway.fair import FairPolicy
from gateway.records import JobRecord
from gateway.store import Store
from tests.gateway.test_store_contract import backend, make_record

__all__ = ["backend"]  # the contract suite's fixture: memory, SQLite and Redis


async def submit(store: Store, *users: str) -> list[JobRecord]:
    records = [make_record(user=user) for user in users]
    for record in records:
        assert await store.enqueue(record) is not None
    return records


async def take_all(store: Store, consumer: str = "w1") -> list[str]:
    taken: list[str] = []
    while (record := await store.take(consumer, 0.05)) is not None:
        taken.append(record.job_id)
    return taken


def ids(records: list[JobRecord], *picks: int) -> list[str]:
    return [records[i].job_id for i in picks]


class TestFairQueue:
    async def test_light_users_go_between_a_backlog_and_its_order_is_kept(self, backend: Store) -> None:
        jobs = await submit(backend, "heavy", "heavy", "heavy", "heavy", "a", "b")
        expected = ids(jobs, 0, 4, 5, 1, 2, 3)
        assert await backend.waiting(10) == expected
        assert await take_all(backend) == expected

    async def test_position_is_the_number_of_jobs_taken_before_plus_one(self, backend: Store) -> None:
        jobs = await submit(backend, "h", "h", "h", "a", "a", "b", "h", "c")
        positions = {job.job_id: await backend.position(job.job_id) for job in jobs}
        order = await take_all(backend)
        assert sorted(order) == sorted(positions)
        assert [positions[job_id] for job_id in order] == list(range(1, len(jobs) + 1))

    async def test_enqueue_reports_the_round_robin_position(self, backend: Store) -> None:
        await submit(backend, "h", "h", "h")
        placed = await backend.enqueue(make_record(user="late"))
        assert placed is not None and (placed.position, placed.depth) == (2, 4)

    async def test_a_user_who_joins_late_is_served_next_turn(self, backend: Store) -> None:
        jobs = await submit(backend, "h", "h", "h", "a")
        assert await backend.take("w1", 1.0) is not None  # h0
        late = await submit(backend, "late")
        assert await backend.position(late[0].job_id) == 2  # after a0, the rest of this turn
        assert await take_all(backend) == [jobs[3].job_id, late[0].job_id, jobs[1].job_id, jobs[2].job_id]

    async def test_a_user_back_after_the_turn_moved_on_waits_one_turn_only(self, backend: Store) -> None:
        jobs = await submit(backend, "h", "h", "h", "a")
        first_turn = [await backend.take("w1", 1.0) for _ in range(2)]  # h0, a0: the turn moves on
        assert [record.job_id if record else None for record in first_turn] == ids(jobs, 0, 3)
        again = await submit(backend, "a")
        assert await take_all(backend) == [jobs[1].job_id, again[0].job_id, jobs[2].job_id]

    async def test_removing_a_queued_job_updates_positions(self, backend: Store) -> None:
        jobs = await submit(backend, "h", "h", "a", "b")  # order h0 a b h1
        assert await backend.position(jobs[1].job_id) == 4
        assert await backend.remove_queued(jobs[2].job_id)
        assert await backend.position(jobs[1].job_id) == 3
        assert await backend.position(jobs[3].job_id) == 2
        assert await take_all(backend) == ids(jobs, 0, 3, 1)

    async def test_weight_gives_a_role_more_jobs_per_turn(self, backend: Store) -> None:
        backend.fair = FairPolicy(weights={"admin": 2})
        jobs = await submit(backend, "admin", "admin", "admin", "admin", "u", "u")
        assert await take_all(backend) == ids(jobs, 0, 1, 4, 2, 3, 5)

    async def test_fifo_order_keeps_arrival(self, backend: Store) -> None:
        backend.fair = FairPolicy(order="fifo")
        jobs = await submit(backend, "h", "h", "a")
        assert await backend.position(jobs[2].job_id) == 3
        assert await take_all(backend) == ids(jobs, 0, 1, 2)

    async def test_a_killed_workers_job_is_recovered_and_the_order_goes_on(self, backend: Store) -> None:
        jobs = await submit(backend, "h", "h", "a")
        taken = await backend.take("dead-worker", 1.0)
        assert taken is not None and taken.job_id == jobs[0].job_id
        claimed = await backend.claim_stale("w2", 0.0)
        assert [record.job_id for record in claimed] == [jobs[0].job_id]
        assert await backend.claim_stale("w3", 30.0) == []  # the claim renewed it
        assert await take_all(backend, "w2") == ids(jobs, 2, 1)
        await backend.ack(jobs[0].job_id)
        reclaimed = await backend.claim_stale("w3", 0.0)  # w2's other two, not the acked one
        assert sorted(record.job_id for record in reclaimed) == sorted(ids(jobs, 1, 2))
