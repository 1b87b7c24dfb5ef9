"""Outbound webhooks of the HTTP API: a job's ``callback_url`` is POSTed its outcome, signed.

The body is the outcome as JSON (the same object the job's event stream sends last). Two headers let the
receiver check it came from us and is fresh:

* ``X-Comfybot-Timestamp: <unix seconds>``
* ``X-Comfybot-Signature: sha256=<hex>`` — HMAC-SHA256 with ``COMFYBOT_WEBHOOK_SECRET`` as the key over
  ``"<timestamp>.<body>"`` (the timestamp header's value, a dot, the raw body bytes).

Any 2xx answer is a delivery. Anything else (another status, a refused connection, no answer within
:attr:`WebhookSender.timeout_s`) is retried after ``backoff_s * 2**(attempt-1)`` seconds, up to
``attempts`` tries in all. Every try is logged: ``webhook_sent`` or ``webhook_failed`` with the
request id, the attempt and the status (or the error); after the last failed try ``webhook_gave_up``.
The secret is never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import structlog

from core.logs import get_logger

log = get_logger("gateway")

SIGNATURE_HEADER = "X-Comfybot-Signature"
TIMESTAMP_HEADER = "X-Comfybot-Timestamp"
EVENT_HEADER = "X-Comfybot-Event"
#: the longest ``callback_url`` accepted
MAX_URL_LENGTH = 2000


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 keyed with ``secret`` over ``"<timestamp>.<body>"``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """Whether ``header`` is the signature of ``body`` sent at ``timestamp`` (constant time)."""
    return hmac.compare_digest(signature(secret, timestamp, body), header)


def callback_url_problem(url: Any) -> str | None:
    """Why ``url`` cannot be a callback (a reason code), or None: only absolute http(s) URLs with a host."""
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH:
        return "bad_url"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "bad_url"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "bad_scheme" if parts.scheme not in ("http", "https") else "bad_url"
    return None


class WebhookSender:
    """POSTs signed JSON to callback URLs with bounded, exponentially backed-off retries."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        secret: str,
        *,
        attempts: int = 5,
        backoff_s: float = 1.0,
        timeout_s: float = 10.0,
    ) -> None:
        if not secret:
            raise ValueError("webhooks need a secret (COMFYBOT_WEBHOOK_SECRET)")
        self._session = session
        self._secret = secret
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s

    async def deliver(self, url: str, payload: dict[str, Any], *, request_id: str, job_id: str) -> bool:
        """Send ``payload`` to ``url`` until a 2xx answer or the last attempt; True if delivered."""
        body = orjson.dumps(payload)
        event = str(payload.get("kind", ""))
        host = urlsplit(url).hostname
        with structlog.contextvars.bound_contextvars(request_id=request_id, job_id=job_id):
            for attempt in range(1, self.attempts + 1):
                timestamp = str(int(time.time()))
                headers = {
                    "Content-Type": "application/json",
                    TIMESTAMP_HEADER: timestamp,
                    SIGNATURE_HEADER: signature(self._secret, timestamp, body),
                    EVENT_HEADER: event,
                }
                status: int | None = None
                error: str | None = None
                try:
                    timeout = aiohttp.ClientTimeout(total=self.timeout_s)
                    async with self._session.post(url, data=body, headers=headers, timeout=timeout) as resp:
                        status = resp.status
                        await resp.read()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    error = type(exc).__name__
                if status is not None and 200 <= status < 300:
                    log.info("webhook_sent", attempt=attempt, status=status, host=host, kind=event)
                    return True
                log.warning(
                    "webhook_failed", attempt=attempt, status=status, error=error, host=host, kind=event
                )
                if attempt < self.attempts:
                    await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            log.error("webhook_gave_up", attempts=self.attempts, host=host, kind=event)
            return False


__all__ = [
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookSender",
    "callback_url_problem",
    "signature",
    "verify",
]
