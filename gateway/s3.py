"""A small S3 client: AWS Signature Version 4 over aiohttp, path-style, objects only.

Enough of S3 for :class:`gateway.blobs.S3Blobs` — PUT, GET, HEAD and DELETE of one object — and
nothing else, so no SDK is needed. Path-style addressing (``<endpoint>/<bucket>/<key>``) works with
AWS S3, MinIO, Cloudflare R2, Ceph RGW and the moto server the tests start. Every request carries
``x-amz-content-sha256`` with the SHA-256 of its body, which S3 checks on arrival.

Errors: network failures, timeouts, 5xx and 429 are retried with backoff for ``retry_for_s`` (logged
``s3_unavailable``), as :mod:`gateway.redis_base` does for Redis, then raised as
:class:`~gateway.errors.StorageError`. A 404 is an answer (``None``/``False``); any other 4xx (bad
credentials, no such bucket) is a :class:`StorageError` at once. Logs name the bucket and key, never
the secret, the signature or a presigned URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import quote, urlsplit

import aiohttp
from yarl import URL

from core.logs import get_logger
from gateway.errors import StorageError

log = get_logger("gateway")
T = TypeVar("T")

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# A connection silent this long is dead (and retried): that bounds a download of any size. An upload also
# gets a total limit (writes have no stall timeout): 30 s plus its body at 256 KB/s (30 MB: 2 min).
STALL_TIMEOUT_S = 30.0
SLOWEST_UPLOAD_BPS = 256 * 1024
_SPACES = re.compile(r"\s+")
_ERROR_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")


@dataclass(frozen=True)
class Credentials:
    """An access key pair (and, for temporary credentials, the session token). Never printed."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The day's key: ``HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")``."""
    return _hmac(_hmac(_hmac(_hmac(("AWS4" + secret).encode(), date), region), service), "aws4_request")


def canonical_request(
    method: str, path: str, query: str, headers: Mapping[str, str], payload_sha256: str
) -> tuple[str, str]:
    """``(canonical request, signed header names)``. ``path`` is already URI-encoded; ``query`` is the
    encoded query string (``a=1&b=2``) or empty; every header given is signed."""
    canon = {k.strip().lower(): _SPACES.sub(" ", v.strip()) for k, v in headers.items()}
    names = sorted(canon)
    params = sorted(tuple(p.split("=", 1)) if "=" in p else (p, "") for p in query.split("&") if p)
    lines = [
        method,
        path or "/",
        "&".join(f"{k}={v}" for k, v in params),
        "".join(f"{n}:{canon[n]}\n" for n in names),
        ";".join(names),
        payload_sha256,
    ]
    return "\n".join(lines), ";".join(names)


def authorization(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    payload_sha256: str,
    creds: Credentials,
    *,
    region: str,
    service: str,
    amz_date: str,
) -> str:
    """The ``Authorization`` header of a request whose ``headers`` (``host``, ``x-amz-date`` = ``amz_date``
    and any other header to sign) are final. Pure: checked against AWS's published examples."""
    request, signed = canonical_request(method, path, query, headers, payload_sha256)
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(request.encode()).hexdigest()])
    key = signing_key(creds.secret_access_key, amz_date[:8], region, service)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"{ALGORITHM} Credential={creds.access_key_id}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )


@dataclass(frozen=True)
class S3Response:
    status: int
    body: bytes


class _Retry(Exception):
    """A 5xx or 429: worth asking again."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(f"HTTP {status} {code}")
        self.status = status


class S3Client:
    """One bucket on one S3-compatible endpoint (``https://s3.eu-west-1.amazonaws.com``,
    ``http://minio:9000``, ``https://<account>.r2.cloudflarestorage.com``)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        endpoint: str,
        bucket: str,
        creds: Credentials,
        *,
        region: str = "us-east-1",
        retry_for_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        parts = urlsplit(endpoint.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not an http(s) endpoint: {endpoint!r}")
        self.session = session
        self.bucket = bucket
        self.region = region
        self.retry_for_s = retry_for_s
        self._creds = creds
        self._clock = clock
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._host = parts.netloc  # aiohttp sends the port when it is not the scheme's default: so do we
        self._base_path = parts.path  # an endpoint behind a path prefix

    def _path(self, key: str) -> str:
        return f"{self._base_path}/{quote(self.bucket, safe='')}/{quote(key, safe='/-_.~')}"

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        await self._call("PUT", key, data, {"content-type": content_type}, ok=(200,))

    async def get(self, key: str) -> bytes | None:
        """The object's bytes, or ``None`` when there is no such key (never stored, or expired)."""
        resp = await self._call("GET", key, b"", {}, ok=(200, 404))
        return resp.body if resp.status == 200 else None

    async def exists(self, key: str) -> bool:
        resp = await self._call("HEAD", key, b"", {}, ok=(200, 404))
        return resp.status == 200

    async def delete(self, key: str) -> None:
        """Remove ``key``; deleting a key that is not there is not an error (S3 answers 204 either way)."""
        await self._call("DELETE", key, b"", {}, ok=(200, 204, 404))

    async def check(self, key: str) -> None:
        """Write, read back and delete a small object at ``key``: what ``comfybot doctor`` runs. Raises
        :class:`StorageError` (bad credentials, no such bucket, unreachable) naming the step."""
        probe = b"comfybot doctor probe"
        await self.put(key, probe, "text/plain")
        if await self.get(key) != probe:
            raise StorageError(f"S3 {self.bucket}/{key}: read back something else than was written")
        await self.delete(key)

    def _signed_headers(
        self, method: str, path: str, data: bytes, extra: Mapping[str, str]
    ) -> dict[str, str]:
        amz_date = datetime.fromtimestamp(self._clock(), UTC).strftime("%Y%m%dT%H%M%SZ")
        payload = hashlib.sha256(data).hexdigest() if data else EMPTY_SHA256
        headers = {"host": self._host, "x-amz-content-sha256": payload, "x-amz-date": amz_date, **extra}
        if self._creds.session_token:
            headers["x-amz-security-token"] = self._creds.session_token
        headers["authorization"] = authorization(
            method,
            path,
            "",
            headers,
            payload,
            self._creds,
            region=self.region,
            service="s3",
            amz_date=amz_date,
        )
        return headers

    async def _once(
        self, method: str, key: str, data: bytes, extra: Mapping[str, str], ok: tuple[int, ...]
    ) -> S3Response:
        path = self._path(key)
        headers = self._signed_headers(method, path, data, extra)  # signed per attempt: x-amz-date is fresh
        url = URL(self._origin + path, encoded=True)  # yarl must not re-encode what was signed
        async with self.session.request(
            method,
            url,
            data=io.BytesIO(data) if data else None,  # a fresh payload per attempt; Content-Length is set
            headers=headers,
            timeout=aiohttp.ClientTimeout(
                total=STALL_TIMEOUT_S + len(data) / SLOWEST_UPLOAD_BPS if data else None,
                sock_connect=10,
                sock_read=STALL_TIMEOUT_S,
            ),
            allow_redirects=False,  # a redirect (wrong region) signed for another host: say so instead
        ) as resp:
            body = await resp.read()
        if resp.status in ok:
            return S3Response(resp.status, body)
        match = _ERROR_CODE.search(body)
        code = match.group(1).decode(errors="replace") if match else ""
        if resp.status >= 500 or resp.status == 429:
            raise _Retry(resp.status, code)
        log.error("s3_error", op=method, bucket=self.bucket, key=key, status=resp.status, code=code)
        raise StorageError(f"S3 {method} {self.bucket}/{key}: HTTP {resp.status} {code}".strip())

    async def _call(
        self, method: str, key: str, data: bytes, extra: Mapping[str, str], *, ok: tuple[int, ...]
    ) -> S3Response:
        return await self._retry(lambda: self._once(method, key, data, extra, ok), method, key)

    async def _retry(self, op: Callable[[], Awaitable[T]], method: str, key: str) -> T:
        deadline = time.monotonic() + self.retry_for_s
        delay = 0.05
        while True:
            try:
                return await op()
            except (aiohttp.ClientError, OSError, TimeoutError, _Retry) as exc:
                if time.monotonic() + delay > deadline:
                    log.error("s3_gave_up", op=method, bucket=self.bucket, key=key, error=str(exc))
                    raise StorageError(f"S3 {method} {self.bucket}/{key} failed: {exc}") from exc
                log.warning(
                    "s3_unavailable", op=method, bucket=self.bucket, key=key, error=str(exc), retry_in_s=delay
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


__all__ = ["Credentials", "EMPTY_SHA256", "S3Client", "authorization", "canonical_request", "signing_key"]
