"""Parsers for the value syntaxes that environment variables use, as annotated pydantic types.

Each parser accepts the TOML form too (a real list, int or bool) and raises ``ValueError`` with a short,
one-line message that :mod:`core.config` puts after the variable's name.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h|d)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?i?b?)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_RATE = re.compile(r"^\s*(\d+)\s*(?:/|per)\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$", re.IGNORECASE)
_RATE_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}


def parse_bool(value: Any) -> Any:
    """``true/false/yes/no/on/off/1/0`` (any case) or a real bool."""
    if isinstance(value, str):
        v = value.strip().lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
        raise ValueError(f"{value!r} is not a boolean (use true or false)")
    return value


def parse_duration(value: Any) -> Any:
    """Seconds as a number, or ``500ms``, ``30s``, ``15m``, ``24h``, ``30d``."""
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m is None:
            raise ValueError(f"{value!r} is not a duration (e.g. 30, 30s, 15m, 24h, 30d)")
        return float(m.group(1)) * _DURATION_UNITS[(m.group(2) or "s").lower()]
    return value


def parse_size(value: Any) -> Any:
    """Bytes as an integer, or ``512K``, ``5MB``, ``20 MiB``, ``1G`` (binary multiples)."""
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m is None:
            raise ValueError(f"{value!r} is not a size in bytes (e.g. 5242880, 5MB, 512K)")
        unit = m.group(2).lower().rstrip("b").rstrip("i")
        return int(float(m.group(1)) * _SIZE_UNITS[unit])
    return value


def parse_url(value: Any, schemes: tuple[str, ...] = ("http", "https")) -> Any:
    """An absolute http(s) URL (or of ``schemes``) with a host; trailing slashes are dropped."""
    what = "an http(s) URL" if schemes == ("http", "https") else f"a {'/'.join(schemes)} URL"
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not {what}")
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"{url!r} is not {what}")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError(f"{url!r} has an invalid port") from None
    return url.rstrip("/")


def parse_str_list(value: Any) -> Any:
    """A JSON array, or comma-separated values; blanks are dropped."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError:
                raise ValueError(f"{text!r} is not a valid JSON array") from None
        else:
            return tuple(p.strip() for p in text.split(",") if p.strip())
    if isinstance(value, list | tuple | set | frozenset):
        return tuple(str(v).strip() for v in value if str(v).strip())
    raise ValueError(f"{value!r} is not a list")


def parse_id_list(value: Any) -> Any:
    """User/chat ids: ``"123,-100456"`` or a list of ints/strings; each must be an integer id."""
    ids = parse_str_list(value)
    for i in ids:
        if not re.fullmatch(r"-?\d+", i):
            raise ValueError(f"{i!r} is not a numeric user or chat id")
    return frozenset(ids)


def parse_pattern_list(value: Any) -> Any:
    """Regexes: a JSON array, or one regex per line (commas are regex syntax, so no comma splitting)."""
    if isinstance(value, str) and not value.strip().startswith("["):
        items: Any = tuple(line.strip() for line in value.splitlines() if line.strip())
    else:
        items = parse_str_list(value)
    for pattern in items:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{pattern!r} is not a valid regex: {exc}") from None
    return tuple(items)


class Rate(BaseModel):
    """``count`` events per ``per_s`` seconds; written ``10/min``, ``3/10s``, ``100 per hour``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int
    per_s: float

    def __str__(self) -> str:
        return f"{self.count}/{self.per_s:g}s"


def parse_rate(value: Any) -> Any:
    """A :class:`Rate` from ``"10/min"``, ``"3/10s"``, ``"100 per hour"`` or a ``{count, per_s}`` table."""
    if isinstance(value, str):
        m = _RATE.match(value)
        unit = m.group(3).lower().rstrip("s") if m else ""
        unit = unit or "s"
        if m is None or unit not in _RATE_UNITS or int(m.group(1)) < 1:
            raise ValueError(f"{value!r} is not a rate (e.g. 10/min, 3/10s, 100/hour)")
        per = float(m.group(2) or 1) * _RATE_UNITS[unit]
        if per <= 0:
            raise ValueError(f"{value!r} has a zero period")
        return Rate(count=int(m.group(1)), per_s=per)
    return value


EnvBool = Annotated[bool, BeforeValidator(parse_bool)]
Seconds = Annotated[float, BeforeValidator(parse_duration)]
ByteSize = Annotated[int, BeforeValidator(parse_size)]
HttpUrl = Annotated[str, BeforeValidator(parse_url)]
WsUrl = Annotated[str, BeforeValidator(lambda v: parse_url(v, ("ws", "wss")))]
StrList = Annotated[tuple[str, ...], BeforeValidator(parse_str_list)]
IdSet = Annotated[frozenset[str], BeforeValidator(parse_id_list)]
PatternList = Annotated[tuple[str, ...], BeforeValidator(parse_pattern_list)]
RateValue = Annotated[Rate, BeforeValidator(parse_rate)]
