"""Assembling a gateway from settings: store, ComfyUI clients, pool, workers, cleanup.

Used by ``python -m gateway`` and by ``comfybot run``; both open the aiohttp session themselves and
pass it in (whoever opens a resource closes it)::

    async with aiohttp.ClientSession() as session, open_gateway(settings, session) as gateway:
        result = await gateway.submit(request)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace

import aiohttp

from comfy import ComfyClient
from comfy.workflows import WorkflowRegistry, load_workflows
from core.config import LimitSettings, Settings
from core.logs import get_logger
from gateway.affinity import Affinity
from gateway.blobs import Blobs, RedisBlobs, S3Blobs, SplitBlobs
from gateway.execution import Executor
from gateway.fair import FairPolicy
from gateway.limits import AccessPolicy, Limits, PromptFilter
from gateway.memory import MemoryStore
from gateway.models import Role
from gateway.quotas import QuotaPolicy, Window
from gateway.redis_store import RedisStore
from gateway.s3 import Credentials, S3Client
from gateway.servers import ServerPool
from gateway.service import Gateway
from gateway.sqlite_store import SqliteStore
from gateway.storage import ImageStore, Retention
from gateway.store import Store
from gateway.worker import Worker

log = get_logger("gateway")


@dataclass(frozen=True)
class WorkerOptions:
    """Knobs of the worker side that are not user-facing settings (tests shorten them)."""

    lease_s: float = 30.0
    max_attempts: int = 3
    retry_backoff_s: float = 0.5
    retry_acquire_timeout_s: float = 10.0  # after a connection failure, how long to wait for a healthy server
    health_interval_s: float = 5.0
    cleanup_interval_s: float = 600.0
    consumer: str | None = None
    affinity: bool = True  # False: plain least-busy choice of server (benchmarks compare)
    affinity_wait_s: float = 3.0  # COMFYBOT_AFFINITY_WAIT_S (open_gateway sets it from the settings)


def default_replica_id() -> str:
    """``<host>-<pid>``: unique among live processes; a restart is a new replica (what the old one owed
    is taken over after the lease, as from any dead replica)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def limits_from(settings: LimitSettings) -> tuple[Limits, AccessPolicy]:
    """The gateway's limits and access policy from the ``limits`` settings section."""
    limits = Limits(
        max_pending_per_user=settings.max_pending_per_user,
        rate_count=settings.rate_per_user.count,
        rate_window_s=settings.rate_per_user.per_s,
        queue_cap=settings.queue_cap,
        queue_timeout_s=settings.queue_timeout_s,
        prompt_filter=PromptFilter(
            settings.blocklist_words, settings.blocklist_patterns, max_length=settings.max_prompt_length
        ),
        max_image_bytes=int(settings.max_image_bytes),
        max_image_pixels=settings.max_image_pixels,
        max_input_side=settings.max_input_side,
        quotas=quota_policy(settings),
    )
    access = AccessPolicy(
        settings.access,
        allowed_users=settings.allowed_users,
        allowed_chats=settings.allowed_chats,
        remix_chats=settings.remix_chats,
        admins=settings.admins,
        banned=settings.banned,
    )
    return limits, access


def quota_policy(settings: LimitSettings) -> QuotaPolicy | None:
    """The hourly/daily job quotas of users and admins, or None when none is set."""
    by_role: dict[Role, dict[Window, int]] = {}
    for role, hourly, daily in (
        (Role.USER, settings.quota_hourly, settings.quota_daily),
        (Role.ADMIN, settings.admin_quota_hourly, settings.admin_quota_daily),
    ):
        windows: dict[Window, int] = {}
        if hourly is not None:
            windows["hour"] = hourly
        if daily is not None:
            windows["day"] = daily
        if windows:
            by_role[role] = windows
    return QuotaPolicy(by_role) if by_role else None


def store_from(settings: Settings) -> Store:
    """Redis when ``REDIS_URL`` is set; else the embedded store: SQLite under the data dir (the default)
    or, with ``COMFYBOT_STORE=memory``, this process's memory. Its take order: ``COMFYBOT_QUEUE_ORDER``."""
    store: Store
    if settings.redis is not None:
        store = RedisStore(settings.redis.url(), event_lease_s=settings.comfy.replica_lease_s)
    elif settings.paths.store == "memory":
        store = MemoryStore()
    else:
        store = SqliteStore(settings.paths.data_dir / "comfybot.db")
    limits = settings.limits
    weights = dict.fromkeys(limits.admins, limits.admin_queue_weight)
    store.fair = FairPolicy(order=limits.queue_order, weights=weights)
    return store


def blobs_from(settings: Settings, store: Store, session: aiohttp.ClientSession) -> Blobs | None:
    """Where images are shared between processes: with ``COMFYBOT_S3_BUCKET`` inputs and outputs in the
    bucket (previews in Redis, if any); else, with Redis, everything in Redis; else nowhere."""
    redis = RedisBlobs(store) if isinstance(store, RedisStore) else None
    client = s3_client_from(settings, session)
    return redis if client is None else SplitBlobs(S3Blobs(client, prefix=settings.s3.prefix), redis)


def s3_client_from(
    settings: Settings, session: aiohttp.ClientSession, *, retry_for_s: float = 60.0
) -> S3Client | None:
    """The configured bucket's client, or ``None`` without ``COMFYBOT_S3_BUCKET``."""
    s3 = settings.s3
    if s3.bucket is None or s3.access_key_id is None or s3.secret_access_key is None:
        return None
    creds = Credentials(
        s3.access_key_id,
        s3.secret_access_key.get_secret_value(),
        s3.session_token.get_secret_value() if s3.session_token is not None else None,
    )
    return S3Client(session, s3.endpoint, s3.bucket, creds, region=s3.region, retry_for_s=retry_for_s)


@asynccontextmanager
async def run_gateway(
    store: Store,
    registry: WorkflowRegistry,
    images: ImageStore,
    clients: list[ComfyClient],
    *,
    capacity: int = 2,
    limits: Limits | None = None,
    access: AccessPolicy | None = None,
    workers: bool = True,
    options: WorkerOptions | None = None,
) -> AsyncIterator[Gateway]:
    """A :class:`Gateway` over opened resources, with a worker running while the block runs.

    ``workers=False`` makes a front-end-only gateway (jobs run in other processes sharing Redis).
    """
    options = options or WorkerOptions()
    affinity = Affinity(wait_s=options.affinity_wait_s, enabled=options.affinity)
    pool = ServerPool(
        clients, capacity=capacity, health_interval_s=options.health_interval_s, affinity=affinity
    )
    gateway = Gateway(store, registry, images, limits=limits, access=access, pool=pool)
    tasks: list[asyncio.Task[None]] = []
    if workers and clients:
        await pool.check_all()
        executor = Executor(store, images, dead_after_s=pool.dead_after_s)
        worker = Worker(
            store,
            pool,
            registry,
            executor,
            consumer=options.consumer,
            lease_s=options.lease_s,
            max_attempts=options.max_attempts,
            retry_backoff_s=options.retry_backoff_s,
            retry_acquire_timeout_s=options.retry_acquire_timeout_s,
            queue_timeout_s=(limits or Limits()).queue_timeout_s,
        )
        gateway.worker = worker
        tasks = [
            asyncio.create_task(worker.run(), name="gateway-worker"),
            asyncio.create_task(pool.run_health_checks(), name="gateway-health"),
            asyncio.create_task(
                images.run_cleanup_forever(options.cleanup_interval_s), name="gateway-cleanup"
            ),
        ]
    try:
        yield gateway
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


@asynccontextmanager
async def open_gateway(
    settings: Settings,
    session: aiohttp.ClientSession,
    *,
    workers: bool = True,
    options: WorkerOptions | None = None,
) -> AsyncIterator[Gateway]:
    """Everything the gateway needs, opened from ``settings`` and closed on exit."""
    dirs = [settings.paths.workflows_dir] if settings.paths.workflows_dir is not None else []
    registry = load_workflows(dirs, settings.models)
    retention = Retention(inputs_s=settings.retention.inputs_s, outputs_s=settings.retention.outputs_s)
    limits, access = limits_from(settings.limits)
    comfy = settings.comfy
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(store_from(settings))
        # With Redis, processes may run on other machines: images are shared through it (or the bucket).
        images = ImageStore(
            settings.paths.data_dir,
            retention=retention,
            shared=blobs_from(settings, store, session),
            shared_ttl_s=settings.retention.shared_s,
        )
        clients = [
            await stack.enter_async_context(
                ComfyClient(
                    url,
                    session,
                    ws_stall_timeout_s=comfy.ws_stall_timeout_s,
                    request_timeout_s=comfy.request_timeout_s,
                    preview_method=None if comfy.preview_method == "default" else comfy.preview_method,
                )
            )
            for url in comfy.urls
        ]
        log.info(
            "gateway_starting",
            store=store.name,
            servers=[c.name for c in clients],
            workflows=registry.names(),
            workers=workers,
            s3_bucket=settings.s3.bucket,
        )
        gateway = await stack.enter_async_context(
            run_gateway(
                store,
                registry,
                images,
                clients,
                capacity=comfy.capacity,
                limits=limits,
                access=access,
                workers=workers,
                options=replace(options or WorkerOptions(), affinity_wait_s=comfy.affinity_wait_s),
            )
        )
        gateway.replica = comfy.replica_id or default_replica_id()
        gateway.replica_lease_s = comfy.replica_lease_s
        yield gateway


async def shut_down(gateway: Gateway, grace_s: float, again: asyncio.Event) -> None:
    """Run :meth:`Gateway.shut_down` while the front ends still deliver; a second SIGTERM/SIGINT (the
    event ``again``) cuts the grace period short. Shared by ``comfybot run`` and ``python -m gateway``."""
    draining = asyncio.create_task(gateway.shut_down(grace_s), name="shutdown")
    second = asyncio.create_task(again.wait(), name="stop-signal-again")
    await asyncio.wait([draining, second], return_when=asyncio.FIRST_COMPLETED)
    if not draining.done():
        log.warning("shutdown_forced", detail="second stop signal: running jobs left to their leases")
        draining.cancel()
    second.cancel()
    await asyncio.gather(draining, second, return_exceptions=True)
    if not draining.cancelled() and (exc := draining.exception()) is not None:
        log.error("shutdown_failed", error=repr(exc))


__all__ = [
    "WorkerOptions",
    "blobs_from",
    "default_replica_id",
    "s3_client_from",
    "store_from",
    "limits_from",
    "open_gateway",
    "run_gateway",
    "shut_down",
]
