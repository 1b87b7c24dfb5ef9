"""Fairness of the take order: one user with a backlog and ten users with one job each, FIFO vs fair.

One ``heavy`` user submits ``--heavy`` jobs (50) at once, then ``--light`` users (10) one job each, to 2
fake ComfyUI servers that run one prompt at a time for a fixed ``--run-time`` (a "job length"). Two
arrival patterns: ``spread`` — a light user arrives every ``--every`` job lengths (1) while the backlog
runs, the case the goal is about; ``burst`` — all ten right after the backlog, where no order can do
better than ~5 job lengths for the last of them (10 jobs on 2 servers). Wait = the record's
``started_at − enqueued_at``, in job lengths. Goal (issue 12): the light users' p95 wait ≤ 2 job
lengths under ``fair`` with ``spread`` (FIFO: ~25).

    .venv/bin/python -m bench.fairness [--backend redis|memory|sqlite] [--run-time 0.2]
                                         [--heavy 50] [--light 10] [--every 1]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import datetime
from typing import Any

import aiohttp

from bench.common import (
    backend_factory,
    bench_logging,
    bench_request,
    gateway_rig,
    machine,
    say,
    write_results,
)
from comfy.workflows import load_workflows
from gateway.fair import FairPolicy
from gateway.models import TERMINAL_EVENTS
from gateway.service import Accepted
from gateway.store import Store


def nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


async def one_order(backend: Store, order: str, pattern: str, args: argparse.Namespace) -> dict[str, Any]:
    backend.fair = FairPolicy(order=order)
    registry = load_workflows()
    options = {"run_time_s": args.run_time}
    async with (
        aiohttp.ClientSession() as session,
        gateway_rig(session, registry, backend, servers=2, capacity=1, fake_options=options) as rig,
    ):
        job_ids: dict[str, str] = {}
        start = time.perf_counter()
        for i in range(args.heavy):
            accepted = await rig.gateway.submit(bench_request(i, user="heavy", steps=4))
            assert isinstance(accepted, Accepted)
            job_ids[accepted.job_id] = "heavy"
        for i in range(args.light):
            if pattern == "spread":
                await asyncio.sleep(args.every * args.run_time)  # arrivals over time, by design
            accepted = await rig.gateway.submit(bench_request(args.heavy + i, user=f"light{i}", steps=4))
            assert isinstance(accepted, Accepted)
            job_ids[accepted.job_id] = "light"
        left = set(job_ids)
        while left:
            _, _, event = await asyncio.wait_for(rig.inbox.get(), 120)
            if isinstance(event, TERMINAL_EVENTS):
                left.discard(event.job_id)
        makespan = time.perf_counter() - start
        waits: dict[str, list[float]] = {"heavy": [], "light": []}
        for job_id, user in job_ids.items():
            record = await rig.backend.get(job_id)
            assert record is not None and record.started_at is not None
            waits[user].append((record.started_at - record.enqueued_at) / args.run_time)
    return {
        "order": order,
        "arrivals": pattern,
        "makespan_s": round(makespan, 3),
        **{
            f"{who}_wait_job_lengths": {
                "p50": round(nearest_rank(w, 50), 2),
                "p95": round(nearest_rank(w, 95), 2),
                "max": round(max(w), 2),
            }
            for who, w in waits.items()
        },
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    with bench_logging("fairness"), backend_factory(args.backend) as make_backend:
        for pattern in ("spread", "burst"):
            for order in ("fifo", "fair"):
                row = await one_order(make_backend(), order, pattern, args)
                say(f"{pattern} {order}: light p95 {row['light_wait_job_lengths']['p95']} job lengths")
                rows.append(row)
    return {
        "benchmark": "fairness",
        "at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "backend": args.backend,
        "run_time_s": args.run_time,
        "servers": 2,
        "heavy_jobs": args.heavy,
        "light_users": args.light,
        "light_every_job_lengths": args.every,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default="redis", choices=("memory", "sqlite", "redis"))
    parser.add_argument("--run-time", type=float, default=0.2)
    parser.add_argument("--heavy", type=int, default=50)
    parser.add_argument("--light", type=int, default=10)
    parser.add_argument("--every", type=float, default=1.0, help="job lengths between light arrivals")
    args = parser.parse_args()
    write_results(f"fairness-{args.backend}", asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
