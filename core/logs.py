"""JSON-lines logging: structlog + orjson, to stdout and ``LOG_DIR/<process>.log`` with size rotation.

Nothing is configured at import time; each process's startup module calls :func:`configure_logging` once.
Every line carries ``timestamp`` (ISO-8601 UTC), ``level``, ``event``, ``component`` and whatever is bound
in contextvars (``request_id``, ``job_id``, ``prompt_id``, ``backend``...). Stdlib loggers (aiohttp, aiogram,
discord.py, asyncio) go through the same :class:`structlog.stdlib.ProcessorFormatter`, so their lines are the
same JSON with ``component`` = the logger's top package. A redaction pass runs last before rendering, over
every string value and the exception text: bot tokens and secrets never reach a sink.
"""

from __future__ import annotations

import functools
import logging
import logging.handlers
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson
import structlog
from pydantic import SecretStr
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

__all__ = [
    "bind_request",
    "bound",
    "clear_request",
    "configure_logging",
    "get_logger",
    "redact",
    "register_secret",
    "reset_logging",
]

REDACTED = "***"
_MIN_SECRET_LEN = 4  # shorter literals would shred ordinary words; their URL forms are still caught below
_secrets: set[str] = set()
_secrets_re: re.Pattern[str] | None = None

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Telegram file URLs and method URLs hold the bot token: .../file/bot<token>/..., .../bot<token>/getMe
    (re.compile(r"(/bot)[^/\s:\"'?#]*:[^/\s\"'?#]*", re.IGNORECASE), rf"\g<1>{REDACTED}"),
    # Bare Telegram bot tokens: <bot id>:<35-ish url-safe chars>
    (re.compile(r"(?<![\w-])\d{6,12}:[A-Za-z0-9_-]{30,}"), REDACTED),
    # Discord bot tokens: base64(user id).timestamp.hmac
    (re.compile(r"(?<![\w-])[MNO][A-Za-z\d_-]{23,27}\.[A-Za-z\d_-]{6,7}\.[A-Za-z\d_-]{27,}"), REDACTED),
    # Discord interaction tokens in webhook and callback paths (discord.py logs these routes at DEBUG):
    # /webhooks/<application id>/<token>..., /interactions/<interaction id>/<token>/callback
    (re.compile(r"(/(?:webhooks|interactions)/\d+/)[^/\s\"'?#]+"), rf"\g<1>{REDACTED}"),
    # Any URL's userinfo password: redis://user:password@host, http://user:pass@host
    (re.compile(r"([a-z][a-z0-9+.-]*://[^\s:/@\"']*):[^\s@/\"']+@", re.IGNORECASE), rf"\g<1>:{REDACTED}@"),
)

_installed: list[logging.Handler] = []


def register_secret(value: str | SecretStr | None) -> None:
    """Add a literal secret (a configured token, password) that must never appear in a log line."""
    global _secrets_re
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    _secrets.add(value)
    # Longest first so a secret that contains another is replaced whole.
    _secrets_re = re.compile("|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True)))
    _redact_short.cache_clear()


_SHORT = 256  # values up to this length repeat across lines (ids, names, workflows): their answers are cached


def redact(text: str) -> str:
    """``text`` with registered secrets, bot tokens, ``/bot<token>`` paths and URL passwords replaced."""
    return _redact_short(text) if len(text) <= _SHORT else _redact(text)


def _redact(text: str) -> str:
    if _secrets_re is not None:
        text = _secrets_re.sub(REDACTED, text)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


_redact_short = functools.lru_cache(maxsize=8192)(_redact)  # cleared whenever a secret is registered


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):  # keys too: a URL or token can be a key ({url: attempts})
        return {redact(str(k)): _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v) for v in value]
    # Anything else (URLs, paths, exceptions, SecretStr...) is rendered as text *here*, so the redaction
    # sees the same string the JSON would carry.
    return redact(str(value))


_FIRST = ("timestamp", "level", "component", "event", "request_id", "job_id", "prompt_id", "backend")


def _redaction(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # Also puts the keys people scan for first, so raw lines read well without jq.
    out = {k: _redact_value(event_dict[k]) for k in _FIRST if k in event_dict}
    out.update((k, _redact_value(v)) for k, v in event_dict.items() if k not in out)
    return out


def _default_component(process: str) -> Processor:
    def processor(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("component", process)
        return event_dict

    return processor


def _record_timestamp(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # When the stdlib record was made, not when each handler formats it: the file and stdout lines agree.
    record = event_dict.get("_record")
    if isinstance(record, logging.LogRecord):
        when = datetime.fromtimestamp(record.created, UTC)
        event_dict["timestamp"] = when.isoformat().replace("+00:00", "Z")
    return event_dict


def _foreign_component(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")
    if isinstance(record, logging.LogRecord):
        event_dict.setdefault("logger", record.name)
        event_dict.setdefault("component", record.name.split(".", 1)[0] or "root")
    return event_dict


def _dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


class _RenderOnce(structlog.stdlib.ProcessorFormatter):
    """Renders a record once for all our handlers (file and stdout) instead of once per handler."""

    def format(self, record: logging.LogRecord) -> str:
        line: str | None = getattr(record, "_comfybot_line", None)
        if line is None:
            line = super().format(record)
            record._comfybot_line = line  # a cache slot of our own on the record
        return line


class _SizeRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """The stdlib's size rotation without its per-line cost: it stats the file twice for every record and
    measures the record by rendering it (free here: :class:`_RenderOnce` keeps the line for the write)."""

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        if self.maxBytes <= 0:
            return False
        if self.stream is None:
            self.stream = self._open()
        size = len(self.format(record).encode("utf-8")) + 1
        return bool(self.stream.tell() + size >= self.maxBytes)


def configure_logging(
    process: str,
    log_dir: Path,
    level: str = "INFO",
    max_bytes: int = 5 * 1024 * 1024,
    backups: int = 3,
    stdout: bool = True,
    *,
    stream: IO[str] | None = None,
    secrets: Iterable[str | SecretStr | None] = (),
) -> None:
    """Send structlog and stdlib logging to ``log_dir/<process>.log`` (rotated) and stdout, as JSON lines.

    Calling it again replaces the handlers it installed before. ``stream`` overrides ``sys.stdout``;
    ``secrets`` are passed to :func:`register_secret`.
    """
    for secret in secrets:
        register_secret(secret)
    numeric = logging.getLevelNamesMapping()[level.upper()]
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        timestamper,
    ]
    structlog.configure(
        processors=[
            *shared,
            _default_component(process),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        # Not cached: module-level loggers must follow a later reconfiguration (tests, CLI subcommands).
        cache_logger_on_first_use=False,
    )
    formatter = _RenderOnce(
        foreign_pre_chain=[*shared, _record_timestamp, _foreign_component],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _redaction,  # last before rendering, after the exception became text
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
    )
    _remove_installed()
    log_dir.mkdir(parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [
        _SizeRotatingFileHandler(
            log_dir / f"{process}.log", maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
    ]
    if stdout:
        handlers.append(logging.StreamHandler(stream if stream is not None else sys.stdout))
    _install(handlers, formatter, numeric)


def _install(handlers: list[logging.Handler], formatter: logging.Formatter, level: int) -> None:
    root = logging.getLogger()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
        _installed.append(handler)
    root.setLevel(level)


def _remove_installed() -> None:
    root = logging.getLogger()
    while _installed:
        handler = _installed.pop()
        root.removeHandler(handler)
        handler.close()


def reset_logging() -> None:
    """Undo :func:`configure_logging`: close our handlers, reset structlog, forget secrets and contextvars."""
    global _secrets_re
    _remove_installed()
    logging.getLogger().setLevel(logging.WARNING)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    _secrets.clear()
    _secrets_re = None
    _redact_short.cache_clear()


def get_logger(component: str | None = None, **initial: Any) -> FilteringBoundLogger:
    """A structlog logger, with ``component`` bound when given (else it defaults to the process name)."""
    if component is not None:
        initial["component"] = component
    logger: FilteringBoundLogger = structlog.get_logger(**initial)
    return logger


def bind_request(request_id: str, **fields: Any) -> None:
    """Start a new request context: clear contextvars, then bind ``request_id`` and ``fields``."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id, **fields)


def clear_request() -> None:
    """Forget every contextvar bound for the current request."""
    structlog.contextvars.clear_contextvars()


bound = structlog.contextvars.bound_contextvars
"""Context manager binding contextvars for a block: ``with bound(job_id=j, backend=b): ...``."""
