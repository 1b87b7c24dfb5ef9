"""Reading our JSON-lines logs back (which files, one record a line, timestamps), for monitor and trace."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

_ROTATED = re.compile(r"\.log(?:\.(\d+))?$")


def log_files(log_dir: Path) -> list[Path]:
    """``*.log`` and their rotated backups (``*.log.N``) in ``log_dir``, oldest backup first per process."""
    found = [p for p in log_dir.glob("*.log*") if p.is_file() and _ROTATED.search(p.name)]

    def key(p: Path) -> tuple[str, int]:
        m = _ROTATED.search(p.name)
        n = int(m.group(1)) if m and m.group(1) else 0
        return (p.name[: m.start()] if m else p.name, -n)

    return sorted(found, key=key)


def parse(line: str | bytes) -> dict[str, Any] | None:
    """The JSON object on ``line``, or None for blank or non-JSON lines (tracebacks, other tools' output)."""
    line = line.strip()
    if not line or line[:1] not in ("{", b"{"):
        return None
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def read_records(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """Every JSON record of every file, in file order; unreadable files and bad lines are skipped."""
    for path in paths:
        try:
            with path.open("rb") as f:
                for line in f:
                    record = parse(line)
                    if record is not None:
                        yield record
        except OSError:
            continue


def timestamp(record: dict[str, Any]) -> datetime | None:
    """The record's ``timestamp`` as an aware datetime, or None when missing or malformed."""
    value = record.get("timestamp")
    if not isinstance(value, str):
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        return None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)  # ours are UTC; others' naive ones too


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def sort_key(record: dict[str, Any]) -> datetime:
    """Order records by time; lines without a usable timestamp go first."""
    return timestamp(record) or _EPOCH
