"""A small HTTP API over the gateway (aiohttp.web), for scripts and other services.

Binds to 127.0.0.1 by default (a bind beyond loopback logs the warning ``http_api_exposed``) and requires
``Authorization: Bearer <token>`` on every route.

* ``POST /v1/jobs`` — a ``JobRequest`` as JSON without ``platform`` (it becomes ``"http"``) → 202
  ``{job_id, position, depth, eta_s, blocked}`` (``blocked``: why no server can run it now, or null);
  refusals → 4xx/429/503 ``{code, detail, field, reason, retry_after_s}`` — an image path the gateway
  did not hand out (``../../etc/passwd``) is a 400 naming ``inputs.<name>.path``, before anything is
  queued.
  With ``callback_url`` (an http(s) URL) in the body, the outcome is POSTed there, signed
  (``gateway/webhooks.py``); refused (400, ``reason: webhooks_disabled``) unless
  ``COMFYBOT_WEBHOOK_SECRET`` is set.
* ``GET /v1/jobs/{id}`` — the job record (state, images, failure...) or 404.
* ``GET /v1/jobs/{id}/events`` — Server-Sent Events: ``queued`` (position), ``started``, ``progress``,
  ``preview`` (with the image's ``url``), then the outcome (``succeeded`` with image urls, ``failed``,
  ``cancelled``, ``timed_out``) and the stream ends. Every event has an ``id``; reconnecting with
  ``Last-Event-ID`` resumes after it; after the outcome (id ``outcome``) the answer is 204.
* ``GET /v1/images/{path}`` — a stored image (preview, result or input) by its reference; anything but
  a well-formed reference inside the data dir is a 404.
* ``GET /v1/openapi.json`` — the OpenAPI 3 document of this API (``gateway/openapi.py``).
* ``DELETE /v1/jobs/{id}`` — cancel (the token holder acts as an admin) → 200 ``{cancelled: bool}``.
* ``GET /v1/health`` — ``ready``, job store, queue depth, and each ComfyUI server's state; 503 and
  ``ready: false`` while none is up (jobs are still accepted: they wait, up to the queue timeout).
* ``GET /v1/stats`` — queue depth, the last 24 h's outcomes, mean run time per workflow, the servers.
* ``GET /metrics`` — Prometheus text (``gateway/metrics.py``, ``docs/METRICS.md``), behind the same token.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import ipaddress
import mimetypes
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import structlog
from aiohttp import web
from pydantic import ValidationError

from core.logs import get_logger
from gateway.errors import StorageError
from gateway.http_events import IMAGE_ROUTE, OUTCOME_ID, JobEvents, outcome_from_record, sse
from gateway.metrics import metrics_response
from gateway.models import FailureCode, JobRequest, JobState, Queued
from gateway.openapi import openapi_document
from gateway.service import Accepted, Gateway
from gateway.webhooks import WebhookSender, callback_url_problem

log = get_logger("gateway")

_GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
EVENTS: web.AppKey[JobEvents] = web.AppKey("events", JobEvents)
#: how often an open event stream reads the job record (an outcome another process consumed) and,
#: every few of those, sends a keep-alive comment
POLL_S = 2.0
KEEPALIVE_EVERY = 7
_STATUS = {
    FailureCode.RATE_LIMITED: 429,
    FailureCode.TOO_MANY_PENDING: 429,
    FailureCode.QUOTA_EXCEEDED: 429,
    FailureCode.QUEUE_FULL: 503,
    FailureCode.ACCESS_DENIED: 403,
    FailureCode.UNKNOWN_WORKFLOW: 404,
    FailureCode.INTERNAL: 503,
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _auth_middleware(token: str) -> Any:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):  # constant time: no token guessing by timing
            log.info("access_denied", reason="bad_api_token", path=request.path)
            return _json({"code": FailureCode.ACCESS_DENIED.value, "detail": "bad or missing token"}, 401)
        return await handler(request)

    return auth


def _invalid(detail: str, field: str | None = None, reason: str | None = None) -> web.Response:
    body = {"code": FailureCode.INVALID_INPUT.value, "detail": detail, "field": field, "reason": reason}
    return _json(body, 400)


async def _submit(request: web.Request) -> web.Response:
    try:
        body = orjson.loads(await request.read())
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        callback = body.pop("callback_url", None)
        reply_to = body.get("reply_to", {})
        if isinstance(reply_to, dict):  # only a checked callback_url is ever called
            reply_to = {k: v for k, v in reply_to.items() if k != "callback_url"}
        if callback is not None:
            if request.app[EVENTS].webhooks is None:
                log.info("validation_error", field="callback_url", reason="webhooks_disabled")
                return _invalid("COMFYBOT_WEBHOOK_SECRET is not set", "callback_url", "webhooks_disabled")
            problem = callback_url_problem(callback)
            if problem is not None:
                log.info("validation_error", field="callback_url", reason=problem)
                return _invalid("callback_url must be an http(s) URL", "callback_url", problem)
            reply_to = {**reply_to, "callback_url": callback}
        job = JobRequest.model_validate({**body, "reply_to": reply_to, "platform": "http"})
    except (ValueError, ValidationError) as exc:
        return _invalid(str(exc)[:500])
    structlog.contextvars.bind_contextvars(request_id=job.request_id)
    log.info("request_received", platform="http", workflow=job.workflow, user_id=job.user_id)
    result = await request.app[_GATEWAY].submit(job)
    if isinstance(result, Accepted):
        return _json(
            {
                "job_id": result.job_id,
                "request_id": job.request_id,
                "position": result.position,
                "depth": result.depth,
                "eta_s": result.eta_s,
                "blocked": None if result.blocked is None else result.blocked.model_dump(mode="json"),
            },
            202,
        )
    return _json(
        {
            "code": result.code.value,
            "detail": result.detail,
            "field": result.field,
            "reason": result.reason,
            "retry_after_s": result.retry_after_s,
        },
        _STATUS.get(result.code, 400),
    )


async def _get(request: web.Request) -> web.Response:
    record = await request.app[_GATEWAY].get_job(request.match_info["job_id"])
    if record is None:
        return _json({"code": "not_found"}, 404)
    return _json(record.model_dump(mode="json"))


def _last_event_id(request: web.Request) -> str | None:
    """``Last-Event-ID`` (an EventSource reconnecting), else ``?last_event_id=`` (a first connect)."""
    return request.headers.get("Last-Event-ID") or request.query.get("last_event_id") or None


async def _events(request: web.Request) -> web.StreamResponse:
    gateway, hub = request.app[_GATEWAY], request.app[EVENTS]
    job_id = request.match_info["job_id"]
    record = await gateway.get_job(job_id)
    if record is None:
        return _json({"code": "not_found"}, 404)
    last = _last_event_id(request)
    if last == OUTCOME_ID:  # it has the outcome: nothing more will come (EventSource stops on 204)
        return web.Response(status=204)
    after = hub.after(last)
    job = hub.log_of(job_id)
    if job.outcome is None and record.state is JobState.QUEUED and not job.events:
        position = await gateway.store.position(job_id)
        depth = await gateway.store.depth()
        hub.add(
            Queued(job_id=job_id, request_id=record.request.request_id, position=position or 1, depth=depth)
        )
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    structlog.contextvars.bind_contextvars(request_id=record.request.request_id, job_id=job_id)
    log.info("event_stream_opened", after=last)
    idle = 0
    try:
        await response.write(b"retry: 1000\n\n")
        while not hub.closing.is_set():
            job = hub.log_of(job_id)
            job.changed.clear()
            for seq, data in list(job.events):
                if seq > after:
                    await response.write(sse(hub.event_id(seq), data))
                    after = seq
            if job.outcome is not None:
                await response.write(sse(OUTCOME_ID, job.outcome))
                log.info("event_stream_outcome", kind=job.outcome.get("kind"))
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_S):
                    await job.changed.wait()
                    continue
            record = await gateway.get_job(job_id)  # quiet: did it end where we did not see it?
            ended = None if record is None else outcome_from_record(record)
            if ended is not None:
                hub.add(ended)
                continue
            idle += 1
            if idle % KEEPALIVE_EVERY == 0:
                await response.write(b": keep-alive\n\n")
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        log.info("event_stream_closed", by="client")
        return response
    with contextlib.suppress(ConnectionResetError, aiohttp.ClientConnectionResetError):
        await response.write_eof()
    return response


async def _image(request: web.Request) -> web.StreamResponse:
    """A stored image by reference; ``ImageStore.path`` refuses anything outside the data dir."""
    ref = request.match_info["path"]
    gateway = request.app[_GATEWAY]
    try:
        gateway.images.path(ref)
        data = await gateway.images.read(ref)
    except StorageError:
        return _json({"code": "not_found"}, 404)
    content_type = mimetypes.guess_type(ref)[0] or "application/octet-stream"
    return web.Response(body=data, content_type=content_type, headers={"Cache-Control": "no-store"})


async def _openapi(request: web.Request) -> web.Response:
    return _json(openapi_document())


async def _cancel(request: web.Request) -> web.Response:
    cancelled = await request.app[_GATEWAY].cancel(request.match_info["job_id"], by="http-api", admin=True)
    return _json({"cancelled": cancelled})


async def _health(request: web.Request) -> web.Response:
    gateway = request.app[_GATEWAY]
    servers = gateway.servers()
    ok = any(s.healthy for s in servers) or not servers
    return _json(
        {
            "ok": ok,
            "ready": ok,
            "store": gateway.store.name,
            "depth": await gateway.store.depth(),
            "servers": [dataclasses.asdict(s) for s in servers],
        },
        200 if ok else 503,
    )


async def _metrics(request: web.Request) -> web.Response:
    return await metrics_response(request.app[_GATEWAY])


async def _stats(request: web.Request) -> web.Response:
    return _json(dataclasses.asdict(await request.app[_GATEWAY].stats()))


@dataclasses.dataclass(frozen=True)
class WebhookOptions:
    """Outbound webhooks: signed with ``secret`` (None: ``callback_url`` is refused), ``attempts`` tries
    in all, the n-th retry after ``backoff_s * 2**(n-1)`` seconds."""

    secret: str | None = None
    attempts: int = 5
    backoff_s: float = 1.0
    timeout_s: float = 10.0


def make_app(gateway: Gateway, token: str, webhooks: WebhookOptions | None = None) -> web.Application:
    """The aiohttp application; ``token`` must be non-empty. Its startup begins consuming the ``http``
    events (and opens the session webhooks use); its cleanup stops both."""
    if not token:
        raise ValueError("the HTTP API needs a token (COMFYBOT_API_TOKEN)")
    options = webhooks or WebhookOptions()
    app = web.Application(middlewares=[_auth_middleware(token)], client_max_size=1024 * 1024)
    app[_GATEWAY] = gateway
    app[EVENTS] = JobEvents(gateway)
    app.router.add_post("/v1/jobs", _submit)
    app.router.add_get("/v1/jobs/{job_id}", _get)
    app.router.add_delete("/v1/jobs/{job_id}", _cancel)
    app.router.add_get("/v1/jobs/{job_id}/events", _events)
    app.router.add_get(IMAGE_ROUTE + "{path:.+}", _image)
    app.router.add_get("/v1/health", _health)
    app.router.add_get("/v1/stats", _stats)
    app.router.add_get("/v1/openapi.json", _openapi)
    app.router.add_get("/metrics", _metrics)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        hub = app[EVENTS]
        async with aiohttp.ClientSession() as session:
            if options.secret:
                hub.webhooks = WebhookSender(
                    session,
                    options.secret,
                    attempts=options.attempts,
                    backoff_s=options.backoff_s,
                    timeout_s=options.timeout_s,
                )
            hub.start()
            yield
            await hub.stop()

    async def closing(app: web.Application) -> None:
        app[EVENTS].closing.set()  # open event streams end now, not at the shutdown timeout
        for job in app[EVENTS].logs():
            job.changed.set()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(closing)
    return app


def loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine: ``localhost`` or a loopback address (127.0.0.0/8,
    ``::1``). ``0.0.0.0``, ``::``, any other address and any other name reach further."""
    if host.strip().lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


async def start_api(
    gateway: Gateway,
    token: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8787,
    webhooks: WebhookOptions | None = None,
) -> web.AppRunner:
    """Serve the API; the caller owns the returned runner (``await runner.cleanup()``). A bind beyond
    loopback logs ``http_api_exposed`` (a warning): the token is then all that guards the queue."""
    runner = web.AppRunner(make_app(gateway, token, webhooks), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("http_api_listening", host=host, port=port)
    if not loopback(host):
        log.warning(
            "http_api_exposed",
            host=host,
            port=port,
            detail="COMFYBOT_API_BIND is not a loopback address: the API is reachable from other machines, "
            "over plain HTTP; put it behind a TLS proxy or a firewall, or bind 127.0.0.1",
        )
    return runner


__all__ = ["EVENTS", "WebhookOptions", "loopback", "make_app", "start_api"]
