"""Throughput against fake ComfyUI servers with a fixed run time per prompt, ours vs a naive sequential bot.

For each run time (0.5 s, 2 s) and server count (1, 4): ``--jobs`` jobs (200) with realistic ~1.5 MB PNG
outputs. Ideal makespan = jobs × run_time / servers; utilization = ideal / actual makespan, where the
makespan runs from the first submit to the last result in the user's hands (ours: the ``Succeeded``
event delivered to the subscriber, images stored; naive: the last image written to disk).
``fake_busy`` is the fraction of the makespan the fake GPUs spent executing prompts.

    .venv/bin/python -m bench.utilization [--quick] [--jobs 200] [--run-times 0.5,2] [--servers 1,4]
                                          [--modes ours,naive] [--backend memory|redis]
                                          [--link-mbps 100 --rtt-ms 5] [--name utilization-100mbit]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.common import (
    RESULTS_DIR,
    backend_factory,
    bench_logging,
    bench_request,
    gateway_rig,
    machine,
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


def _row(mode: str, run_time: float, servers: int, jobs: int, makespan: float, busy: float,
         ok: int) -> dict[str, Any]:
    ideal = jobs * run_time / servers
    return {
        "mode": mode, "run_time_s": run_time, "servers": servers, "jobs": jobs, "succeeded": ok,
        "ideal_s": round(ideal, 2), "makespan_s": round(makespan, 2),
        "utilization": round(ideal / makespan, 4),
        "fake_busy": round(busy / (servers * makespan), 4),
        "jobs_per_min": round(jobs / makespan * 60, 2),
    }


@asynccontextmanager
async def remote_fakes(servers: int, run_time: float, link: Link) -> AsyncIterator[list[str]]:
    """``servers`` fake ComfyUIs in a child process (``bench.fakeserver``); yields their URLs."""
    extra = [] if link.mbps is None else ["--link-mbps", str(link.mbps)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.fakeserver", "--servers", str(servers), "--run-time", str(run_time),
        "--realistic", "--rtt-ms", str(link.rtt_ms), *extra,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
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


async def busy_seconds(session: aiohttp.ClientSession, urls: list[str]) -> float:
    total = 0.0
    for url in urls:
        async with session.get(f"{url}/bench/stats") as r:
            total += float((await r.json())["busy_s"])
    return total


async def run_ours(registry: WorkflowRegistry, kind: str, run_time: float, servers: int,
                   jobs: int, link: Link) -> dict[str, Any]:
    with backend_factory(kind) as make_backend:
        async with (
            remote_fakes(servers, run_time, link) as urls,
            aiohttp.ClientSession() as session,
            gateway_rig(session, registry, make_backend(), urls=urls) as rig,
        ):
            start = time.perf_counter()
            pending: set[str] = set()
            for i in range(jobs):
                accepted = await rig.gateway.submit(bench_request(i, steps=STEPS))
                if not isinstance(accepted, Accepted):
                    raise RuntimeError(f"refused: {accepted}")
                pending.add(accepted.job_id)
            ok = 0
            last = start
            while pending:
                delivered, _, event = await asyncio.wait_for(rig.inbox.get(), 60 + 4 * run_time)
                if isinstance(event, TERMINAL_EVENTS) and event.job_id in pending:
                    pending.discard(event.job_id)
                    ok += isinstance(event, Succeeded)
                    last = delivered
            busy = await busy_seconds(session, urls)
    return _row(f"ours ({kind})", run_time, servers, jobs, last - start, busy, ok)


async def run_naive_config(registry: WorkflowRegistry, run_time: float, servers: int,
                           jobs: int, link: Link) -> dict[str, Any]:
    workflow = registry.get("txt2img")
    graphs = [
        workflow.render(workflow.validate(bench_request(i, steps=STEPS).params), {}) for i in range(jobs)
    ]
    out_dir = Path(tempfile.mkdtemp(prefix="comfybot-bench-naive-"))
    try:
        async with remote_fakes(servers, run_time, link) as urls, aiohttp.ClientSession() as session:
            start, done = await run_naive(session, urls, graphs, out_dir)
            busy = await busy_seconds(session, urls)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    return _row("naive sequential", run_time, servers, jobs, max(done) - start, busy, len(done))


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    registry = load_workflows()
    link = Link(args.link_mbps, args.rtt_ms)
    rows = []
    for run_time in [float(x) for x in args.run_times.split(",")]:
        for servers in [int(x) for x in args.servers.split(",")]:
            for mode in args.modes.split(","):
                say(f"utilization: {mode} run_time={run_time}s servers={servers} jobs={args.jobs}")
                if mode == "ours":
                    row = await run_ours(registry, args.backend, run_time, servers, args.jobs, link)
                else:
                    row = await run_naive_config(registry, run_time, servers, args.jobs, link)
                row["link"] = link.label
                say(f"  -> utilization {row['utilization']:.4f}, makespan {row['makespan_s']}s "
                    f"(ideal {row['ideal_s']}s), fake busy {row['fake_busy']:.4f}")
                rows.append(row)
                partial = RESULTS_DIR / f"{args.name}-partial.json"  # survives a run cut short
                RESULTS_DIR.mkdir(exist_ok=True)
                partial.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
    return {
        "benchmark": "utilization",
        "link": link.label,
        "machine": machine(),
        "params": {"jobs": args.jobs, "steps": STEPS, "backend": args.backend, "capacity_per_server": 2,
                   "fake": "BenchComfyUI servers in a child process (bench.fakeserver), realistic_png=True "
                           "(704x704 noise PNG, ~1.49 MB, "
                           "encoded once, unique tEXt per image), previews on",
                   "logging": "JSON lines to a file (comfybot.logs)"},
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
    parser.add_argument("--link-mbps", type=float, default=None,
                        help="simulate a network to ComfyUI: /view at this bandwidth (default: localhost)")
    parser.add_argument("--rtt-ms", type=float, default=0.0, help="simulated delay of every HTTP answer")
    parser.add_argument("--name", default=None, help="results file name (default utilization[-quick])")
    args = parser.parse_args()
    if args.quick:
        args.jobs = 40
    args.name = args.name or ("utilization-quick" if args.quick else "utilization")
    with bench_logging("utilization"):
        data = asyncio.run(main_async(args))
    write_results(args.name, data)
    (RESULTS_DIR / f"{args.name}-partial.json").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
