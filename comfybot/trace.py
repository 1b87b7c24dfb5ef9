"""``comfybot trace <request_id>``: one request's timeline across every process's log, with stage durations.

Lines are selected by ``request_id`` (a prefix such as the 8-char short id shown to users also matches),
plus lines that carry only a ``job_id`` of that request (a worker that bound the job but not the request).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from comfybot.logfiles import timestamp
from comfybot.monitor import GREEN, RED, RESET, YELLOW, colour_of

# Milestones in the order a request passes them; the first line matching any name of a milestone marks it.
MILESTONES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "received",
        (
            "command_received",
            "request_received",
            "message_received",
            "photo_received",
            "interaction_received",
            "api_request_received",
        ),
    ),
    ("enqueued", ("job_enqueued",)),
    ("dequeued", ("job_dequeued", "job_started")),
    ("prompt sent", ("comfyui_prompt_sent",)),
    ("finished", ("job_succeeded", "job_failed", "job_cancelled", "job_timed_out")),
    ("response sent", ("response_sent", "result_sent", "result_delivered")),
)
STAGE_NAMES = {
    ("received", "enqueued"): "received → enqueued (accept)",
    ("enqueued", "dequeued"): "enqueued → dequeued (queue wait)",
    ("dequeued", "prompt sent"): "dequeued → prompt sent (prepare)",
    ("prompt sent", "finished"): "prompt sent → finished (generate)",
    ("finished", "response sent"): "finished → response sent (deliver)",
}
_NOISE = {
    "timestamp",
    "level",
    "component",
    "event",
    "request_id",
    "logger",
    "exception",
    "platform",
    "user_id",
    "chat_id",
}


class AmbiguousRequestId(Exception):
    """A prefix matched more than one request id; ``matches`` lists them."""

    def __init__(self, prefix: str, matches: list[str]) -> None:
        super().__init__(f"{prefix!r} matches {len(matches)} requests: {', '.join(sorted(matches))}")
        self.matches = matches


@dataclass(frozen=True)
class Entry:
    """One selected log line with its time offset from the first."""

    at: datetime
    offset_s: float
    record: dict[str, Any]


def select(records: Iterable[dict[str, Any]], request_id: str) -> list[Entry]:
    """The lines of one request (exact id or unique prefix), de-duplicated, sorted by timestamp."""
    pool = [(ts, r) for r in records if (ts := timestamp(r)) is not None]
    if not request_id:
        raise ValueError("request_id must not be empty")
    ids = {rid for _, r in pool if (rid := str(r.get("request_id") or "")) and rid.startswith(request_id)}
    if request_id in ids:
        ids = {request_id}
    if len(ids) > 1:
        raise AmbiguousRequestId(request_id, sorted(ids))
    job_ids = {r["job_id"] for _, r in pool if r.get("request_id") in ids and r.get("job_id")}
    seen: set[tuple[str, str, str]] = set()
    chosen: list[tuple[datetime, dict[str, Any]]] = []
    for ts, r in pool:
        if r.get("request_id") in ids or ("request_id" not in r and r.get("job_id") in job_ids):
            key = (str(r.get("timestamp")), str(r.get("event")), str(r.get("component")))
            if key not in seen:  # the same line read from a file and from captured stdout
                seen.add(key)
                chosen.append((ts, r))
    chosen.sort(key=lambda item: item[0])
    if not chosen:
        return []
    t0 = chosen[0][0]
    return [Entry(ts, (ts - t0).total_seconds(), r) for ts, r in chosen]


def milestones(entries: list[Entry]) -> list[tuple[str, Entry]]:
    """The first entry of each milestone reached, in milestone order.

    Each milestone is searched for at or after the previous one found, so an early line with the same
    name (the queued acknowledgement is a ``response_sent`` too) cannot end a later stage before it began.
    """
    found: list[tuple[str, Entry]] = []
    start = 0
    for name, events in MILESTONES:
        index = next(
            (i for i in range(start, len(entries)) if entries[i].record.get("event") in events), None
        )
        if index is None and name == "received" and entries:
            index = 0
        if index is not None:
            found.append((name, entries[index]))
            start = index
    return found


def stages(entries: list[Entry]) -> list[tuple[str, float]]:
    """Durations between consecutive milestones, named (``queue wait``, ``generate``...)."""
    marks = milestones(entries)
    out = []
    for (a, ea), (b, eb) in zip(marks, marks[1:], strict=False):
        name = STAGE_NAMES.get((a, b), f"{a} → {b}")
        out.append((name, (eb.at - ea.at).total_seconds()))
    return out


def _node_key(r: dict[str, Any]) -> tuple[Any, ...] | None:
    label = r.get("node_label") or r.get("label")
    node = r.get("node") or r.get("node_id")
    if label is None and node is None:
        return None
    return (label, node, r.get("node_type") or r.get("class_type"))


@dataclass(frozen=True)
class NodeSpan:
    """Time spent in one ComfyUI node: from its first progress line to the next node's (or the finish)."""

    name: str  # "[ 9/16] Sampling (KSampler)"
    first: Entry
    seconds: float | None  # None: the request never got past this node in the logs


def node_spans(entries: list[Entry]) -> list[NodeSpan]:
    """One span per run of consecutive progress lines for the same node."""
    end_events = {n for name, evs in MILESTONES if name in ("finished", "response sent") for n in evs}
    segments: list[tuple[tuple[Any, ...], Entry]] = []
    finish: Entry | None = None
    for e in entries:
        event = str(e.record.get("event", ""))
        if event in end_events:
            finish = finish or e
            continue
        key = _node_key(e.record)
        if key is None or not ("progress" in event or "executing" in event or "node" in event):
            continue
        if not segments or segments[-1][0] != key:
            segments.append((key, e))
    # the gateway's node_finished line carries the node's own run time; prefer it to the gap between lines
    measured = {
        str(e.record.get("node_id")): float(e.record["duration_ms"]) / 1000
        for e in entries
        if e.record.get("event") == "node_finished" and isinstance(e.record.get("duration_ms"), int | float)
    }
    out = []
    for i, (key, first) in enumerate(segments):
        end = segments[i + 1][1] if i + 1 < len(segments) else finish
        label, node, node_type = key
        done, total = first.record.get("done_nodes"), first.record.get("total_nodes")
        seconds = measured.get(str(node))
        if seconds is not None:  # node lines count the nodes done before this one: show its own number
            done = done + 1 if isinstance(done, int) else None
        elif end is not None:
            seconds = (end.at - first.at).total_seconds()
        head = f"[{done:>2}/{total}] " if done is not None and total is not None else ""
        name = f"{head}{label or 'node ' + str(node)}" + (f" ({node_type})" if node_type else "")
        out.append(NodeSpan(name, first, seconds))
    return out


def nodes(entries: list[Entry]) -> list[tuple[str, float]]:
    """``("[ 9/16] Sampling (KSampler)", 12.4)`` for each node the request finished."""
    return [(n.name, n.seconds) for n in node_spans(entries) if n.seconds is not None]


def _secs(value: float | None) -> str:
    if value is None:
        return "…"
    return f"{value:.1f} s" if value >= 1 else f"{value:.3f} s"


def _fields(r: dict[str, Any]) -> str:
    parts = []
    for k, v in r.items():
        if k not in _NOISE:
            text = str(v)
            parts.append(f"{k}={text if len(text) <= 60 else text[:59] + '…'}")
    return " ".join(parts)


def render(entries: list[Entry], request_id: str, colour: bool = True) -> str:
    """The full trace as text: header, timeline, stages, per-node times and the total."""

    def paint(text: str, c: str) -> str:
        return f"{c}{text}{RESET}" if colour and c else text

    if not entries:
        return f"no log lines for request {request_id}\n"
    full_id = next((str(e.record["request_id"]) for e in entries if e.record.get("request_id")), request_id)
    lines = [f"request {full_id}  ({len(entries)} lines, {entries[0].at.isoformat()})", ""]
    spans = node_spans(entries)
    span_of = {id(n.first): n for n in spans}
    in_span = {
        id(e)
        for e in entries
        if _node_key(e.record) is not None
        and ("progress" in str(e.record.get("event")) or e.record.get("event") == "node_finished")
    }
    for e in entries:
        r = e.record
        row = f"+{e.offset_s:.3f}s  {str(r.get('component', '-')):<8} "
        if (span := span_of.get(id(e))) is not None:
            lines.append(paint(f"{row}{span.name}  {_secs(span.seconds)}", colour_of(r)))
            continue
        if id(e) in in_span:
            continue  # later progress lines of a node already shown with its duration
        extra = _fields(r)
        row += str(r.get("event", ""))
        lines.append(paint(f"{row}  {extra}" if extra else row, colour_of(r)))
    if st := stages(entries):
        lines += ["", "stages"]
        width = max(len(name) for name, _ in st)
        lines += [f"  {name:<{width}}  {_secs(secs):>9}" for name, secs in st]
    if spans:
        lines += ["", "nodes"]
        width = max(len(n.name) for n in spans)
        lines += [paint(f"  {n.name:<{width}}  {_secs(n.seconds):>9}", YELLOW) for n in spans]
    total = entries[-1].offset_s
    outcome = next(
        (str(e.record["event"]) for e in reversed(entries) if e.record.get("event") in MILESTONES[4][1]), ""
    )
    tail = f"total {total:.3f} s" + (f"  ({outcome})" if outcome else "")
    lines += ["", paint(tail, GREEN if outcome == "job_succeeded" else RED if outcome else "")]
    return "\n".join(lines) + "\n"
