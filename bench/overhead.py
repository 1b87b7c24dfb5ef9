"""Gateway overhead on an idle server: ``gateway.submit(req)`` → the fake ComfyUI receiving ``POST /prompt``.

N jobs run one after another against one idle fake ComfyUI in the same event loop, for the memory, SQLite and
Redis stores (and ``redis-s3``: Redis with inputs and outputs in an S3 bucket, a moto server started
here): each is submitted when the previous job's terminal event reached the subscriber (its tail
of acknowledgements still runs then), or ``--gap-ms`` later, when the whole process has been idle for a
while (on this VM an idle vCPU then has to wake up on every hop, which costs more than the tail did).
Also measured, per job:

* ``submit_call``: how long ``await gateway.submit(req)`` takes (what a front end waits for);
* ``submit_to_queued_event``: submit → a ``Queued`` event delivered to the subscriber (if one comes);
* ``succeeded_to_delivered``: the ``Succeeded`` event's creation (``event.at``) → the subscriber has it;
* ``comfy_done_to_delivered``: the fake finished executing → the subscriber has ``Succeeded`` (the tail:
  ``/history``, ``/view`` download, storing the image, the terminal write, delivery).

    .venv/bin/python -m bench.overhead [--jobs 500] [--backends memory,redis,redis-s3] [--quick]
                                       [--log-level INFO] [--gap-ms 0]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.common import (
    Rig,
    backend_factory,
    bench_logging,
    bench_request,
    gateway_rig,
    machine,
    percentiles,
    say,
    write_results,
)
from comfy.workflows import load_workflows
from gateway.blobs import Blobs, RedisBlobs, S3Blobs, SplitBlobs
from gateway.models import TERMINAL_EVENTS, Queued, Succeeded
from gateway.redis_store import RedisStore
from gateway.s3 import Credentials, S3Client
from gateway.service import Accepted
from gateway.store import Store
from tests.conftest import S3Server, free_port

WARMUP = 10


STAGES = ("job_enqueued", "job_dequeued", "server_chosen", "workflow_rendered", "comfyui_prompt_sent")


def stage_breakdown(log_dir: Path, request_ids: set[str]) -> dict[str, Any]:
    """Where submit → POST goes, from the gateway's own log lines (their timestamps, µs) for these jobs:
    ``job_enqueued`` (end of submit) → ``job_dequeued`` (worker took it) → ``server_chosen`` →
    ``workflow_rendered`` → ``comfyui_prompt_sent`` (after the record save and the POST's answer)."""
    seen: dict[str, dict[str, float]] = {}
    for path in sorted(log_dir.glob("*.log*")):
        for line in path.read_bytes().splitlines():
            entry = orjson.loads(line)
            rid = entry.get("request_id")
            if rid in request_ids and entry.get("event") in STAGES:
                at = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()
                seen.setdefault(rid, {}).setdefault(entry["event"], at)
    out: dict[str, Any] = {}
    for a, b in itertools.pairwise(STAGES):
        deltas = [(t[b] - t[a]) * 1000 for t in seen.values() if a in t and b in t]
        out[f"{a}->{b}"] = percentiles(deltas)
    return out


async def one_job(rig: Rig, i: int, gap_s: float) -> dict[str, float | None]:
    """Submit job ``i`` once the gateway is idle, wait for its terminal event; its timings in ms."""
    if gap_s > 0:
        await asyncio.sleep(gap_s)  # the previous job's tail (acks, the position pass) ends meanwhile
    req = bench_request(i, user="bench")
    t0 = time.perf_counter()
    accepted = await rig.gateway.submit(req)
    t_accepted = time.perf_counter()
    if not isinstance(accepted, Accepted):
        raise RuntimeError(f"refused: {accepted}")
    queued_at: float | None = None
    while True:
        delivered, delivered_wall, event = await asyncio.wait_for(rig.inbox.get(), 30)
        if event.job_id != accepted.job_id:
            continue
        if isinstance(event, Queued) and queued_at is None:
            queued_at = delivered
        if isinstance(event, TERMINAL_EVENTS):
            break
    if not isinstance(event, Succeeded):
        raise RuntimeError(f"job {i} ended {event.kind}: {event}")
    record = await rig.gateway.get_job(accepted.job_id)
    assert record is not None and record.prompt_id is not None
    fake = rig.fakes[0]
    rig.request_ids.add(req.request_id)
    return {
        "submit_to_post": (fake.posted[record.prompt_id] - t0) * 1000,
        "submit_call": (t_accepted - t0) * 1000,
        "submit_to_queued_event": None if queued_at is None else (queued_at - t0) * 1000,
        "succeeded_to_delivered": (delivered_wall - event.at) * 1000,
        "comfy_done_to_delivered": (delivered - fake.done[record.prompt_id]) * 1000,
    }


@contextmanager
def s3_bucket(kind: str) -> Iterator[S3Server | None]:
    """For ``redis-s3``: a moto S3 server with one bucket for the run; else nothing."""
    if kind != "redis-s3":
        yield None
        return
    srv = S3Server(port=free_port())
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def bucket_blobs(srv: S3Server, session: aiohttp.ClientSession) -> Callable[[Store], Blobs | None]:
    """Where ``gateway/app.py`` shares images with a bucket configured: inputs and outputs in it, previews
    in Redis."""
    creds = Credentials(srv.access_key_id, srv.secret_access_key)
    client = S3Client(session, srv.url, srv.bucket, creds, region=srv.region)

    def build(store: Store) -> Blobs | None:
        assert isinstance(store, RedisStore)
        return SplitBlobs(S3Blobs(client), RedisBlobs(store))

    return build


def s3_bytes(srv: S3Server) -> dict[str, int]:
    """Objects and bytes in the bucket (``ListObjectsV2``, through boto3 from the dev extras)."""
    import boto3  # type: ignore[import-untyped]  # noqa: PLC0415 - dev extra, only here

    client = boto3.client(
        "s3",
        endpoint_url=srv.url,
        region_name=srv.region,
        aws_access_key_id=srv.access_key_id,
        aws_secret_access_key=srv.secret_access_key,
    )
    out = {"objects": 0, "bytes": 0}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=srv.bucket):
        for obj in page.get("Contents", []):
            out["objects"] += 1
            out["bytes"] += int(obj["Size"])
    return out


async def run_backend(kind: str, jobs: int, appendfsync: str, log_dir: Path, gap_s: float) -> dict[str, Any]:
    registry = load_workflows()
    store_kind = "redis" if kind == "redis-s3" else kind
    with backend_factory(store_kind, appendfsync) as make_backend, s3_bucket(kind) as bucket:
        async with (
            aiohttp.ClientSession() as session,
            gateway_rig(
                session,
                registry,
                make_backend(),
                fake_options={"node_delay_s": 0.001, "step_delay_s": 0.001},
                shared=None if bucket is None else bucket_blobs(bucket, session),
            ) as rig,
        ):
            for i in range(WARMUP):
                await one_job(rig, 1_000_000 + i, gap_s)
            rig.request_ids.clear()
            rows = []
            started = time.perf_counter()
            for i in range(jobs):
                rows.append(await one_job(rig, i, gap_s))
                if (i + 1) % 100 == 0:
                    say(f"overhead {kind}: {i + 1}/{jobs}")
            elapsed = time.perf_counter() - started
            request_ids = set(rig.request_ids)
            kept = await redis_bytes(rig.backend) if isinstance(rig.backend, RedisStore) else None
            in_bucket = None if bucket is None else await asyncio.to_thread(s3_bytes, bucket)
    metrics: dict[str, Any] = {}
    for name in rows[0]:
        values = [r[name] for r in rows if r[name] is not None]
        metrics[name] = percentiles([v for v in values if v is not None])
        metrics[name]["jobs_with_value"] = len(values)
    stages = stage_breakdown(log_dir, request_ids)
    return {
        "backend": kind,
        "jobs": jobs,
        "elapsed_s": round(elapsed, 2),
        "metrics_ms": metrics,
        "stages_ms_from_logs": stages,
        **(
            {}
            if kept is None
            else {"redis_bytes_after_run": kept, "redis_bytes_per_job": per_job(kept, jobs)}
        ),
        **(
            {}
            if in_bucket is None
            else {
                "s3_after_run": in_bucket,
                "s3_per_job": per_job(in_bucket, jobs),
            }
        ),
    }


async def redis_bytes(store: RedisStore) -> dict[str, int]:
    """What the finished jobs leave in Redis (``MEMORY USAGE`` per key, by kind) until their TTLs end:
    ``blob`` the shared images (``blob_outputs``, ``blob_previews``, ``blob_inputs`` by kind), ``job`` the
    records, ``events`` the channel stream, ``other`` the rest."""
    kinds: dict[str, int] = {"blob": 0, "job": 0, "events": 0, "other": 0, "keys": 0}
    async for key in store.redis.scan_iter(match=f"{store.prefix}*", count=1000):
        name = key.decode()[len(store.prefix) :]
        kind, _, rest = name.partition(":")
        size = int(await store.redis.memory_usage(key) or 0)
        kinds[kind if kind in kinds else "other"] += size
        if kind == "blob":  # blob_outputs, blob_previews, blob_inputs
            sub = "blob_" + rest.split("/", 1)[0]
            kinds[sub] = kinds.get(sub, 0) + size
        kinds["keys"] += 1
    return kinds


def per_job(kept: dict[str, int], jobs: int) -> dict[str, float]:
    total = jobs + WARMUP
    return {kind: round(count / total, 1) for kind, count in kept.items() if kind != "keys"}


async def main_async(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    results = []
    for kind in args.backends.split(","):
        say(f"overhead: backend {kind}, {args.jobs} jobs")
        results.append(await run_backend(kind, args.jobs, args.appendfsync, log_dir, args.gap_ms / 1000))
    return {
        "benchmark": "overhead",
        "machine": machine(),
        "params": {
            "jobs": args.jobs,
            "warmup": WARMUP,
            "redis_appendfsync": args.appendfsync,
            "gap_ms": args.gap_ms,
            "fake": "1 idle FakeComfyUI in-loop, node_delay_s=0.001, step_delay_s=0.001, 20 steps",
            "logging": f"JSON lines to a file (core.logs), level {args.log_level}",
        },
        "goal": {"submit_to_post_p50_ms": 5.0},
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--backends", default="memory,sqlite,redis")
    parser.add_argument("--appendfsync", default="everysec", choices=["always", "everysec", "no"])
    parser.add_argument("--quick", action="store_true", help="50 jobs per backend")
    parser.add_argument(
        "--gap-ms",
        type=float,
        default=0.0,
        help="idle time before each submit after the last job's end (default: none)",
    )
    parser.add_argument("--log-level", default="INFO", help="WARNING: what the log lines cost")
    parser.add_argument("--name", default=None, help="results file name (default overhead[-quick])")
    args = parser.parse_args()
    if args.quick:
        args.jobs = 50
    with bench_logging("overhead", args.log_level) as log_dir:
        data = asyncio.run(main_async(args, log_dir))
    write_results(args.name or ("overhead-quick" if args.quick else "overhead"), data)


if __name__ == "__main__":
    main()
