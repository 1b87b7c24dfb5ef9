"""The ``comfybot`` command: ``run``, ``doctor``, ``config``, ``monitor``, ``trace``, ``workflow import``.

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
from comfybot.logfiles import log_files, read_records
from core.config import ConfigError, Settings, load_settings
from core.logs import configure_logging

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


def _read_json_file(path: str) -> Any:
    try:
        return orjson.loads(Path(path).read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None


def cmd_workflow_import(args: argparse.Namespace) -> int:
    from comfy import workflow_import as wi  # lazy: the other commands need no pydantic workflow models

    try:
        name = wi.workflow_name(Path(args.graph), args.name)
        proposal = wi.propose(_read_json_file(args.graph), name, source=Path(args.graph).name)
        info = _read_json_file(args.object_info) if args.object_info else None
        if info is not None and not isinstance(info, dict):
            raise ValueError(f"{args.object_info} is not an /object_info answer (a JSON object)")
        problems = wi.validate(proposal, info) if info is not None else []
    except ValueError as exc:  # ImportRefused included
        sys.stderr.write(f"comfybot workflow import: {exc}\n")
        return 1
    out = sys.stdout
    out.write(f"workflow {name!r} from {args.graph}:\n" + "".join(f"  {line}\n" for line in proposal.found))
    if problems:
        out.write(f"not written: the server of {args.object_info} cannot run it:\n")
        out.write("".join(f"  {line}\n" for line in problems))
        return 1
    directory = Path(args.dir) if args.dir else (_settings(args).paths.workflows_dir or Path.cwd())
    try:
        graph_path, manifest_path = wi.write_files(proposal, directory, force=args.force)
    except (ValueError, OSError) as exc:
        sys.stderr.write(f"comfybot workflow import: {exc}\n")
        return 1
    out.write("review before use:\n" + "".join(f"  {line}\n" for line in proposal.review))
    out.write(f"wrote {graph_path} and {manifest_path}\n")
    return 0


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

    wf = sub.add_parser("workflow", help="workflow tools: import an API-format graph")
    wf_sub = wf.add_subparsers(dest="workflow_command", metavar="ACTION", required=True)
    p = wf_sub.add_parser("import", help="propose a manifest for an API-format graph and write both files")
    p.add_argument("graph", help="API-format graph (ComfyUI: Export (API) / Save (API Format))")
    p.add_argument("--name", help="workflow name, a-z0-9_ (default: from the file name)")
    p.add_argument("--dir", metavar="DIR", help="where to write (default: COMFYBOT_WORKFLOWS_DIR, else .)")
    p.add_argument("--object-info", metavar="FILE", help="a server's /object_info JSON to check against")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(func=cmd_workflow_import)
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
