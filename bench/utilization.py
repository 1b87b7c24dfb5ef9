"""Throughput against fake ComfyUI servers with a fixed run time per prompt, ours vs a naive sequential bot.

For each run time (0.5 s, 2 s) and server count (1, 4): ``--jobs`` jobs (200) with realistic ~1.5 MB PNG
outputs. Ideal makespan = jobs × run_time / servers; utilization = ideal / actual makespan, where the
makespan runs from the first submit to the last result in the user's hands (ours: the ``Succeeded``
event delivered to the subscriber, images stored; naive: the last image written to disk).
``fake_busy`` is the fraction of the makespan the fake GPUs spent executing prompts. ``where`` splits the
gap between the makespan and the ideal on the server that finished last (see :func:`where_time_went`).

    .venv/bin/python -m bench.utilization [--quick] [--jobs 200] [--run-times 0.5,2] [--servers 1,4]
                                          [--modes ours,naive] [--backend memory|redis]
                                          [--link-mbps 100 --rtt-ms 5] [--name utilization-100mbit]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.common import (
    RESULTS_DIR,
    LoopStalls,
    backend_factory,
    bench_logging,
    bench_request,
    gateway_rig,
    machine,
    percentiles,
    say,
    write_results,
)
from bench.naive import run_naive
from comfy.workflows import WorkflowRegistry, load_workflows
from gateway.models import TERMINAL_EVENTS, Succeeded
from gateway.service import Accepted

STEPS = 20


@dataclass(frozen=True)
class Link:
    """The (simulated) network between the gateway and ComfyUI; ``mbps=None``: plain localhost."""

    mbps: float | None = None
    rtt_ms: float = 0.0

    @property
    def label(self) -> str:
        if self.mbps is None and not self.rtt_ms:
            return "localhost"
        return f"{self.mbps} Mbit/s, {self.rtt_ms} ms"


def _row(
    mode: str,
    run_time: float,
    servers: int,
    jobs: int,
    start: float,
    end: float,
    stats: list[dict[str, Any]],
    ok: int,
    stalls: LoopStalls,
) -> dict[str, Any]:
    ideal = jobs * run_time / servers
    makespan = end - start
    busy = sum(float(s["busy_s"]) for s in stats)
    where = where_time_went(stats, run_time, jobs, start, end)
    return {
        "mode": mode,
        "run_time_s": run_time,
        "servers": servers,
        "jobs": jobs,
        "succeeded": ok,
        "ideal_s": round(ideal, 2),
        "makespan_s": round(makespan, 2),
        "utilization": round(ideal / makespan, 4),
        "fake_busy": round(busy / (servers * makespan), 4),
        "jobs_per_min": round(jobs / makespan * 60, 2),
        "exec_per_prompt_s": where.pop("exec_per_prompt_s"),
        "where": where,
        # [seconds after the first submit, seconds late] of each blocked moment of either event loop
        "loop_stalls": {
            "client": stalls.between(start, end),
            "fakes": [
                [round(at - start, 4), round(late, 4)]
                for at, late in stats[0]["loop_stalls"]
                if start <= at <= end
            ],
        },
    }


def _server_runs(stat: dict[str, Any], start: float) -> dict[str, Any]:
    """One server's executed prompts in order, the idle gaps between them, and its first POST."""
    runs = sorted(
        (m for m in stat["timeline"].values() if "started" in m and "ended" in m),
        key=lambda m: m["started"],
    )
    posts = (m["posted"] for m in stat["timeline"].values() if "posted" in m)
    return {
        "runs": runs,
        "gaps": [b["started"] - a["ended"] for a, b in itertools.pairwise(runs)],
        "first_post": min(posts, default=start),
    }


def where_time_went(
    stats: list[dict[str, Any]], run_time: float, jobs: int, start: float, end: float
) -> dict[str, Any]:
    """The makespan of the server that finished executing last, cut into what adds up to it exactly::

        makespan = head + n × run_time + overrun + gaps + tail
        makespan − ideal = head + overrun + gaps + tail + imbalance
        imbalance = (n − jobs/servers) × run_time

    head: first submit → its first prompt starts executing; overrun: its prompts' execution beyond
    ``run_time`` each; gaps: idle between one prompt ending and the next starting; tail: its last prompt
    ended → the last result is in the user's hands (``tail_detail``: when that prompt's history and image
    were asked for, from its end). Seconds; ``perf_counter`` is one clock across processes on Linux."""
    servers = [_server_runs(stat, start) for stat in stats]
    executions = [m["ended"] - m["started"] for srv in servers for m in srv["runs"]]
    last = max(servers, key=lambda srv: srv["runs"][-1]["ended"])
    runs, gaps = last["runs"], last["gaps"]
    final = runs[-1]
    n = len(runs)
    parts = {
        "head_s": runs[0]["started"] - start,
        "overrun_s": sum(m["ended"] - m["started"] for m in runs) - n * run_time,
        "gaps_s": sum(gaps),
        "tail_s": end - final["ended"],
        "imbalance_s": (n - jobs / len(servers)) * run_time,
    }
    ms = 1000.0
    return {
        "exec_per_prompt_s": round(sum(executions) / len(executions), 5),
        "exec_max_s": round(max(executions), 5),
        "last_server": {
            "prompts": n,
            **{k: round(v, 4) for k, v in parts.items()},
            "gap_mean_ms": round(sum(gaps) / len(gaps) * ms, 3) if gaps else 0.0,
            "gap_max_ms": round(max(gaps) * ms, 3) if gaps else 0.0,
        },
        "head_detail_ms": {
            "first_post": round((min(s["first_post"] for s in servers) - start) * ms, 3),
            "first_post_on_last_server": round((last["first_post"] - start) * ms, 3),
        },
        "tail_detail_ms": {
            k: round((final[k] - final["ended"]) * ms, 3) for k in ("done", "history", "view") if k in final
        }
        | {"delivered": round(parts["tail_s"] * ms, 3)},
        "prompts_per_server": [len(s["runs"]) for s in servers],
    }


@asynccontextmanager
async def remote_fakes(servers: int, run_time: float, link: Link) -> AsyncIterator[list[str]]:
    """``servers`` fake ComfyUIs in a child process (``bench.fakeserver``); yields their URLs."""
    extra = [] if link.mbps is None else ["--link-mbps", str(link.mbps)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.fakeserver",
        "--servers",
        str(servers),
        "--run-time",
        str(run_time),
        "--realistic",
        "--rtt-ms",
        str(link.rtt_ms),
        *extra,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        yield list(orjson.loads(line)["urls"])
    finally:
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def store_times(log_dir: Path, job_ids: set[str], wall_start: float) -> dict[str, Any]:
    """From the gateway's own log: each job's ``image_retrieved`` → ``image_stored`` (hash and fsync'd write).

    The worker holds the job's ComfyUI slot until its image is stored, so a store slower than the next
    prompt's run time leaves the server idle; ``slow`` lists ``[seconds after the first submit, ms]``."""
    retrieved: dict[str, float] = {}
    spans: list[tuple[float, float]] = []
    for path in sorted(log_dir.glob("*.log*")):
        for line in path.read_bytes().splitlines():
            rec = orjson.loads(line)
            job_id = rec.get("job_id")
            if job_id not in job_ids or rec.get("event") not in ("image_retrieved", "image_stored"):
                continue
            at = datetime.fromisoformat(rec["timestamp"]).timestamp()
            if rec["event"] == "image_retrieved":
                retrieved[job_id] = at
            elif job_id in retrieved:
                spans.append((retrieved[job_id] - wall_start, (at - retrieved.pop(job_id)) * 1000))
    return {
        "store_ms": percentiles([ms for _, ms in spans]),
        "slow": [[round(at, 3), round(ms, 1)] for at, ms in sorted(spans) if ms > 50],
    }


async def fake_stats(session: aiohttp.ClientSession, urls: list[str]) -> list[dict[str, Any]]:
    """Each fake's ``/bench/stats``: seconds executing and every prompt's moments."""
    stats = []
    for url in urls:
        async with session.get(f"{url}/bench/stats") as r:
            stats.append(await r.json())
    return stats


async def run_ours(
    registry: WorkflowRegistry, kind: str, run_time: float, servers: int, jobs: int, link: Link, log_dir: Path
) -> dict[str, Any]:
    with backend_factory(kind) as make_backend:
        async with (
            LoopStalls().watching() as stalls,
            remote_fakes(servers, run_time, link) as urls,
            aiohttp.ClientSession() as session,
            gateway_rig(session, registry, make_backend(), urls=urls) as rig,
        ):
            start, wall_start = time.perf_counter(), time.time()
            pending: set[str] = set()
            for i in range(jobs):
                accepted = await rig.gateway.submit(bench_request(i, steps=STEPS))
                if not isinstance(accepted, Accepted):
                    raise RuntimeError(f"refused: {accepted}")
                pending.add(accepted.job_id)
            job_ids, submitted = set(pending), time.perf_counter()
            ok = 0
            last = start
            while pending:
                delivered, _, event = await asyncio.wait_for(rig.inbox.get(), 60 + 4 * run_time)
                if isinstance(event, TERMINAL_EVENTS) and event.job_id in pending:
                    pending.discard(event.job_id)
                    ok += isinstance(event, Succeeded)
                    last = delivered
            stats = await fake_stats(session, urls)
    row = _row(f"ours ({kind})", run_time, servers, jobs, start, last, stats, ok, stalls)
    row["store"] = store_times(log_dir, job_ids, wall_start)
    row["where"]["head_detail_ms"]["all_submitted"] = round((submitted - start) * 1000, 3)
    return row


async def run_naive_config(
    registry: WorkflowRegistry, run_time: float, servers: int, jobs: int, link: Link
) -> dict[str, Any]:
    workflow = registry.get("txt2img")
    graphs = [
        workflow.render(workflow.validate(bench_request(i, steps=STEPS).params), {}) for i in range(jobs)
    ]
    out_dir = Path(tempfile.mkdtemp(prefix="comfybot-bench-naive-"))
    try:
        async with (
            LoopStalls().watching() as stalls,
            remote_fakes(servers, run_time, link) as urls,
            aiohttp.ClientSession() as session,
        ):
            start, done = await run_naive(session, urls, graphs, out_dir)
            stats = await fake_stats(session, urls)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    return _row("naive sequential", run_time, servers, jobs, start, max(done), stats, len(done), stalls)


async def main_async(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    registry = load_workflows()
    link = Link(args.link_mbps, args.rtt_ms)
    rows = []
    for run_time in [float(x) for x in args.run_times.split(",")]:
        for servers in [int(x) for x in args.servers.split(",")]:
            for mode in args.modes.split(","):
                say(f"utilization: {mode} run_time={run_time}s servers={servers} jobs={args.jobs}")
                if mode == "ours":
                    row = await run_ours(registry, args.backend, run_time, servers, args.jobs, link, log_dir)
                else:
                    row = await run_naive_config(registry, run_time, servers, args.jobs, link)
                row["link"] = link.label
                say(
                    f"  -> utilization {row['utilization']:.4f}, makespan {row['makespan_s']}s "
                    f"(ideal {row['ideal_s']}s), fake busy {row['fake_busy']:.4f}, "
                    f"exec/prompt {row['exec_per_prompt_s']}s; last server {row['where']['last_server']}; "
                    f"loop stalls {row['loop_stalls']}; slow stores {row.get('store', {}).get('slow')}"
                )
                rows.append(row)
                partial = RESULTS_DIR / f"{args.name}-partial.json"  # survives a run cut short
                RESULTS_DIR.mkdir(exist_ok=True)
                partial.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
    return {
        "benchmark": "utilization",
        "link": link.label,
        "machine": machine(),
        "params": {
            "jobs": args.jobs,
            "steps": STEPS,
            "backend": args.backend,
            "capacity_per_server": 2,
            "fake": "BenchComfyUI servers in a child process (bench.fakeserver), realistic_png=True "
            "(704x704 noise PNG, ~1.49 MB, "
            "encoded once, unique tEXt per image), previews on",
            "logging": "JSON lines to a file (core.logs)",
        },
        "goal": {"ours_utilization": 0.98},
        "results": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--run-times", default="0.5,2")
    parser.add_argument("--servers", default="1,4")
    parser.add_argument("--modes", default="ours,naive")
    parser.add_argument("--backend", default="memory", choices=["memory", "redis"])
    parser.add_argument("--quick", action="store_true", help="40 jobs per config")
    parser.add_argument(
        "--link-mbps",
        type=float,
        default=None,
        help="simulate a network to ComfyUI: /view at this bandwidth (default: localhost)",
    )
    parser.add_argument("--rtt-ms", type=float, default=0.0, help="simulated delay of every HTTP answer")
    parser.add_argument("--name", default=None, help="results file name (default utilization[-quick])")
    args = parser.parse_args()
    if args.quick:
        args.jobs = 40
    args.name = args.name or ("utilization-quick" if args.quick else "utilization")
    with bench_logging("utilization") as log_dir:
        data = asyncio.run(main_async(args, log_dir))
    write_results(args.name, data)
    (RESULTS_DIR / f"{args.name}-partial.json").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
