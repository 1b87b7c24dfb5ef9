"""The S3 bucket as the shared image store: the SigV4 signer against AWS's published examples, the blob
contract on a real S3 server (moto, checking every signature) next to Redis, failures, and two hosts."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from PIL import Image
from structlog.testing import capture_logs

from core.config import load_settings
from gateway.app import blobs_from
from gateway.blobs import Blobs, RedisBlobs, S3Blobs, SplitBlobs
from gateway.errors import StorageError
from gateway.memory import MemoryStore
from gateway.redis_store import RedisStore
from gateway.s3 import EMPTY_SHA256, Credentials, S3Client, authorization
from gateway.storage import ImageGone, ImageStore
from tests.conftest import RedisServer, S3Server, free_port

REF = "outputs/20261203/" + "c" * 64 + ".png"
DOCS_KEYS = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")


def _png(side: int = 64, color: tuple[int, int, int] = (10, 200, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), color).save(buf, "PNG")
    return buf.getvalue()


# --- the signer: AWS's own examples ---------------------------------------------------------------


def test_signature_of_the_get_vanilla_case_of_the_sigv4_test_suite() -> None:
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    headers = {"Host": "example.amazonaws.com", "X-Amz-Date": "20150830T123600Z"}
    got = authorization(
        "GET",
        "/",
        "",
        headers,
        EMPTY_SHA256,
        creds,
        region="us-east-1",
        service="service",
        amz_date="20150830T123600Z",
    )
    assert got == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    )


def test_signature_of_the_s3_docs_get_object_example() -> None:
    # "Example: GET Object" of Amazon S3's "Signature Calculations for the Authorization Header".
    headers = {
        "Host": "examplebucket.s3.amazonaws.com",
        "Range": "bytes=0-9",
        "x-amz-content-sha256": EMPTY_SHA256,
        "x-amz-date": "20130524T000000Z",
    }
    got = authorization(
        "GET",
        "/test.txt",
        "",
        headers,
        EMPTY_SHA256,
        DOCS_KEYS,
        region="us-east-1",
        service="s3",
        amz_date="20130524T000000Z",
    )
    assert got == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_signature_of_the_s3_docs_put_object_example() -> None:
    # "Example: PUT Object": a body, a key that needs encoding ($), a Date header besides x-amz-date.
    body = hashlib.sha256(b"Welcome to Amazon S3.").hexdigest()
    headers = {
        "Host": "examplebucket.s3.amazonaws.com",
        "Date": "Fri, 24 May 2013 00:00:00 GMT",
        "x-amz-date": "20130524T000000Z",
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "x-amz-content-sha256": body,
    }
    path = "/" + quote("test$file.text", safe="/-_.~")
    got = authorization(
        "PUT",
        path,
        "",
        headers,
        body,
        DOCS_KEYS,
        region="us-east-1",
        service="s3",
        amz_date="20130524T000000Z",
    )
    assert got.endswith("Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")


# --- the blob contract, on Redis and on S3 --------------------------------------------------------


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def s3_client(server: S3Server, session: aiohttp.ClientSession) -> S3Client:
    creds = Credentials(server.access_key_id, server.secret_access_key)
    return S3Client(session, server.url, server.bucket, creds, region=server.region, retry_for_s=10)


@pytest.fixture(params=["redis", "s3"])
async def blobs(
    request: pytest.FixtureRequest, tmp_path: Path, session: aiohttp.ClientSession
) -> AsyncIterator[Blobs]:
    if request.param == "redis":
        redis_server: RedisServer = request.getfixturevalue("redis_server")
        async with RedisStore(redis_server.url, retry_for_s=5) as store:
            yield RedisBlobs(store)
    else:
        yield S3Blobs(s3_client(request.getfixturevalue("s3_server"), session))


@pytest.mark.redis
async def test_blob_contract(blobs: Blobs) -> None:
    assert await blobs.get(REF) is None  # never stored
    await blobs.put(REF, b"first", ttl_s=60)
    assert await blobs.get(REF) == b"first"
    await blobs.put(REF, b"second", ttl_s=60)  # overwrite: the same name, new bytes
    assert await blobs.get(REF) == b"second"
    other = REF.replace("c" * 64, "d" * 64)
    assert await blobs.get(other) is None  # names do not collide
    large = os.urandom(12 * 1024 * 1024)  # a big upscale result
    await blobs.put(other, large, ttl_s=60)
    assert await blobs.get(other) == large
    assert await blobs.get(REF) == b"second"


async def test_objects_are_keyed_by_kind_under_the_prefix(
    s3_server: S3Server, session: aiohttp.ClientSession
) -> None:
    client = s3_client(s3_server, session)
    blobs = S3Blobs(client, prefix="bots/comfy/")
    data = _png()
    await blobs.put(REF, data, ttl_s=60)
    assert await client.get("bots/comfy/" + REF) == data  # one prefix per kind: lifecycle rules per kind
    assert await client.exists("bots/comfy/" + REF)
    async with session.get(f"{s3_server.url}/{s3_server.bucket}/bots/comfy/{REF}") as resp:
        assert resp.status == 403  # unsigned: refused, the server really checks
    await client.delete("bots/comfy/" + REF)
    assert not await client.exists("bots/comfy/" + REF)
    assert await blobs.get(REF) is None
    await client.delete("bots/comfy/" + REF)  # deleting what is gone is fine


# --- failures -------------------------------------------------------------------------------------


async def test_a_wrong_secret_is_refused_and_never_logged(
    s3_server: S3Server, session: aiohttp.ClientSession
) -> None:
    wrong = "not-the-secret-" + s3_server.secret_access_key[:6]
    client = S3Client(session, s3_server.url, s3_server.bucket, Credentials(s3_server.access_key_id, wrong))
    with capture_logs() as logs, pytest.raises(StorageError, match="SignatureDoesNotMatch"):
        await client.put("comfybot/" + REF, b"x")
    assert [e["event"] for e in logs] == ["s3_error"]  # a 403 is not retried
    assert wrong not in repr(logs) and "Signature=" not in repr(logs)
    assert wrong not in repr(client._creds)


async def test_an_unreachable_endpoint_is_retried_then_a_storage_error(
    session: aiohttp.ClientSession,
) -> None:
    client = S3Client(session, f"http://127.0.0.1:{free_port()}", "media", DOCS_KEYS, retry_for_s=0.5)
    with capture_logs() as logs, pytest.raises(StorageError, match="failed"):
        await client.get("comfybot/" + REF)
    events = [e["event"] for e in logs]
    assert events.count("s3_unavailable") >= 2 and events[-1] == "s3_gave_up"
    assert DOCS_KEYS.secret_access_key not in repr(logs)


@asynccontextmanager
async def answering(handler: Callable[[web.Request], Awaitable[web.Response]]) -> AsyncIterator[str]:
    """An HTTP server on a free port answering every GET with ``handler``; yields its URL."""
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_5xx_is_retried_until_the_server_answers(session: aiohttp.ClientSession) -> None:
    seen: list[str] = []

    async def flaky(request: web.Request) -> web.Response:
        seen.append(request.headers["x-amz-date"])
        if len(seen) <= 2:
            return web.Response(status=503, body=b"<Error><Code>SlowDown</Code></Error>")
        return web.Response(body=b"bytes")

    async with answering(flaky) as url:
        client = S3Client(session, url, "media", DOCS_KEYS, retry_for_s=10)
        with capture_logs() as logs:
            assert await client.get("comfybot/" + REF) == b"bytes"
    assert len(seen) == 3
    assert [e["event"] for e in logs] == ["s3_unavailable", "s3_unavailable"]
    assert "SlowDown" in logs[0]["error"]


async def test_a_redirect_is_an_error_not_followed(session: aiohttp.ClientSession) -> None:
    seen: list[str] = []

    async def moved(request: web.Request) -> web.Response:
        seen.append(request.path)
        body = b"<Error><Code>PermanentRedirect</Code></Error>"
        return web.Response(
            status=301, body=body, headers={"Location": str(request.url.with_path("/elsewhere"))}
        )

    async with answering(moved) as url:
        client = S3Client(session, url, "media", DOCS_KEYS, retry_for_s=10)
        with pytest.raises(StorageError, match="HTTP 301 PermanentRedirect"):
            await client.get("comfybot/" + REF)
    assert seen == ["/media/comfybot/" + REF]  # asked once, the redirect not followed with a stale signature


# --- two hosts: results in the bucket, previews in Redis ------------------------------------------


@pytest.mark.redis
async def test_another_host_reads_results_from_the_bucket_and_previews_from_redis(
    tmp_path: Path, redis_server: RedisServer, s3_server: S3Server, session: aiohttp.ClientSession
) -> None:
    env = s3_server.env() | {"REDIS_URL": redis_server.url}
    settings = load_settings(env)
    async with RedisStore(redis_server.url, retry_for_s=5) as store:
        shared = blobs_from(settings, store, session)
        assert isinstance(shared, SplitBlobs)
        worker = ImageStore(tmp_path / "worker", shared=shared)
        front = ImageStore(tmp_path / "front", shared=shared)
        out = await worker.save_output("job1", 0, _png())
        preview = await worker.save_preview("job1", _png(32))
        redis_keys = {k.decode() async for k in store.redis.scan_iter("comfybot:blob:*")}
        assert redis_keys == {"comfybot:blob:" + preview.path}, "Redis holds only the preview"
        await store.redis.delete(*redis_keys)  # as if Redis's short TTL had run out
        assert await front.read(out) == _png()  # from the bucket
        assert (tmp_path / "front" / out.path).is_file()  # and kept here after
        with pytest.raises(ImageGone):
            await front.read(preview)  # previews live in Redis only
        bucket = s3_client(s3_server, session)
        await bucket.delete("comfybot/" + out.path)  # the lifecycle rule expired it
        with pytest.raises(ImageGone):
            await ImageStore(tmp_path / "third", shared=shared).read(out)


async def test_without_a_bucket_the_images_stay_in_redis_or_nowhere(session: aiohttp.ClientSession) -> None:
    assert blobs_from(load_settings({}), MemoryStore(), session) is None
    embedded_with_bucket = blobs_from(
        load_settings(
            {"COMFYBOT_S3_BUCKET": "media", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}
        ),
        MemoryStore(),
        session,
    )
    assert isinstance(embedded_with_bucket, SplitBlobs) and embedded_with_bucket.previews is None
