"""``python -m gateway``: a gateway worker process (jobs from the queue to the ComfyUI servers).

With ``REDIS_URL`` set, run as many as you like on any machines; front ends in other processes submit
through the same Redis. Without it the queue is in memory and only this process's own HTTP API
(``COMFYBOT_API_ENABLED``, bound to 127.0.0.1, bearer token) can submit. SIGTERM/SIGINT stop it; a
job it was running is recovered by another worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

import aiohttp

from core.config import ConfigError, Settings, load_settings
from core.logs import configure_logging, get_logger
from gateway.app import WorkerOptions, open_gateway, shut_down
from gateway.http_api import WebhookOptions, start_api
from gateway.metrics import start_metrics

log = get_logger("gateway")


async def serve(settings: Settings, options: WorkerOptions | None = None) -> None:
    """Run the gateway (and its HTTP API when enabled) until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # not on every platform
            loop.add_signal_handler(sig, stop.set)
    async with aiohttp.ClientSession() as session, open_gateway(settings, session, options=options) as gw:
        runner = None
        if settings.api.enabled and settings.api.token is not None:  # load_settings demands the token
            runner = await start_api(
                gw,
                settings.api.token.get_secret_value(),
                host=settings.api.bind,
                port=settings.api.port,
                webhooks=WebhookOptions(secret=settings.api.webhook_secret_value),
            )
        metrics = None
        if settings.api.metrics_port is not None:  # a worker-only process: Prometheus scrapes this port
            metrics = await start_metrics(gw, host=settings.api.metrics_bind, port=settings.api.metrics_port)
        if settings.redis is None and runner is None:
            log.warning(
                "gateway_unreachable",
                detail="embedded queue and no HTTP API: nothing can submit jobs to this process; "
                "set REDIS_URL or COMFYBOT_API_ENABLED, or use `comfybot run`",
            )
        if not settings.comfy.urls:
            log.warning("gateway_no_servers", detail="COMFYUI_URLS is empty: jobs will wait in the queue")
        log.info("gateway_ready", worker=gw.worker.consumer if gw.worker else None, api=runner is not None)
        try:
            await stop.wait()
            stop.clear()
            await shut_down(gw, settings.comfy.shutdown_grace_s, stop)
        finally:
            if runner is not None:
                await runner.cleanup()
            if metrics is not None:
                await metrics.cleanup()
    log.info("gateway_exit")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gateway", description="a worker (and the HTTP API when enabled), no front ends"
    )
    parser.add_argument(
        "--lease-s",
        type=float,
        metavar="S",
        help="job lease: how soon another worker recovers this one's jobs",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Load settings, configure logging, serve. Returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        sys.stderr.write(f"comfybot gateway: bad configuration: {exc}\n")
        return 2
    configure_logging(
        "gateway",
        settings.paths.log_dir,
        settings.logging.level,
        int(settings.logging.max_bytes),
        settings.logging.backups,
        secrets=settings.secrets(),
    )
    options = WorkerOptions() if args.lease_s is None else WorkerOptions(lease_s=args.lease_s)
    asyncio.run(serve(settings, options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
