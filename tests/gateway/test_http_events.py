"""The HTTP API's push side, over real HTTP: Server-Sent Events (resumable with Last-Event-ID), the image
route, and signed outbound webhooks retried with backoff against a receiving server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from gateway.http_api import EVENTS, WebhookOptions, start_api
from gateway.models import Succeeded
from gateway.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.comfy.test_client_fake import until
from tests.conftest import free_port
from tests.gateway.conftest import EventLog, Harness, harness
from tests.gateway.test_http_api import TOKEN, auth

SECRET = "whsec-0123456789abcdef"
JOB = {"user_id": "script", "chat_id": "-", "workflow": "txt2img", "params": {"prompt": "a cat", "steps": 6}}


@dataclass
class Api:
    h: Harness
    url: str
    runner: web.AppRunner


@contextlib.asynccontextmanager
async def serving(h: Harness, webhooks: WebhookOptions | None = None) -> AsyncIterator[Api]:
    port = free_port()
    runner = await start_api(h.gateway, TOKEN, port=port, webhooks=webhooks)
    h.log = EventLog()
    collector = asyncio.create_task(h.log.collect(runner.app[EVENTS].tap()))
    try:
        yield Api(h, f"http://127.0.0.1:{port}", runner)
    finally:
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector
        await runner.cleanup()


@pytest.fixture
async def api(session, registry, data_dir):
    async with harness(session, registry, data_dir, capacity=1) as h, serving(h) as api:
        yield api


@dataclass
class SseEvent:
    id: str | None
    event: str
    data: dict[str, Any]


async def read_events(resp: aiohttp.ClientResponse, until: Any = None) -> AsyncIterator[SseEvent]:
    """Parse ``text/event-stream`` as a browser does: fields up to a blank line make one event."""
    fields: dict[str, str] = {}
    async for raw in resp.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if "data" in fields:
                yield SseEvent(fields.get("id"), fields.get("event", "message"), orjson.loads(fields["data"]))
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields[name] = value[1:] if value.startswith(" ") else value


async def submit(api: Api, session: aiohttp.ClientSession, job: dict[str, Any]) -> dict[str, Any]:
    async with session.post(f"{api.url}/v1/jobs", json=job, headers=auth()) as resp:
        assert resp.status == 202, await resp.text()
        body: dict[str, Any] = await resp.json()
    return body


async def test_events_stream_position_progress_preview_and_the_outcome(api: Api, session) -> None:
    api.h.fakes[0].step_delay_s = 0.05
    await submit(api, session, JOB)  # runs first: the next one waits its turn (capacity 1)
    job_id = (await submit(api, session, JOB))["job_id"]
    async with session.get(f"{api.url}/v1/jobs/{job_id}/events", headers=auth()) as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        seen = [event async for event in read_events(resp)]
    kinds = [e.event for e in seen]
    assert kinds[0] == "queued" and seen[0].data["position"] >= 1
    assert "started" in kinds and "progress" in kinds and "preview" in kinds
    assert kinds[-1] == "succeeded" and kinds.count("succeeded") == 1, "the stream ends after the outcome"
    assert all(e.id for e in seen) and len({e.id for e in seen}) == len(seen)
    assert seen[-1].id == "outcome"
    assert all(e.data["job_id"] == job_id for e in seen)
    preview = next(e for e in seen if e.event == "preview").data["image"]
    [image] = seen[-1].data["images"]
    for ref in (preview, image):
        async with session.get(api.url + ref["url"], headers=auth()) as resp:
            assert resp.status == 200 and resp.content_type.startswith("image/")
            assert len(await resp.read()) > 0
        async with session.get(api.url + ref["url"]) as resp:
            assert resp.status == 401
    async with session.get(f"{api.url}/v1/jobs/nope/events", headers=auth()) as resp:
        assert resp.status == 404


@pytest.mark.parametrize(
    "path",
    ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "outputs/%2e%2e/%2e%2e/etc/passwd", "previews/nope.png"],
)
async def test_the_image_route_serves_nothing_outside_the_data_dir(api: Api, session, path: str) -> None:
    async with session.get(f"{api.url}/v1/images/{path}", headers=auth()) as resp:
        assert resp.status == 404
        assert b"root:" not in await resp.read()


async def test_a_client_that_reconnects_with_last_event_id_gets_the_outcome_exactly_once(
    api: Api, session
) -> None:
    api.h.fakes[0].step_delay_s = 0.05
    job_id = (await submit(api, session, JOB))["job_id"]
    first: list[SseEvent] = []
    async with session.get(f"{api.url}/v1/jobs/{job_id}/events", headers=auth()) as resp:
        async for event in read_events(resp):
            first.append(event)
            if event.event == "progress":
                break  # the client goes away mid-stream
    assert first[-1].event == "progress"
    await api.h.log.terminal(job_id)  # the job ends while nobody listens
    last_id = first[-1].id
    assert last_id is not None
    headers = {**auth(), "Last-Event-ID": last_id}
    async with session.get(f"{api.url}/v1/jobs/{job_id}/events", headers=headers) as resp:
        assert resp.status == 200
        again = [event async for event in read_events(resp)]
    assert [e.event for e in again].count("succeeded") == 1 and again[-1].event == "succeeded"
    assert not {e.id for e in first} & {e.id for e in again}, "nothing before Last-Event-ID again"
    # A reconnect after the outcome gets nothing more: 204 tells an EventSource to stop.
    async with session.get(
        f"{api.url}/v1/jobs/{job_id}/events", headers={**auth(), "Last-Event-ID": "outcome"}
    ) as resp:
        assert resp.status == 204
    # Another API process never saw these events: it reads the outcome from the job record.
    async with serving(api.h) as other:
        headers = {**auth(), "Last-Event-ID": last_id}
        async with session.get(f"{other.url}/v1/jobs/{job_id}/events", headers=headers) as resp:
            elsewhere = [e async for e in read_events(resp)]
    assert [(e.id, e.event) for e in elsewhere] == [("outcome", "succeeded")]
    assert elsewhere[0].data["images"] == again[-1].data["images"]


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 that answers 500 to its first ``fail`` requests."""

    fail: int
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        return web.Response(status=500 if len(self.requests) <= self.fail else 204)


@contextlib.asynccontextmanager
async def receiving(fail: int) -> AsyncIterator[Receiver]:
    receiver = Receiver(fail)
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    receiver.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield receiver
    finally:
        await runner.cleanup()


FAST_HOOKS = WebhookOptions(secret=SECRET, attempts=4, backoff_s=0.01)


async def test_a_webhook_that_fails_twice_is_delivered_once_on_the_third_attempt(
    session, registry, data_dir
) -> None:
    async with (
        harness(session, registry, data_dir) as h,
        serving(h, FAST_HOOKS) as api,
        receiving(fail=2) as receiver,
    ):
        with capture_logs(processors=[merge_contextvars]) as logs:
            accepted = await submit(api, session, {**JOB, "callback_url": receiver.url})
            assert isinstance(await h.log.terminal(accepted["job_id"]), Succeeded)
            await until(lambda: any(e["event"] == "webhook_sent" for e in logs))
        hub = api.runner.app[EVENTS]
        await asyncio.gather(*hub._deliveries)
    assert len(receiver.requests) == 3
    headers, body = receiver.requests[-1]
    assert verify(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    assert not verify("another-secret", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    payload = orjson.loads(body)
    assert payload["kind"] == "succeeded" and payload["job_id"] == accepted["job_id"]
    assert payload["images"][0]["url"].startswith("/v1/images/outputs/")
    attempts = [(e["event"], e["attempt"], e["status"]) for e in logs if e["event"].startswith("webhook_")]
    assert attempts == [("webhook_failed", 1, 500), ("webhook_failed", 2, 500), ("webhook_sent", 3, 204)]
    assert all(e["request_id"] == accepted["request_id"] for e in logs if e["event"].startswith("webhook_"))
    assert SECRET not in repr(logs)


async def test_a_webhook_that_never_succeeds_stops_after_the_bounded_attempts(
    session, registry, data_dir
) -> None:
    async with (
        harness(session, registry, data_dir) as h,
        serving(h, FAST_HOOKS) as api,
        receiving(fail=100) as receiver,
    ):
        with capture_logs(processors=[merge_contextvars]) as logs:
            accepted = await submit(api, session, {**JOB, "callback_url": receiver.url})
            await h.log.terminal(accepted["job_id"])
            await until(lambda: any(e["event"] == "webhook_gave_up" for e in logs))
    assert len(receiver.requests) == FAST_HOOKS.attempts
    assert [e["attempt"] for e in logs if e["event"] == "webhook_failed"] == [1, 2, 3, 4]


async def test_callback_url_needs_a_secret_and_an_http_url(session, registry, data_dir) -> None:
    async with harness(session, registry, data_dir) as h:
        async with serving(h) as plain:
            async with session.post(
                f"{plain.url}/v1/jobs", json={**JOB, "callback_url": "http://127.0.0.1:1/x"}, headers=auth()
            ) as resp:
                assert resp.status == 400
                body = await resp.json()
            assert (body["field"], body["reason"]) == ("callback_url", "webhooks_disabled")
        async with serving(h, FAST_HOOKS) as api:
            for bad, reason in [
                ("file:///etc/passwd", "bad_scheme"),
                ("ftp://example.org/x", "bad_scheme"),
                ("http://", "bad_url"),
                (42, "bad_url"),
            ]:
                async with session.post(
                    f"{api.url}/v1/jobs", json={**JOB, "callback_url": bad}, headers=auth()
                ) as resp:
                    assert resp.status == 400
                    body = await resp.json()
                assert (body["code"], body["field"], body["reason"]) == (
                    "invalid_input",
                    "callback_url",
                    reason,
                )
            # Smuggled through reply_to, a URL is never called.
            smuggled = {**JOB, "reply_to": {"callback_url": "file:///etc/passwd"}}
            job_id = (await submit(api, session, smuggled))["job_id"]
            record = await h.gateway.get_job(job_id)
            assert record is not None and "callback_url" not in record.request.reply_to
    assert await h.gateway.store.depth() <= 1


async def test_resume_and_webhook_on_every_store(session, registry, data_dir, backend_factory) -> None:
    """Memory, SQLite and Redis: the API consumes the http events it stores, resumes a stream after
    Last-Event-ID with the outcome once, and delivers the webhook once after a failure."""
    async with (
        harness(session, registry, data_dir, backend=backend_factory()) as h,
        serving(h, FAST_HOOKS) as api,
        receiving(fail=1) as receiver,
    ):
        h.fakes[0].step_delay_s = 0.05
        accepted = await submit(api, session, {**JOB, "callback_url": receiver.url})
        job_id = accepted["job_id"]
        first: list[SseEvent] = []
        async with session.get(f"{api.url}/v1/jobs/{job_id}/events", headers=auth()) as resp:
            async for event in read_events(resp):
                first.append(event)
                if event.event == "progress":
                    break
        assert first[-1].id is not None
        await h.log.terminal(job_id)
        headers = {**auth(), "Last-Event-ID": first[-1].id}
        async with session.get(f"{api.url}/v1/jobs/{job_id}/events", headers=headers) as resp:
            again = [event async for event in read_events(resp)]
        assert [e.event for e in again].count("succeeded") == 1 and again[-1].id == "outcome"
        await until(lambda: len(receiver.requests) == 2)
        await asyncio.gather(*api.runner.app[EVENTS]._deliveries)
    assert len(receiver.requests) == 2
    headers_, body = receiver.requests[-1]
    assert verify(SECRET, headers_[TIMESTAMP_HEADER], body, headers_[SIGNATURE_HEADER])
    assert orjson.loads(body)["job_id"] == job_id
