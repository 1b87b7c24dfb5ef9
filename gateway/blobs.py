"""Images shared between machines: the bytes of every stored image also go to Redis when it is in use.

Files under the data dir stay the working copy (a worker reads its inputs there, a front end its
results); a process that does not have a file — it runs on another machine, or another data dir —
fetches it once from the shared copy and keeps it. Keys are the image references themselves
(``blob:outputs/20261203/<sha256>.png``), so content is stored once however many jobs make it.

What it costs: one Redis string per distinct image, alive for ``ttl_s`` (capped by the kind's
retention; previews ten minutes). An image larger than ``max_bytes`` is not shared (logged
``image_not_shared``): a process elsewhere then reports it gone, as it would a file past retention.

With an S3 bucket configured (``COMFYBOT_S3_BUCKET``) inputs and outputs go to :class:`S3Blobs` instead,
for the whole output retention, and Redis keeps only the small records and the live previews
(:class:`SplitBlobs`). Objects are ``<prefix><ref>`` (``comfybot/outputs/20261203/<sha256>.png``), one key
prefix per kind, so the bucket's lifecycle rules expire each kind after its retention; the time to live
passed to ``put`` is not sent (S3 has no per-object expiry).
"""

from __future__ import annotations

from typing import Protocol

from core.logs import get_logger
from gateway.redis_store import RedisStore
from gateway.s3 import S3Client

log = get_logger("gateway")

SHARED_TTL_S = 24 * 3600.0  # default life of a shared input or output
PREVIEW_TTL_S = 600.0
SHARED_MAX_BYTES = 64 * 1024 * 1024


class Blobs(Protocol):
    """Where stored images are shared: ``put`` with a time to live, ``get`` or ``None`` when absent."""

    async def put(self, ref: str, data: bytes, ttl_s: float) -> None: ...

    async def get(self, ref: str) -> bytes | None: ...


class RedisBlobs:
    """:class:`Blobs` in the job store's Redis, under ``<prefix>blob:<ref>``."""

    def __init__(self, store: RedisStore, *, max_bytes: int = SHARED_MAX_BYTES) -> None:
        self.store = store
        self.max_bytes = max_bytes

    async def put(self, ref: str, data: bytes, ttl_s: float) -> None:
        if len(data) > self.max_bytes:
            log.warning("image_not_shared", path=ref, bytes=len(data), max_bytes=self.max_bytes)
            return
        await self.store.put_blob(ref, data, max(int(ttl_s * 1000), 1))

    async def get(self, ref: str) -> bytes | None:
        return await self.store.get_blob(ref)


_CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}


class S3Blobs:
    """:class:`Blobs` in an S3-compatible bucket, under ``<prefix><ref>``; expiry is the bucket's
    lifecycle rule. Network trouble is retried inside :class:`~gateway.s3.S3Client`, then raised as
    :class:`~gateway.errors.StorageError`; an absent object is ``None``."""

    def __init__(self, client: S3Client, *, prefix: str = "comfybot/") -> None:
        self.client = client
        self.prefix = prefix

    def key(self, ref: str) -> str:
        return self.prefix + ref

    async def put(self, ref: str, data: bytes, ttl_s: float) -> None:
        ext = ref.rsplit(".", 1)[-1]
        await self.client.put(self.key(ref), data, _CONTENT_TYPES.get(ext, "application/octet-stream"))

    async def get(self, ref: str) -> bytes | None:
        return await self.client.get(self.key(ref))


class SplitBlobs:
    """Inputs and outputs in ``bulk`` (the bucket), live previews in ``previews`` (Redis, or nowhere):
    a preview is rewritten every second and worthless a minute later, a result is kept for weeks."""

    def __init__(self, bulk: Blobs, previews: Blobs | None) -> None:
        self.bulk = bulk
        self.previews = previews

    def _for(self, ref: str) -> Blobs | None:
        return self.previews if ref.startswith("previews/") else self.bulk

    async def put(self, ref: str, data: bytes, ttl_s: float) -> None:
        target = self._for(ref)
        if target is not None:
            await target.put(ref, data, ttl_s)

    async def get(self, ref: str) -> bytes | None:
        target = self._for(ref)
        return None if target is None else await target.get(ref)


__all__ = [
    "PREVIEW_TTL_S",
    "SHARED_MAX_BYTES",
    "SHARED_TTL_S",
    "Blobs",
    "RedisBlobs",
    "S3Blobs",
    "SplitBlobs",
]
