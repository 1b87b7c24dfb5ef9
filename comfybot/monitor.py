"""``comfybot monitor``: JSON log lines rendered live, one coloured row each.

Colours: red errors and failures, yellow warnings and progress, blue model/edit work (workflow rendered,
image uploaded, prompt sent to ComfyUI...), green things done (succeeded, sent, delivered).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from comfybot.logfiles import parse, read_records, sort_key, timestamp

RESET = "\x1b[0m"
RED = "\x1b[31m"
GREEN = "\x1b[32m"
YELLOW = "\x1b[33m"
BLUE = "\x1b[34m"
DIM = "\x1b[2m"

_SHOWN = {"timestamp", "level", "component", "event", "request_id", "logger", "exception", "stack"}
_BLUE_EVENTS = {
    "workflow_rendered",
    "image_uploaded",
    "image_retrieved",
    "image_stored",
    "job_started",
    "job_dequeued",
    "job_submitted",
    "comfyui_prompt_sent",
    "comfyui_history_checked",
    "model_loaded",
    "edit_started",
}
_RED_WORDS = ("error", "failed", "failure", "timeout", "timed_out", "crash", "rejected", "lost", "refused")
_YELLOW_WORDS = (
    "progress",
    "preview",
    "queued",
    "enqueued",
    "retry",
    "rate_limited",
    "reconnect",
    "throttle",
    "cancel",
    "recovered",
    "busy",
    "stall",
)
_GREEN_WORDS = ("done", "succeeded", "success", "sent", "delivered", "complete", "completed", "finished")


def colour_of(record: dict[str, Any]) -> str:
    """The ANSI colour for a record ("" for plain)."""
    level = str(record.get("level", "")).lower()
    event = str(record.get("event", "")).lower()
    words = set(event.replace(".", "_").split("_"))
    if level in ("error", "critical") or any(w in words or event.endswith(w) for w in _RED_WORDS):
        return RED
    if level == "warning":
        return YELLOW
    if event in _BLUE_EVENTS or event.startswith(("comfyui_", "workflow_", "model_", "edit_", "upscale_")):
        return BLUE
    if any(w in words or w in event for w in _YELLOW_WORDS):
        return YELLOW
    if any(w in words for w in _GREEN_WORDS):
        return GREEN
    return ""


def _clock(record: dict[str, Any]) -> str:
    ts = timestamp(record)
    return ts.strftime("%H:%M:%S.%f")[:-3] if isinstance(ts, datetime) else " " * 12


def _value(v: Any, limit: int = 80) -> str:
    text = v if isinstance(v, str) else str(v).replace("'", '"')
    if any(c.isspace() for c in text):
        text = repr(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _progress(record: dict[str, Any]) -> str:
    """``[ 9/16] Sampling 45%`` for records that carry progress fields, else ""."""
    done, total = record.get("done_nodes"), record.get("total_nodes")
    label = record.get("node_label")
    if done is None or total is None or label is None:
        return ""
    out = f"[{done:>2}/{total}] {label}"
    if record.get("node_type"):
        out += f" ({record['node_type']})"
    if record.get("max"):
        out += f" {record.get('value', 0)}/{record['max']}"
    if record.get("percent") is not None:
        out += f" {float(record['percent']):.0f}%"
    return out


def render(record: dict[str, Any], colour: bool = True) -> str:
    """One monitor row: time, level, component, short request id, event, key fields (+ exception lines)."""
    level = str(record.get("level", "-"))
    level = {"warning": "warn", "critical": "crit", "exception": "error"}.get(level, level)[:5]
    component = str(record.get("component", "-"))[:10]
    rid = str(record.get("request_id") or "-")[:8]
    event = str(record.get("event", ""))
    progress = _progress(record)
    skip = _SHOWN | (
        {"done_nodes", "total_nodes", "node_label", "node_type", "value", "max", "percent"}
        if progress
        else set()
    )
    fields = " ".join(f"{k}={_value(v)}" for k, v in record.items() if k not in skip)
    text = f"{_clock(record)} {level:<5} {component:<10} {rid:<8} {event}"
    if progress:
        text += f"  {progress}"
    if fields:
        text += f"  {fields}"
    exc = record.get("exception")
    if isinstance(exc, str) and exc:
        text += "\n" + "\n".join("    " + line for line in exc.splitlines())
    if not colour:
        return text
    c = colour_of(record)
    return f"{c}{text}{RESET}" if c else text


def render_line(line: str, colour: bool = True) -> str:
    """A raw log line rendered; non-JSON lines pass through (dimmed)."""
    record = parse(line)
    if record is None:
        raw = line.rstrip("\n")
        return f"{DIM}{raw}{RESET}" if colour and raw else raw
    return render(record, colour)


def show_files(paths: Iterable[Path], out: IO[str], colour: bool = True) -> int:
    """Render every record of ``paths`` merged in timestamp order; returns how many were shown."""
    records = list(read_records(paths))
    records.sort(key=sort_key)
    for record in records:
        out.write(render(record, colour) + "\n")
    return len(records)


def show_stream(stream: IO[str], out: IO[str], colour: bool = True) -> None:
    """Render lines from ``stream`` (stdin) as they arrive, until EOF."""
    for line in stream:
        out.write(render_line(line, colour) + "\n")
        out.flush()


class _Tail:
    """One followed file: survives rotation (a new inode or a shorter file) and late creation."""

    def __init__(self, path: Path, from_end: bool) -> None:
        self.path = path
        self.inode: int | None = None
        self.pos = 0
        self.buf = b""
        if from_end and path.exists():
            st = path.stat()
            self.inode, self.pos = st.st_ino, st.st_size

    def read(self) -> list[bytes]:
        try:
            st = self.path.stat()
        except OSError:
            return []
        if st.st_ino != self.inode or st.st_size < self.pos:
            self.inode, self.pos, self.buf = st.st_ino, 0, b""
        if st.st_size == self.pos:
            return []
        with self.path.open("rb") as f:
            f.seek(self.pos)
            data = f.read()
        self.pos += len(data)
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        return lines


def follow(
    paths: list[Path],
    out: IO[str],
    colour: bool = True,
    *,
    backlog: int = 20,
    poll_s: float = 0.2,
    stop: Callable[[], bool] = lambda: False,
    discover: Callable[[], list[Path]] | None = None,
) -> None:
    """``tail -F`` for JSON logs: show the last ``backlog`` records, then new lines as they are written.

    ``discover`` (e.g. a glob of LOG_DIR) is called on every poll so files created later are followed too.
    """
    if backlog:
        records = sorted(read_records(paths), key=sort_key)
        for record in records[-backlog:]:
            out.write(render(record, colour) + "\n")
        out.flush()
    tails = {p: _Tail(p, from_end=True) for p in paths}
    while not stop():
        for p in discover() if discover is not None else ():
            if p not in tails:
                tails[p] = _Tail(p, from_end=False)
        wrote = False
        for tail in tails.values():
            for line in tail.read():
                if line.strip():
                    out.write(render_line(line.decode("utf-8", "replace"), colour) + "\n")
                    wrote = True
        if wrote:
            out.flush()
        else:
            time.sleep(poll_s)
