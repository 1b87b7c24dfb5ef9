"""``comfybot run`` and ``comfybot doctor``: the one startup module of the all-in-one process.

It decides what this process is from the settings alone, opens the resources in nested ``async with``
blocks and passes them down (STYLE.md §1, §9):

- chat front ends that have a token (Telegram, Discord), the HTTP API when enabled, and workers for
  ``COMFYUI_URLS``: the usual single process;
- with ``REDIS_URL``: the same process can be front-end-only (no ``COMFYUI_URLS``) or worker-only
  (no chat token) and share the queue with any number of others.

A configuration that can do nothing useful is refused with one line on stderr and exit status 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import TYPE_CHECKING

import aiohttp

from comfy import ComfyClient
from comfy.errors import ComfyError
from comfy.workflows import WorkflowRegistry, check_object_info, load_workflows
from core.config import Settings
from core.logs import get_logger

if TYPE_CHECKING:
    from aiohttp import web

    from bot.startup import StartupRefused
    from gateway.service import Gateway

log = get_logger("comfybot")

EXIT_NOTHING_TO_DO = 2


def plan(settings: Settings) -> str | None:
    """Why this configuration cannot run (one line), or None when it can."""
    front_end = settings.telegram.enabled or settings.discord.enabled or settings.api.enabled
    if not settings.comfy.urls and settings.redis is None:
        return (
            "COMFYUI_URLS is not set: no ComfyUI server would run the jobs "
            "(or set REDIS_URL to share a queue)"
        )
    if not front_end and settings.redis is None:
        return (
            "no front end is configured: set TELEGRAM_BOT_TOKEN, DISCORD_BOT_TOKEN or COMFYBOT_API_ENABLED "
            "(or REDIS_URL to run this process as a worker for other front ends)"
        )
    if not front_end and not settings.comfy.urls:
        return "neither a front end (a chat token) nor ComfyUI servers (COMFYUI_URLS): nothing to run"
    return None


def _refuse(reason: str) -> int:
    log.error("startup_refused", reason=reason)
    sys.stderr.write(f"comfybot: {reason}\n")
    return EXIT_NOTHING_TO_DO


class _PortTaken(Exception):
    """A port to listen on is in use; the message is the refusal's one line."""


async def _start_http(
    settings: Settings, gateway: Gateway, stack: contextlib.AsyncExitStack
) -> web.AppRunner | None:
    """Start the HTTP API (when enabled) and the metrics endpoint (when a port is set), both cleaned
    up by ``stack``; returns the API's runner, or None without one. Raises :class:`_PortTaken`."""
    from gateway.http_api import WebhookOptions, start_api
    from gateway.metrics import start_metrics

    api = None
    if settings.api.enabled and settings.api.token is not None:  # load_settings demands the token
        try:
            api = await start_api(
                gateway,
                settings.api.token.get_secret_value(),
                host=settings.api.bind,
                port=settings.api.port,
                webhooks=WebhookOptions(secret=settings.api.webhook_secret_value),
            )
        except OSError as exc:  # the port is taken: say so in one line
            raise _PortTaken(
                f"COMFYBOT_API_PORT: cannot listen on {settings.api.bind}:{settings.api.port} "
                f"({exc.strerror})"
            ) from exc
        stack.push_async_callback(api.cleanup)
    if settings.api.metrics_port is not None:
        try:
            metrics = await start_metrics(
                gateway, host=settings.api.metrics_bind, port=settings.api.metrics_port
            )
        except OSError as exc:
            raise _PortTaken(
                f"COMFYBOT_METRICS_PORT: cannot listen on {settings.api.metrics_port} ({exc.strerror})"
            ) from exc
        stack.push_async_callback(metrics.cleanup)
    return api


def _start_front_ends(settings: Settings, gateway: Gateway) -> list[asyncio.Task[None]]:
    """One task per configured chat front end (Telegram, Discord)."""
    from bot.discord.app import run_discord
    from bot.telegram.app import run_telegram

    tasks: list[asyncio.Task[None]] = []
    if settings.telegram.enabled:
        tasks.append(
            asyncio.create_task(run_telegram(settings.telegram, gateway, gateway.registry), name="telegram")
        )
    if settings.discord.enabled:
        tasks.append(
            asyncio.create_task(run_discord(settings.discord, gateway, gateway.registry), name="discord")
        )
    return tasks


async def _wait_and_stop(
    settings: Settings, gateway: Gateway, tasks: list[asyncio.Task[None]], stop: asyncio.Event
) -> tuple[bool, list[StartupRefused]]:
    """Wait for a stop signal or a front end to end, shut the gateway down, stop the front ends.

    Returns whether a front end failed and, of their errors, the startup refusals (a bad token)."""
    from bot.startup import StartupRefused
    from gateway.app import shut_down

    stopper = asyncio.create_task(stop.wait(), name="stop-signal")
    done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    failed = [t for t in done if t is not stopper and not t.cancelled() and t.exception() is not None]
    stop.clear()
    await shut_down(gateway, settings.comfy.shutdown_grace_s, stop)
    for task in [stopper, *tasks]:
        task.cancel()
    await asyncio.gather(stopper, *tasks, return_exceptions=True)
    refused = [e for t in failed if isinstance(e := t.exception(), StartupRefused)]
    for task in failed:
        if not isinstance(task.exception(), StartupRefused):
            log.error("front_end_crashed", task=task.get_name(), exc_info=task.exception())
    return bool(failed), refused


async def run(settings: Settings) -> int:
    """Run everything the settings configure until SIGINT/SIGTERM. Returns the exit status."""
    reason = plan(settings)
    if reason is not None:
        return _refuse(reason)
    # Imported here so `comfybot --help`, `monitor` and `trace` stay fast and import no chat library.
    from gateway.app import open_gateway

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows' default loop
            loop.add_signal_handler(sig, stop.set)

    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        gateway = await stack.enter_async_context(
            open_gateway(settings, session, workers=bool(settings.comfy.urls))
        )
        try:
            api = await _start_http(settings, gateway, stack)
        except _PortTaken as exc:
            return _refuse(str(exc))
        tasks = _start_front_ends(settings, gateway)
        if not tasks and api is None:
            log.info("worker_only", detail="no front end configured; running jobs from the shared queue")
        front_ends = [t.get_name() for t in tasks] + (["http_api"] if api is not None else [])
        log.info(
            "comfybot_started",
            front_ends=front_ends,
            servers=len(settings.comfy.urls),
            store=gateway.store.name,
        )
        failed, refused = await _wait_and_stop(settings, gateway, tasks, stop)
    log.info("comfybot_stopped")
    if refused:
        return _refuse(str(refused[0]))  # a bad token: one line, no traceback
    return 1 if failed else 0


async def _doctor_s3(settings: Settings) -> bool:
    """Write, read and delete a probe object in the configured bucket; print the outcome."""
    from gateway.app import s3_client_from  # here: doctor without a bucket needs none of it
    from gateway.errors import StorageError

    s3 = settings.s3
    async with aiohttp.ClientSession() as session:
        client = s3_client_from(settings, session, retry_for_s=5.0)
        assert client is not None
        try:
            await client.check(f"{s3.prefix}doctor-probe")
        except StorageError as exc:
            sys.stdout.write(f"✗ S3 bucket {s3.bucket} at {s3.endpoint}: {exc.detail}\n")
            return False
    sys.stdout.write(f"✓ S3 bucket {s3.bucket} at {s3.endpoint}: write, read and delete work\n")
    return True


async def doctor(settings: Settings) -> int:
    """Check each workflow against each server's ``/object_info``; print a report; 0 when all is well."""
    out = sys.stdout
    try:
        registry: WorkflowRegistry = load_workflows(
            [settings.paths.workflows_dir] if settings.paths.workflows_dir else [], settings.models
        )
    except Exception as exc:  # a load error is the report here, not a traceback
        out.write(f"✗ workflows: {exc}\n")
        return 1
    out.write(f"✓ workflows: {', '.join(registry.names())}\n")
    if settings.s3.enabled and not await _doctor_s3(settings):
        return 1
    if not settings.comfy.urls:
        out.write("✗ COMFYUI_URLS is not set\n")
        return 1
    problems = 0
    async with aiohttp.ClientSession() as session:
        for url in settings.comfy.urls:
            client = ComfyClient(url, session, request_timeout_s=settings.comfy.request_timeout_s)
            try:
                stats = await client.system_stats()
                info = await client.object_info()
            except ComfyError as exc:
                out.write(f"✗ {client.name}: unreachable ({type(exc).__name__})\n")
                problems += 1
                continue
            version = stats.get("system", {}).get("comfyui_version", "?")
            out.write(f"✓ {client.name}: ComfyUI {version}, {len(info)} node types\n")
            for workflow in registry:
                missing = check_object_info(workflow, info)
                if missing:
                    problems += 1
                    out.write(f"  ✗ {workflow.name}:\n")
                    out.writelines(f"      - {line}\n" for line in missing)
                else:
                    out.write(f"  ✓ {workflow.name}\n")
    return 1 if problems else 0
