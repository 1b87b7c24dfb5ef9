"""The cost of choosing: the queue calls with 10,000 waiting jobs from 1,000 users, FIFO vs fair.

For each store and order: ``--waiting`` jobs (10,000) from ``--users`` users (1,000) are enqueued, then
``--samples`` (300) times each, timed one call at a time: ``enqueue`` of a job of a random user (what
``gateway.submit`` waits for, admission checks included), ``position`` of a random waiting job (what
the position reporter asks per job), and ``take`` + ``ack`` (what a worker does when a slot frees); a
new job is enqueued after each take so the depth stays at the target.

    .venv/bin/python -m bench.choosing [--backends redis,sqlite,memory] [--waiting 10000] [--users 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import datetime
from typing import Any

from bench.common import (
    backend_factory,
    bench_logging,
    bench_request,
    machine,
    percentiles,
    say,
    write_results,
)
from gateway.fair import FairPolicy
from gateway.records import JobRecord
from gateway.store import Store


def job(i: int, users: int) -> JobRecord:
    request = bench_request(i, user=f"u{random.randrange(users)}")
    return JobRecord(request=request, values=dict(request.params))


async def timed(samples: list[float], call: Any) -> Any:
    t0 = time.perf_counter()
    result = await call
    samples.append((time.perf_counter() - t0) * 1000)
    return result


async def one(backend: Store, order: str, args: argparse.Namespace) -> dict[str, Any]:
    backend.fair = FairPolicy(order=order)
    random.seed(12)
    async with backend:
        ids = []
        for i in range(args.waiting):
            record = job(i, args.users)
            await backend.enqueue(record)
            ids.append(record.job_id)
        enqueue_ms: list[float] = []
        position_ms: list[float] = []
        take_ms: list[float] = []
        for n in range(args.samples):
            record = job(args.waiting + n, args.users)
            await timed(enqueue_ms, backend.enqueue(record))
            ids.append(record.job_id)
            await timed(position_ms, backend.position(random.choice(ids[-args.waiting :])))
            taken = await timed(take_ms, backend.take("w1", 1.0))
            assert taken is not None
            await backend.ack(taken.job_id)
        depth = await backend.depth()
    return {
        "order": order,
        "depth": depth,
        "enqueue_ms": percentiles(enqueue_ms),
        "position_ms": percentiles(position_ms),
        "take_ms": percentiles(take_ms),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    with bench_logging("choosing"):
        for kind in args.backends.split(","):
            with backend_factory(kind) as make_backend:
                for order in ("fifo", "fair"):
                    row = {"backend": kind, **await one(make_backend(), order, args)}
                    p50s = {k: row[f"{k}_ms"].get("p50") for k in ("enqueue", "position", "take")}
                    say(f"{kind} {order}: p50 ms {p50s}")
                    rows.append(row)
    return {
        "benchmark": "choosing",
        "at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "waiting": args.waiting,
        "users": args.users,
        "samples": args.samples,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", default="redis,sqlite,memory")
    parser.add_argument("--waiting", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    write_results("choosing", asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
