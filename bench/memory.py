"""Memory with 10,000 jobs waiting: RSS of the gateway process, and Redis memory per queued job.

The one fake ComfyUI is busy for an hour with the first two jobs (capacity 2: one running, one waiting
inside ComfyUI), so every later job stays in our queue, as when no server is free. Jobs come from 1,000
users (10 each). The worker, the position notifier and the health checks run as in production; no
subscriber runs (a front end would drain the events; only the first 100 waiting jobs get ``Queued``).

RSS is ``VmRSS`` from ``/proc/self/status`` after ``gc.collect()``, before and after the 10,000
submissions; Redis is ``INFO memory`` ``used_memory`` before/after, divided by the number of jobs.

    .venv/bin/python -m bench.memory [--jobs 10000] [--backends memory,redis] [--name memory]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import time
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
from gateway.redis_store import RedisStore
from gateway.service import Accepted

MIB = 1024 * 1024


def status_kib(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def rss_mib() -> float:
    gc.collect()
    return round(status_kib("VmRSS") / 1024, 1)


async def redis_used(backend: RedisStore) -> int:
    info = await backend.redis.info("memory")
    return int(info["used_memory"])


async def redis_breakdown(backend: RedisStore, job_id: str, user_id: str) -> dict[str, int | None]:
    """``MEMORY USAGE`` of the keys one queued job touches (the shared ones in total)."""
    keys = {
        "job_hash (one job)": backend._key("job", job_id),
        "queue_stream (all)": backend._stream,
        "waiting_zset (all)": backend._waiting_key,
        "user_pending_set (one user)": backend._key("user", user_id, "pending"),
        "user_recent_list (one user)": backend._key("user", user_id, "recent"),
        "events_stream (all)": backend._key("events", "telegram"),
    }
    out: dict[str, int | None] = {}
    for label, key in keys.items():
        usage = await backend.redis.memory_usage(key, samples=0)
        out[label] = None if usage is None else int(usage)
    return out


async def run_backend(kind: str, jobs: int) -> dict[str, Any]:
    registry = load_workflows()
    fake_options = {"run_time_s": 3600.0}
    with backend_factory(kind) as make_backend:
        async with (
            aiohttp.ClientSession() as session,
            gateway_rig(session, registry, make_backend(), fake_options=fake_options, subscribe=False) as rig,
        ):
            # Two jobs occupy the server; then measure the idle baseline.
            for i in range(2):
                await rig.gateway.submit(bench_request(jobs + i, user="occupier"))
            await asyncio.sleep(2.0)
            rss_before = rss_mib()
            redis_before = await redis_used(rig.backend) if isinstance(rig.backend, RedisStore) else None
            started = time.perf_counter()
            first = last = None
            for i in range(jobs):
                req = bench_request(i)
                accepted = await rig.gateway.submit(req)
                if not isinstance(accepted, Accepted):
                    raise RuntimeError(f"refused at {i}: {accepted}")
                first = first or (accepted.job_id, req.user_id)
                last = accepted
                if (i + 1) % 2000 == 0:
                    say(f"memory {kind}: {i + 1}/{jobs}")
            submit_s = time.perf_counter() - started
            await asyncio.sleep(3.0)  # let the position notifier and health checks run
            rss_after = rss_mib()
            depth = await rig.backend.depth()
            row: dict[str, Any] = {
                "backend": kind,
                "jobs": jobs,
                "depth_after": depth,
                "last_position": last and last.position,
                "submit_rate_per_s": round(jobs / submit_s, 1),
                "rss_before_mib": rss_before,
                "rss_after_mib": rss_after,
                "rss_delta_mib": round(rss_after - rss_before, 1),
                "rss_per_job_bytes": round((rss_after - rss_before) * MIB / jobs),
                "rss_peak_mib": round(status_kib("VmHWM") / 1024, 1),
                "maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
            if isinstance(rig.backend, RedisStore) and redis_before is not None and first is not None:
                redis_after = await redis_used(rig.backend)
                row |= {
                    "redis_used_before_bytes": redis_before,
                    "redis_used_after_bytes": redis_after,
                    "redis_per_job_bytes": round((redis_after - redis_before) / jobs),
                    "redis_key_usage_bytes": await redis_breakdown(rig.backend, *first),
                }
    return row


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    for kind in args.backends.split(","):
        say(f"memory: backend {kind}, {args.jobs} jobs")
        rows.append(await run_backend(kind, args.jobs))
        say(f"  -> {rows[-1]}")
    return {
        "benchmark": "memory",
        "machine": machine(),
        "params": {
            "jobs": args.jobs,
            "users": 1000,
            "workflow": "txt2img",
            "capacity": 2,
            "server": "1 FakeComfyUI busy (run_time_s=3600) with 2 other jobs",
            "note": "backends run in order in one process: run one backend per process "
            "(--backends redis --name memory-redis) for a clean RSS baseline",
        },
        "goal": {"rss_after_mib": 200, "redis_per_job_bytes": 2048},
        "results": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--backends", default="memory,redis")
    parser.add_argument("--name", default="memory", help="results file name (bench/results/<name>.json)")
    args = parser.parse_args()
    with bench_logging("memory"):
        data = asyncio.run(main_async(args))
    write_results(args.name, data)


if __name__ == "__main__":
    main()
