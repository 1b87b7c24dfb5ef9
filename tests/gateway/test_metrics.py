"""Prometheus metrics: scraped from ``/metrics`` (HTTP API and its own port) after real jobs on the fake
ComfyUI; counters and histograms checked by name and label, as deltas (the registry is process-wide)."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from comfy.workflows import WorkflowRegistry
from gateway.http_api import start_api
from gateway.metrics import start_metrics
from gateway.models import Failed, FailureCode, Succeeded
from gateway.redis_store import RedisStore
from gateway.service import Accepted, Gateway, Refused
from gateway.storage import ImageStore
from tests.conftest import RedisServer, free_port
from tests.gateway.conftest import harness, request

TOKEN = "metrics-token"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(session: aiohttp.ClientSession, url: str, token: str | None = None) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.get(url, headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return parse(await resp.text())


async def test_metrics_after_real_jobs(session, registry, data_dir) -> None:
    async with harness(session, registry, data_dir) as h:
        port = free_port()
        runner = await start_api(h.gateway, TOKEN, port=port)
        url = f"http://127.0.0.1:{port}/metrics"
        try:
            async with session.get(url) as resp:
                assert resp.status == 401  # the API's token guards it too
            before = await scrape(session, url, TOKEN)
            ok = await h.gateway.submit(request("a lighthouse"))
            assert isinstance(ok, Accepted)
            assert isinstance(await h.log.terminal(ok.job_id), Succeeded)
            assert await h.gateway.mark_delivered(ok.job_id)
            h.fakes[0].fail_node("KSampler", "RuntimeError", "CUDA out of memory")
            bad = await h.gateway.submit(request("a storm"))
            assert isinstance(bad, Accepted)
            assert isinstance(await h.log.terminal(bad.job_id), Failed)
            refused = await h.gateway.submit(request("x", steps=999))
            assert isinstance(refused, Refused)
            after = await scrape(session, url, TOKEN)
        finally:
            await runner.cleanup()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("comfybot_jobs_submitted_total", workflow="txt2img", platform="telegram") == 2
    assert delta("comfybot_jobs_refused_total", code="invalid_input") == 1
    assert delta("comfybot_jobs_finished_total", workflow="txt2img", outcome="succeeded", code="") == 1
    code = FailureCode.COMFY_EXECUTION_ERROR.value
    assert delta("comfybot_jobs_finished_total", workflow="txt2img", outcome="failed", code=code) == 1
    assert delta("comfybot_job_wait_seconds_count", workflow="txt2img") == 2
    assert delta("comfybot_job_run_seconds_count", workflow="txt2img") == 1  # successes only
    assert delta("comfybot_job_run_seconds_bucket", workflow="txt2img", le="+Inf") == 1
    assert delta("comfybot_job_delivery_seconds_count", platform="telegram") == 1
    assert value(after, "comfybot_server_up", server="comfy0") == 1
    assert value(after, "comfybot_server_slots", server="comfy0") == 2
    assert value(after, "comfybot_server_busy_slots", server="comfy0") == 0
    assert value(after, "comfybot_queue_depth") == 0


async def test_queue_depth_is_the_shared_truth(
    session: aiohttp.ClientSession, registry: WorkflowRegistry, data_dir, redis_server: RedisServer
) -> None:
    """A process that runs no worker (its own metrics port) reports the depth and lag of the Redis queue
    another process fills; the worker's servers are down, so the jobs wait."""
    async with (
        harness(session, registry, data_dir, backend=RedisStore(redis_server.url), down=True) as h,
        RedisStore(redis_server.url) as other,
    ):
        front = Gateway(other, registry, ImageStore(data_dir))
        port = free_port()
        runner = await start_metrics(front, host="127.0.0.1", port=port)
        try:
            for i in range(3):
                assert isinstance(await h.gateway.submit(request(f"job {i}", user=f"u{i}")), Accepted)
            samples = await scrape(session, f"http://127.0.0.1:{port}/metrics")
        finally:
            await runner.cleanup()
    assert value(samples, "comfybot_queue_depth") == 3
    assert value(samples, "comfybot_queue_lag_seconds") > 0
    assert not any(name.startswith("comfybot_server_") for name, _ in samples)  # no worker here
