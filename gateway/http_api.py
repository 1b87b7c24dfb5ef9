"""A small HTTP API over the gateway (aiohttp.web), for scripts and other services.

Binds to 127.0.0.1 by default (a bind beyond loopback logs the warning ``http_api_exposed``) and requires
``Authorization: Bearer <token>`` on every route.

* ``POST /v1/jobs`` — a ``JobRequest`` as JSON without ``platform`` (it becomes ``"http"``) → 202
  ``{job_id, position, depth, eta_s, blocked}`` (``blocked``: why no server can run it now, or null);
  refusals → 4xx/429/503 ``{code, detail, field, reason, retry_after_s}`` — an image path the gateway
  did not hand out (``../../etc/passwd``) is a 400 naming ``inputs.<name>.path``, before anything is
  queued.
* ``GET /v1/jobs/{id}`` — the job record (state, images, failure...) or 404.
* ``DELETE /v1/jobs/{id}`` — cancel (the token holder acts as an admin) → 200 ``{cancelled: bool}``.
* ``GET /v1/health`` — ``ready``, job store, queue depth, and each ComfyUI server's state; 503 and
  ``ready: false`` while none is up (jobs are still accepted: they wait, up to the queue timeout).
* ``GET /v1/stats`` — queue depth, the last 24 h's outcomes, mean run time per workflow, the servers.
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web
from pydantic import ValidationError

from gateway.models import FailureCode, JobRequest
from gateway.service import Accepted, Gateway

log = structlog.get_logger(component="gateway")

_GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
_STATUS = {
    FailureCode.RATE_LIMITED: 429,
    FailureCode.TOO_MANY_PENDING: 429,
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


async def _submit(request: web.Request) -> web.Response:
    try:
        body = orjson.loads(await request.read())
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        job = JobRequest.model_validate({**body, "platform": "http"})
    except (ValueError, ValidationError) as exc:
        return _json({"code": FailureCode.INVALID_INPUT.value, "detail": str(exc)[:500]}, 400)
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


async def _stats(request: web.Request) -> web.Response:
    return _json(dataclasses.asdict(await request.app[_GATEWAY].stats()))


def make_app(gateway: Gateway, token: str) -> web.Application:
    """The aiohttp application; ``token`` must be non-empty."""
    if not token:
        raise ValueError("the HTTP API needs a token (COMFYBOT_API_TOKEN)")
    app = web.Application(middlewares=[_auth_middleware(token)], client_max_size=1024 * 1024)
    app[_GATEWAY] = gateway
    app.router.add_post("/v1/jobs", _submit)
    app.router.add_get("/v1/jobs/{job_id}", _get)
    app.router.add_delete("/v1/jobs/{job_id}", _cancel)
    app.router.add_get("/v1/health", _health)
    app.router.add_get("/v1/stats", _stats)
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
    gateway: Gateway, token: str, *, host: str = "127.0.0.1", port: int = 8787
) -> web.AppRunner:
    """Serve the API; the caller owns the returned runner (``await runner.cleanup()``). A bind beyond
    loopback logs ``http_api_exposed`` (a warning): the token is then all that guards the queue."""
    runner = web.AppRunner(make_app(gateway, token), access_log=None)
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


__all__ = ["loopback", "make_app", "start_api"]
