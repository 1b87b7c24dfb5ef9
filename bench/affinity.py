"""Model-affinity routing vs least busy: 3 checkpoints over 4 servers whose fake GPUs charge a load time.

``--jobs`` txt2img jobs (72) choose one of three checkpoints through the workflow's ``checkpoint``
param in a ``--mix`` (2:1:1), shuffled with a fixed ``--seed``, and are all submitted at once (a
backlog, so the scheduler always has a choice) to 4 fake ComfyUI servers of capacity 1. A prompt runs
``--run-time`` (0.5 s); a prompt whose checkpoint differs from the one its server loaded last pays
``--load-time`` (2 s) first (``FakeComfyUI(load_time_s=...)``). Real GPUs: 5–30 s loads and 5–30 s
jobs; the times are scaled down so a run takes seconds, keeping a load = 4 job lengths.

Two modes over the same job order: ``affinity`` (``WorkerOptions(affinity_wait_s=--wait)``, what
``COMFYBOT_AFFINITY_WAIT_S`` sets in production) and ``least_busy`` (``WorkerOptions(affinity=False)``).

* loads: the fakes' ``model_loads``; the minimum is ``max(checkpoints, servers)`` = 4 — every checkpoint
  loaded once, and every server that does any work loads once (with 3 loads a server stays idle).
* makespan: first submit → last terminal event; ``ideal_makespan_s`` = (jobs × run + minimum loads ×
  load) / servers, a lower bound (reached here: 2:1:1 splits evenly over 4 servers).
* useful = the fakes' execution time minus loads × load time. ``useful_of_capacity`` = useful / (servers ×
  makespan); ``useful_of_busy`` = useful / execution time (idle excluded, every load counted);
  ``useful_of_avoidable`` = useful / (servers × makespan − minimum loads × load): the share of the server
  time left after the unavoidable first loads that ran jobs (idle GPUs and extra loads both count
  against it) — the issue's "utilization of useful work" goal (≥ 98 %) is judged on this one.
* wait: the record's ``started_at − enqueued_at``, seconds (p50/p95, nearest rank).

    .venv/bin/python -m bench.affinity [--backend redis|memory|sqlite] [--jobs 72] [--mix 2:1:1]
                                       [--run-time 0.5] [--load-time 2] [--wait 1] [--seed 12]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from dataclasses import replace
from datetime import datetime
from typing import Any

import aiohttp

from bench.common import (
    BENCH_OPTIONS,
    backend_factory,
    bench_logging,
    gateway_rig,
    machine,
    say,
    write_results,
)
from bench.fairness import nearest_rank
from comfy.workflows import load_workflows
from gateway.models import TERMINAL_EVENTS, JobRequest, Succeeded
from gateway.service import Accepted
from gateway.store import Store

MODELS = ("model-a.safetensors", "model-b.safetensors", "model-c.safetensors")
SERVERS = 4


def job_order(jobs: int, mix: list[int], seed: int) -> list[str]:
    """``jobs`` checkpoint names in the ``mix`` ratio (rounded down, the rest to the first), shuffled."""
    counts = [jobs * m // sum(mix) for m in mix]
    counts[0] += jobs - sum(counts)
    order = [name for name, n in zip(MODELS, counts, strict=True) for _ in range(n)]
    random.Random(seed).shuffle(order)
    return order


def request(i: int, checkpoint: str) -> JobRequest:
    return JobRequest(
        platform="telegram",
        user_id=f"u{i}",
        chat_id="c1",
        workflow="txt2img",
        params={"prompt": f"a lighthouse, variation {i}", "steps": 4, "seed": i, "checkpoint": checkpoint},
        reply_to={"chat_id": 1, "message_id": i},
    )


async def one_mode(backend: Store, mode: str, order: list[str], args: argparse.Namespace) -> dict[str, Any]:
    options = replace(BENCH_OPTIONS, affinity=mode == "affinity", affinity_wait_s=args.wait)
    fake_options = {"run_time_s": args.run_time, "load_time_s": args.load_time, "checkpoints": MODELS}
    async with (
        aiohttp.ClientSession() as session,
        gateway_rig(
            session,
            load_workflows(),
            backend,
            servers=SERVERS,
            capacity=1,
            fake_options=fake_options,
            options=options,
        ) as rig,
    ):
        job_ids: set[str] = set()
        start = time.perf_counter()
        for i, checkpoint in enumerate(order):
            accepted = await rig.gateway.submit(request(i, checkpoint))
            assert isinstance(accepted, Accepted)
            job_ids.add(accepted.job_id)
        left, failed = set(job_ids), 0
        while left:
            _, _, event = await asyncio.wait_for(rig.inbox.get(), 300)
            if isinstance(event, TERMINAL_EVENTS) and event.job_id in left:
                left.discard(event.job_id)
                failed += not isinstance(event, Succeeded)
        makespan = time.perf_counter() - start
        waits = []
        for job_id in job_ids:
            record = await rig.backend.get(job_id)
            assert record is not None and record.started_at is not None
            waits.append(record.started_at - record.enqueued_at)
        loads = [[name for _, name in fake.model_loads] for fake in rig.fakes]
        busy = sum(fake.busy_s for fake in rig.fakes)
        jobs_per_server = [len(fake.done) for fake in rig.fakes]
    n_loads = sum(len(s) for s in loads)
    useful = busy - n_loads * args.load_time
    min_loads = max(len(set(order)), SERVERS)
    return {
        "mode": mode,
        "failed": failed,
        "model_loads": n_loads,
        "min_loads": min_loads,
        "loads_vs_min": round(n_loads / min_loads, 3),
        "loads_per_server": loads,
        "jobs_per_server": jobs_per_server,
        "makespan_s": round(makespan, 3),
        "ideal_makespan_s": round((len(order) * args.run_time + min_loads * args.load_time) / SERVERS, 3),
        "useful_s": round(useful, 3),
        "load_s": round(n_loads * args.load_time, 3),
        "busy_s": round(busy, 3),
        "useful_of_capacity": round(useful / (SERVERS * makespan), 4),
        "useful_of_busy": round(useful / busy, 4),
        "useful_of_avoidable": round(useful / (SERVERS * makespan - min_loads * args.load_time), 4),
        "wait_s": {
            "p50": round(nearest_rank(waits, 50), 3),
            "p95": round(nearest_rank(waits, 95), 3),
            "max": round(max(waits), 3),
        },
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    mix = [int(x) for x in args.mix.split(":")]
    order = job_order(args.jobs, mix, args.seed)
    rows = []
    with bench_logging("affinity"), backend_factory(args.backend) as make_backend:
        for mode in ("least_busy", "affinity"):
            row = await one_mode(make_backend(), mode, order, args)
            say(
                f"{mode}: {row['model_loads']} loads (min {row['min_loads']}), "
                f"makespan {row['makespan_s']} s "
                f"(ideal {row['ideal_makespan_s']}), useful/avoidable {row['useful_of_avoidable']:.1%}, "
                f"wait p50 {row['wait_s']['p50']} p95 {row['wait_s']['p95']} s"
            )
            rows.append(row)
    return {
        "benchmark": "affinity",
        "at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "backend": args.backend,
        "servers": SERVERS,
        "capacity": 1,
        "jobs": args.jobs,
        "mix": args.mix,
        "checkpoints": {name: order.count(name) for name in MODELS},
        "seed": args.seed,
        "run_time_s": args.run_time,
        "load_time_s": args.load_time,
        "affinity_wait_s": args.wait,
        "first_jobs": order[:8],
        "rows": rows,
    }


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--backend", default="redis", choices=("memory", "sqlite", "redis"))
    parser.add_argument("--jobs", type=int, default=72)
    parser.add_argument("--mix", default="2:1:1", help="ratio of the three checkpoints")
    parser.add_argument("--run-time", type=float, default=0.5)
    parser.add_argument("--load-time", type=float, default=2.0)
    parser.add_argument("--wait", type=float, default=1.0, help="COMFYBOT_AFFINITY_WAIT_S")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--name", default="affinity")
    args = parser.parse_args()
    write_results(args.name, asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
