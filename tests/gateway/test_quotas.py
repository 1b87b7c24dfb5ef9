"""Quotas at the gateway: refused before the enqueue as ``quota_exceeded`` with the time to the reset,
counted once per job under concurrent submits from two processes sharing Redis, given back when another
limit refuses the job."""

from __future__ import annotations

import asyncio
import time

from comfy.workflows import WorkflowRegistry
from gateway.limits import Limits
from gateway.models import FailureCode, Role
from gateway.quotas import QuotaPolicy, usage, window_end
from gateway.redis_store import RedisStore
from gateway.service import Accepted, Gateway, Refused
from gateway.storage import ImageStore
from tests.conftest import RedisServer
from tests.gateway.conftest import harness, request


async def test_quota_counted_once_under_concurrent_submits_over_redis(
    session, registry: WorkflowRegistry, data_dir, redis_server: RedisServer
) -> None:
    limits = Limits(max_pending_per_user=50, rate_count=100, quotas=QuotaPolicy({Role.USER: {"day": 3}}))
    async with (
        harness(
            session, registry, data_dir, backend=RedisStore(redis_server.url), limits=limits, down=True
        ) as h,
        RedisStore(redis_server.url) as other,
    ):
        front = Gateway(other, registry, ImageStore(data_dir), limits=limits)  # a second front end
        results = await asyncio.gather(
            *(gw.submit(request(f"cat {i}", user="heavy")) for i in range(10) for gw in (h.gateway, front))
        )
        for _ in range(2):  # another user has a quota of their own
            assert isinstance(await front.submit(request("light", user="light")), Accepted)
        used = await usage(other)
    accepted = [r for r in results if isinstance(r, Accepted)]
    refused = [r for r in results if isinstance(r, Refused)]
    assert len(accepted) == 3
    assert {r.code for r in refused} == {FailureCode.QUOTA_EXCEEDED} and len(refused) == 17
    day_left = window_end("day", time.time()) - time.time()
    assert all(r.reason == "day" and r.retry_after_s and 0 < r.retry_after_s <= day_left + 1 for r in refused)
    assert used["heavy"] == {"day": 3} and used["light"] == {"day": 2}


async def test_a_job_another_limit_refuses_does_not_spend_quota(session, registry, data_dir) -> None:
    limits = Limits(max_pending_per_user=1, quotas=QuotaPolicy({Role.USER: {"hour": 5}}))
    async with harness(session, registry, data_dir, limits=limits, down=True) as h:
        assert isinstance(await h.gateway.submit(request("one")), Accepted)
        second = await h.gateway.submit(request("two"))
        assert isinstance(second, Refused) and second.code is FailureCode.TOO_MANY_PENDING
        assert await usage(h.backend) == {"u1": {"hour": 1}}
        stats = await h.gateway.stats()
    assert stats.quota_usage == {"u1": {"hour": 1}}
