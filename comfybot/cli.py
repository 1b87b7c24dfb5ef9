"""The ``comfybot`` command: ``run``, ``doctor``, ``config``, ``monitor``, ``trace``.

``run`` and ``doctor`` load the settings, configure logging and hand over to :mod:`comfybot.app` (imported
lazily, so the other commands work without the bot and gateway stacks). A bad configuration is one line on
stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from comfybot import __version__
from comfybot.config import ConfigError, Settings, load_settings
from comfybot.logfiles import log_files, read_records
from comfybot.logs import configure_logging

EXIT_CONFIG = 2
EXIT_USAGE = 2


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(config_file=args.config)


def _configure(settings: Settings, process: str, stdout: bool) -> None:
    lg = settings.logging
    configure_logging(
        process,
        settings.paths.log_dir,
        lg.level,
        lg.max_bytes,
        lg.backups,
        stdout=stdout,
        secrets=settings.secrets(),
    )


def _call_app(name: str, settings: Settings) -> int:
    """Call ``comfybot.app.<name>(settings)``; it may be sync or async and may return an exit status."""
    try:
        app = importlib.import_module("comfybot.app")
    except ImportError as exc:
        sys.stderr.write(f"comfybot {name}: comfybot.app is not available ({exc})\n")
        return 1
    func: Callable[[Settings], Any] | None = getattr(app, name, None)
    if func is None:
        sys.stderr.write(f"comfybot {name}: comfybot.app has no {name}()\n")
        return 1
    from comfy.workflow_errors import WorkflowLoadError  # here: --help, monitor and trace need no aiohttp

    try:
        result = func(settings)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
    except WorkflowLoadError as exc:
        # A shipped or COMFYBOT_WORKFLOWS_DIR workflow that cannot load: one line naming file and problem.
        sys.stderr.write(f"comfybot: workflow error: {exc}\n")
        return EXIT_CONFIG
    return result if isinstance(result, int) else 0


async def _await(awaitable: Any) -> Any:
    return await awaitable


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _configure(settings, args.process, stdout=not args.quiet)
    try:
        return _call_app("run", settings)
    except KeyboardInterrupt:
        return 130


def cmd_doctor(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _configure(settings, "doctor", stdout=False)  # the report is for people; the log file keeps the details
    return _call_app("doctor", settings)


def cmd_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    data = settings.model_dump(mode="json")
    if settings.redis is not None:
        data["redis"] = {"url": settings.redis.redacted_url}
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n")
    return 0


def _colour(args: argparse.Namespace) -> bool:
    if args.no_color:
        return False
    if args.color:
        return True
    return sys.stdout.isatty()


def _log_dir(args: argparse.Namespace) -> Path:
    return Path(args.log_dir) if args.log_dir else _settings(args).paths.log_dir


def cmd_monitor(args: argparse.Namespace) -> int:
    from comfybot import monitor

    colour = _colour(args)
    if args.files == ["-"]:
        monitor.show_stream(sys.stdin, sys.stdout, colour)
        return 0
    discover: Callable[[], list[Path]] | None = None
    if args.files:
        paths = [Path(f) for f in args.files]
    else:
        log_dir = _log_dir(args)
        paths = log_files(log_dir)
        if args.follow:  # rotated backups don't grow
            paths = [p for p in paths if p.name.endswith(".log")]
        discover = lambda: sorted(log_dir.glob("*.log"))  # noqa: E731  # a one-line closure reads best here
    if args.follow:
        with contextlib.suppress(KeyboardInterrupt):
            monitor.follow(paths, sys.stdout, colour, backlog=args.lines, discover=discover)
        return 0
    monitor.show_files(paths, sys.stdout, colour)
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    from comfybot import trace

    if not args.request_id.strip():
        sys.stderr.write("comfybot trace: give a request id (or its first 8 characters)\n")
        return EXIT_USAGE
    paths = [Path(f) for f in args.files] if args.files else log_files(_log_dir(args))
    try:
        entries = trace.select(read_records(paths), args.request_id.strip())
    except trace.AmbiguousRequestId as exc:
        sys.stderr.write(f"comfybot trace: {exc}\n")
        return 1
    sys.stdout.write(trace.render(entries, args.request_id, _colour(args)))
    return 0 if entries else 1


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="comfybot", description="ComfyUI in your chats.")
    parser.add_argument("--version", action="version", version=f"comfybot {__version__}")
    parser.add_argument("--config", metavar="PATH", help="TOML config file (env COMFYBOT_CONFIG); env wins")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", help="start everything that is configured in one process")
    p.add_argument("--process", default="gateway", help="log to LOG_DIR/<PROCESS>.log (default: gateway)")
    p.add_argument("--quiet", action="store_true", help="log to the file only, not stdout")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("doctor", help="check config, ComfyUI servers, workflows and models")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("config", help="print the effective configuration (secrets hidden)")
    p.set_defaults(func=cmd_config)

    def colour_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--no-color", action="store_true", help="plain text")
        p.add_argument("--color", action="store_true", help="colour even when stdout is not a terminal")
        p.add_argument("--log-dir", metavar="DIR", help="read logs from DIR instead of LOG_DIR")

    p = sub.add_parser("monitor", help="render JSON log lines live in colour")
    p.add_argument("files", nargs="*", help="log files (default: LOG_DIR/*.log; '-' reads stdin)")
    p.add_argument("-f", "--follow", action="store_true", help="keep reading as lines are written")
    p.add_argument("-n", "--lines", type=int, default=20, help="with --follow: lines of backlog (default 20)")
    colour_flags(p)
    p.set_defaults(func=cmd_monitor)

    p = sub.add_parser("trace", help="one request's timeline with the time spent in each stage")
    p.add_argument("request_id", help="full request id or a prefix (the 8-char short id)")
    p.add_argument("files", nargs="*", help="log files (default: every log in LOG_DIR, rotated ones too)")
    colour_flags(p)
    p.set_defaults(func=cmd_trace)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``comfybot`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
    except ConfigError as exc:
        sys.stderr.write(f"comfybot: config error: {exc}\n")
        return EXIT_CONFIG
    except BrokenPipeError:
        # `comfybot trace ... | head`: stop quietly, and keep Python from complaining at exit.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return status
