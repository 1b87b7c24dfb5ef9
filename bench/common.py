"""What every benchmark shares: the machine, a real redis-server, a gateway over the instrumented fake
ComfyUI of ``bench/fake_comfy.py``.

The gateway is assembled exactly as ``tests/gateway/conftest.py`` does it (``run_gateway`` over opened
clients), with production logging (JSON lines to a file, not stdout) so log formatting is part of what
is measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.fake_comfy import CHECKPOINTS, BenchComfyUI
from comfy import ComfyClient
from comfy.workflows import WorkflowRegistry
from core.logs import configure_logging, reset_logging
from gateway.app import WorkerOptions, run_gateway
from gateway.blobs import Blobs, RedisBlobs
from gateway.limits import Limits
from gateway.memory import MemoryStore
from gateway.models import TERMINAL_EVENTS, JobEvent, JobRequest
from gateway.redis_store import RedisStore
from gateway.service import Gateway
from gateway.sqlite_store import SqliteStore
from gateway.storage import ImageStore
from gateway.store import Store
from tests.conftest import RedisServer, free_port

RESULTS_DIR = Path(__file__).parent / "results"
BENCH_OPTIONS = WorkerOptions(lease_s=30.0, health_interval_s=5.0, cleanup_interval_s=3600.0)


# --- machine and results ------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    os_name = platform.platform()
    with contextlib.suppress(OSError), open("/etc/os-release", encoding="utf-8") as f:
        os_name = next(
            (line.split("=", 1)[1].strip().strip('"') for line in f if line.startswith("PRETTY_NAME=")),
            os_name,
        )
    redis_version = ""
    binary = shutil.which("redis-server")
    if binary:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
        redis_version = out.split("v=")[1].split()[0] if "v=" in out else out.strip()
    return {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "os": f"{os_name} (kernel {platform.release()})",
        "redis_server": redis_version,
        # Other work on the machine (other engineers' test runs) skews results: recorded with them.
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def write_results(name: str, data: dict[str, Any]) -> Path:
    """``bench/results/<name>.json`` (pretty, sorted) and the same JSON on stdout."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    raw = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    path.write_bytes(raw + b"\n")
    sys.stdout.write(raw.decode() + "\n")
    return path


def say(text: str) -> None:
    """Progress line on stderr (stdout carries the JSON)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max/mean of ``samples_ms`` (nearest rank), rounded to µs."""
    if not samples_ms:
        return {}
    s = sorted(samples_ms)

    def rank(p: float) -> float:
        return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))]

    return {
        "n": len(s),
        "p50": round(rank(50), 3),
        "p95": round(rank(95), 3),
        "p99": round(rank(99), 3),
        "max": round(s[-1], 3),
        "mean": round(sum(s) / len(s), 3),
    }


@contextmanager
def bench_logging(name: str, level: str = "INFO") -> Iterator[Path]:
    """Production logging (JSON lines into a file, no stdout) for the duration; yields the log dir."""
    log_dir = Path(tempfile.mkdtemp(prefix=f"comfybot-bench-{name}-"))
    configure_logging(name, log_dir, level=level, stdout=False)
    try:
        yield log_dir
    finally:
        reset_logging()
        shutil.rmtree(log_dir, ignore_errors=True)


# --- redis ----------------------------------------------------------------------------------------------


@contextmanager
def backend_factory(kind: str, appendfsync: str = "everysec") -> Iterator[Callable[[], Store]]:
    """A factory of fresh backends of ``kind`` (``memory`` | ``sqlite`` | ``redis``); Redis runs for the
    block, SQLite files live in a temporary directory."""
    if kind == "memory":
        yield MemoryStore
        return
    if kind == "sqlite":
        where = Path(tempfile.mkdtemp(prefix="comfybot-bench-sqlite-"))
        try:
            yield lambda: SqliteStore(where / f"{uuid.uuid4().hex[:6]}.db")
        finally:
            shutil.rmtree(where, ignore_errors=True)
        return
    # The test suite's redis-server starter, with a production-like fsync policy.
    srv = RedisServer(
        port=free_port(), dir=Path(tempfile.mkdtemp(prefix="comfybot-bench-redis-")), appendfsync=appendfsync
    )
    srv.start()
    try:
        yield lambda: RedisStore(srv.url, prefix=f"bench{uuid.uuid4().hex[:6]}:")
    finally:
        srv.stop(kill=True)
        shutil.rmtree(srv.dir, ignore_errors=True)


# --- event loop stalls ------------------------------------------------------------------------------------


class LoopStalls:
    """Notices when this event loop was blocked: a task wakes every ``tick_s`` and records each wake-up that
    came more than ``threshold_s`` late as ``(perf_counter when it should have woken, seconds late)``.

    A blocked loop delays every timer and socket read at once, which the per-job timings cannot tell
    apart from slow work; this can."""

    def __init__(self, tick_s: float = 0.005, threshold_s: float = 0.05) -> None:
        self.tick_s = tick_s
        self.threshold_s = threshold_s
        self.stalls: list[tuple[float, float]] = []

    async def run(self) -> None:
        while True:
            due = time.perf_counter() + self.tick_s
            await asyncio.sleep(self.tick_s)
            late = time.perf_counter() - due
            if late > self.threshold_s:
                self.stalls.append((due, late))

    @asynccontextmanager
    async def watching(self) -> AsyncIterator[LoopStalls]:
        task = asyncio.create_task(self.run())
        try:
            yield self
        finally:
            await stop_task(task)

    def between(self, start: float, end: float) -> list[list[float]]:
        """Stalls that began in [start, end], as ``[seconds after start, seconds late]``."""
        return [[round(at - start, 4), round(late, 4)] for at, late in self.stalls if start <= at <= end]


# --- a gateway over fakes --------------------------------------------------------------------------------


@dataclass
class Rig:
    """A running gateway, its fakes, and an event inbox filled by a background subscriber."""

    gateway: Gateway
    backend: Store
    fakes: list[BenchComfyUI]
    data_dir: Path
    inbox: asyncio.Queue[tuple[float, float, JobEvent]]  # (perf_counter, time.time, event) at delivery
    request_ids: set[str] = field(default_factory=set)  # for the caller's bookkeeping


def bench_request(i: int, *, user: str | None = None, steps: int = 20) -> JobRequest:
    return JobRequest(
        platform="telegram",
        user_id=user or f"u{i % 1000}",
        chat_id="c1",
        workflow="txt2img",
        params={"prompt": f"a lighthouse at dusk, variation {i}", "steps": steps, "seed": i},
        reply_to={"chat_id": 1, "message_id": i},
    )


def bench_limits(queue_cap: int = 100_000) -> Limits:
    """Limits that never refuse a benchmark's submissions."""
    return Limits(
        max_pending_per_user=queue_cap, rate_count=10 * queue_cap, rate_window_s=60.0, queue_cap=queue_cap
    )


@asynccontextmanager
async def gateway_rig(
    session: aiohttp.ClientSession,
    registry: WorkflowRegistry,
    backend: Store,
    *,
    servers: int = 1,
    fake_options: dict[str, Any] | None = None,
    capacity: int = 2,
    limits: Limits | None = None,
    subscribe: bool = True,
    urls: Sequence[str] | None = None,
    shared: Callable[[Store], Blobs | None] | None = None,
    options: WorkerOptions = BENCH_OPTIONS,
) -> AsyncIterator[Rig]:
    """A gateway with ``servers`` instrumented fakes, built like the tests' harness; with ``urls``, over
    ComfyUI servers running elsewhere (``bench.fakeserver`` in another process) instead. ``shared`` builds
    where images are shared from the backend (default: Redis when the backend is Redis). ``fake_options``
    may set the fakes' ``checkpoints`` (default :data:`CHECKPOINTS`)."""
    data_dir = Path(tempfile.mkdtemp(prefix="comfybot-bench-data-"))
    async with AsyncExitStack() as stack:
        stack.callback(shutil.rmtree, data_dir, True)
        fakes: list[BenchComfyUI] = []
        for _ in range(servers if urls is None else 0):
            fake = BenchComfyUI(**{"checkpoints": CHECKPOINTS, **(fake_options or {})})
            fakes.append(await stack.enter_async_context(fake))
        backend = await stack.enter_async_context(backend)
        # As in production (gateway/app.py): with Redis, images are shared through it.
        if shared is None:
            blobs: Blobs | None = RedisBlobs(backend) if isinstance(backend, RedisStore) else None
        else:
            blobs = shared(backend)
        store = ImageStore(data_dir, shared=blobs)
        clients = [
            await stack.enter_async_context(ComfyClient(url, session, name=f"comfy{i}"))
            for i, url in enumerate(urls if urls is not None else [f.url for f in fakes])
        ]
        gateway = await stack.enter_async_context(
            run_gateway(
                backend,
                registry,
                store,
                clients,
                capacity=capacity,
                limits=limits or bench_limits(),
                options=options,
            )
        )
        inbox: asyncio.Queue[tuple[float, float, JobEvent]] = asyncio.Queue()
        task: asyncio.Task[None] | None = None
        if subscribe:
            task = asyncio.create_task(_collect(gateway, inbox))
        try:
            yield Rig(gateway, backend, fakes, data_dir, inbox)
        finally:
            if task is not None:
                await stop_task(task)


async def stop_task(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` until it ends. Once is not enough for a task iterating ``RedisStore.subscribe``:
    a cancel that lands inside a Redis call can come out as a redis ``ConnectionError``, which the backend's
    ``_retry`` retries, so the cancellation is lost (see BENCHMARKS.md, "Findings")."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    with contextlib.suppress(asyncio.CancelledError):
        task.result()


async def _collect(gateway: Gateway, inbox: asyncio.Queue[tuple[float, float, JobEvent]]) -> None:
    async with contextlib.aclosing(gateway.subscribe("telegram")) as events:
        async for event in events:
            inbox.put_nowait((time.perf_counter(), time.time(), event))
            if isinstance(event, TERMINAL_EVENTS):  # as a front end does once the chat shows it
                await gateway.event_handled("telegram", event.job_id)


__all__ = [
    "BENCH_OPTIONS",
    "LoopStalls",
    "Rig",
    "backend_factory",
    "bench_limits",
    "bench_logging",
    "bench_request",
    "gateway_rig",
    "machine",
    "stop_task",
    "percentiles",
    "say",
    "write_results",
]
