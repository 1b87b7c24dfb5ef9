"""Prometheus metrics (``prometheus-client``): what an operator graphs and an autoscaler reads.

Each process exposes its own metrics (no multiprocess mode): counters and histograms live in this
process's :data:`REGISTRY` and count what this process did (the jobs its worker ran, the messages its
front ends sent). The queue's depth and lag are read from the store at scrape time (:func:`render`), so
every process reports the shared truth of a Redis queue; the servers' slots and health are this
process's worker's view of its pool.

Served on ``GET /metrics`` of the HTTP API (behind its token) and, with ``COMFYBOT_METRICS_PORT``, on a
port of its own (:func:`start_metrics`, no token: bind it where only the scraper reaches). See
``docs/METRICS.md`` for the names and a KEDA / HPA example.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from core.logs import get_logger
from gateway.models import Failed, FailureCode, JobEvent

if TYPE_CHECKING:
    from gateway.service import Gateway

log = get_logger("gateway")

#: the process-wide counters and histograms; :func:`render` adds the scrape-time gauges
REGISTRY = CollectorRegistry(auto_describe=True)
_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800, float("inf"))

JOBS_SUBMITTED = Counter(
    "comfybot_jobs_submitted", "Jobs accepted into the queue.", ["workflow", "platform"], registry=REGISTRY
)
JOBS_REFUSED = Counter("comfybot_jobs_refused", "Submissions refused, by code.", ["code"], registry=REGISTRY)
JOBS_FINISHED = Counter(
    "comfybot_jobs_finished",
    "Jobs ended by this process: outcome succeeded/failed/cancelled/timed_out; code is the failure code "
    "of a failed job (empty otherwise).",
    ["workflow", "outcome", "code"],
    registry=REGISTRY,
)
WAIT_SECONDS = Histogram(
    "comfybot_job_wait_seconds",
    "From enqueue to a worker taking the job.",
    ["workflow"],
    buckets=_BUCKETS,
    registry=REGISTRY,
)
RUN_SECONDS = Histogram(
    "comfybot_job_run_seconds",
    "From the prompt starting on ComfyUI to the job's end, for jobs that succeeded.",
    ["workflow"],
    buckets=_BUCKETS,
    registry=REGISTRY,
)
DELIVERY_SECONDS = Histogram(
    "comfybot_job_delivery_seconds",
    "From a job's success to its result being in the chat.",
    ["platform"],
    buckets=_BUCKETS,
    registry=REGISTRY,
)
CHAT_API_ERRORS = Counter(
    "comfybot_chat_api_errors",
    "Chat API calls that failed for good (after retries), by platform and error type.",
    ["platform", "error"],
    registry=REGISTRY,
)
CHAT_RATE_LIMITED = Counter(
    "comfybot_chat_rate_limited",
    "429 answers of a chat API (each one, retried or not), by platform.",
    ["platform"],
    registry=REGISTRY,
)


def job_finished(workflow: str, event: JobEvent, run_ms: int) -> None:
    """Count a job this process ended (once per job: call it when ``Store.finish`` said first)."""
    code = event.code.value if isinstance(event, Failed) else ""
    JOBS_FINISHED.labels(workflow, event.kind, code).inc()
    if event.kind == "succeeded":
        RUN_SECONDS.labels(workflow).observe(run_ms / 1000)


def job_refused(code: FailureCode) -> None:
    JOBS_REFUSED.labels(code.value).inc()


def delivered(platform: str, finished_at: float | None) -> None:
    """A result reached the chat; ``finished_at`` is when the job ended (unknown: not observed)."""
    if finished_at is not None:
        DELIVERY_SECONDS.labels(platform).observe(max(0.0, time.time() - finished_at))


def chat_api_error(platform: str, error: str) -> None:
    CHAT_API_ERRORS.labels(platform, error).inc()


def chat_rate_limited(platform: str) -> None:
    CHAT_RATE_LIMITED.labels(platform).inc()


@dataclass(frozen=True)
class QueueSnapshot:
    """The shared queue at one moment: waiting jobs, and how long the one next in line has waited."""

    depth: int
    lag_s: float


async def queue_snapshot(gateway: Gateway) -> QueueSnapshot:
    depth = await gateway.store.depth()
    lag = 0.0
    if depth:
        first = await gateway.store.waiting(1)
        record = await gateway.store.get(first[0]) if first else None
        if record is not None:
            lag = max(0.0, time.time() - record.enqueued_at)
    return QueueSnapshot(depth, lag)


class _Scrape(Collector):
    """The gauges read at scrape time: the queue (from the store) and this process's servers."""

    def __init__(self, gateway: Gateway, queue: QueueSnapshot) -> None:
        self._gateway = gateway
        self._queue = queue

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("comfybot_queue_depth", "Jobs waiting in the queue.", self._queue.depth)
        yield GaugeMetricFamily(
            "comfybot_queue_lag_seconds", "How long the job next in line has waited.", self._queue.lag_s
        )
        busy = GaugeMetricFamily("comfybot_server_busy_slots", "Prompts in flight.", labels=["server"])
        slots = GaugeMetricFamily("comfybot_server_slots", "Prompts it may run at once.", labels=["server"])
        up = GaugeMetricFamily("comfybot_server_up", "1 while the server is healthy.", labels=["server"])
        for s in self._gateway.servers():
            busy.add_metric([s.name], s.inflight)
            slots.add_metric([s.name], s.capacity)
            up.add_metric([s.name], 1 if s.healthy else 0)
        yield from (busy, slots, up)


class _Process(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from REGISTRY.collect()  # type: ignore[misc]  # Metric families, not only gauges


async def render(gateway: Gateway) -> bytes:
    """The Prometheus text of this process, the queue read now."""
    registry = CollectorRegistry()
    registry.register(_Process())
    registry.register(_Scrape(gateway, await queue_snapshot(gateway)))
    return generate_latest(registry)


async def metrics_response(gateway: Gateway) -> web.Response:
    body = await render(gateway)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def start_metrics(gateway: Gateway, *, host: str, port: int) -> web.AppRunner:
    """Serve ``GET /metrics`` alone on ``host:port`` (a worker-only process); the caller cleans it up."""
    app = web.Application()

    async def metrics(request: web.Request) -> web.Response:
        return await metrics_response(gateway)

    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("metrics_listening", host=host, port=port)
    return runner


__all__ = [
    "REGISTRY",
    "QueueSnapshot",
    "chat_api_error",
    "chat_rate_limited",
    "delivered",
    "job_finished",
    "job_refused",
    "metrics_response",
    "queue_snapshot",
    "render",
    "start_metrics",
]
