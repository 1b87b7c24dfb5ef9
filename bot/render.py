"""Platform-neutral text for job messages: queue position, progress bar, ETA, results and failures.

Every chat front end renders the same job events the same way; only the transport differs. Output is
plain text (no markup), so it is safe to send without escaping on any platform.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.i18n import I18n, placeholders
from bot.parsing import FLAGS, ParseError
from gateway.models import (
    Blocked,
    Cancelled,
    Failed,
    FailureCode,
    Progress,
    Queued,
    TimedOut,
    short_id,
)

__all__ = [
    "BAR_WIDTH",
    "JobView",
    "Renderer",
    "fit_lines",
    "format_duration",
    "kept_lines",
    "progress_bar",
    "shorten",
    "text_length",
    "truncate",
]

BAR_WIDTH = 10
_FULL, _EMPTY = "▰", "▱"
_SLUG_RE = re.compile(r"[^a-z0-9]+")


def progress_bar(percent: float, width: int = BAR_WIDTH) -> str:
    """``▰▰▰▱▱▱▱▱▱▱`` for 30 %. Clamped to 0..100; a started bar never looks empty (>0 % shows one cell)."""
    p = 0.0 if math.isnan(percent) else min(100.0, max(0.0, percent))
    filled = int(p / 100 * width)
    if p > 0 and filled == 0:
        filled = 1
    return _FULL * filled + _EMPTY * (width - filled)


def format_duration(seconds: float | None) -> str:
    """``0:07``, ``1:05``, ``1:02:03`` — unit-free, so it reads the same in every language."""
    if seconds is None or math.isnan(seconds) or seconds < 0:
        return "–"
    total = int(round(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "…"


def shorten(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters, cut after a whole word when there is a space in its second
    half (else where it must: Chinese has no spaces), ending in "…"."""
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - 1)]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:—-") + "…"


def text_length(text: str) -> int:
    """The length a platform's message limit is measured in, counted the strict way: UTF-16 code units
    (an emoji outside the BMP counts twice), never less than Discord's or Telegram's own count."""
    return len(text.encode("utf-16-le")) // 2


def kept_lines(lines: Sequence[str], limit: int, more: Callable[[int], str]) -> int:
    """How many leading ``lines`` :func:`fit_lines` keeps: all of them when they fit, else as many as fit
    with ``more(n)`` after them, else 0 (only the first line, cut)."""
    if text_length("\n".join(lines)) <= limit:
        return len(lines)
    ends = list(itertools.accumulate(text_length(line) + 1 for line in lines))  # each with its newline
    for kept in range(len(lines) - 1, 0, -1):
        if ends[kept - 1] + text_length(more(len(lines) - kept)) <= limit:
            return kept
    return 0


def fit_lines(lines: Sequence[str], limit: int, more: Callable[[int], str]) -> str:
    """``lines`` joined by newlines, within ``limit`` (:func:`text_length`): whole lines only, never cut
    mid-word. When not all fit, as many leading lines as do are kept and the last line is ``more(n)``,
    ``n`` being how many were left out ("…and 12 more"). Only a first line too long on its own is cut.

    Every long list a front end posts (/workflows, /help, /queue, /history, /stats) goes through this
    (:meth:`Renderer.fit_list`), with the platform's limit (Discord 2000, Telegram 4096)."""
    kept = kept_lines(lines, limit, more)
    if kept == len(lines):
        return "\n".join(lines)
    if kept == 0:
        return truncate(lines[0], limit)
    return "\n".join([*lines[:kept], more(len(lines) - kept)])


@dataclass(frozen=True)
class JobView:
    """What a job message shows besides the event: the prompt and workflow the user asked for."""

    prompt: str
    workflow: str
    request_id: str
    started_at: float | None = None  # when the job started running (for "elapsed")


class Renderer:
    """Turns events, refusals and errors into localized text."""

    PROMPT_PREVIEW = 200

    def __init__(self, i18n: I18n) -> None:
        self.i18n = i18n

    def t(self, locale: str, key: str, /, **values: Any) -> str:
        return self.i18n.t(locale, key, **values)

    def fit_list(self, locale: str, lines: Sequence[str], limit: int) -> str:
        """:func:`fit_lines` with the localized "…and N more" as the last line when not all fit."""
        return fit_lines(lines, limit, self._more(locale))

    def fit_count(self, locale: str, lines: Sequence[str], limit: int) -> int:
        """How many of ``lines`` :meth:`fit_list` shows (:func:`kept_lines`)."""
        return kept_lines(lines, limit, self._more(locale))

    def _more(self, locale: str) -> Callable[[int], str]:
        return lambda n: self.t(locale, "list.more", count=n)

    def size(self, locale: str, n: int, *, limit: bool = False) -> str:
        """Bytes in binary units with their localized label: ``15 MiB``, ``20.5 MiB``, ``512 KiB``.

        One decimal at most; a ``limit`` is rounded down and a size up, so a file just over the limit
        never reads as equal to it ("20.1 MiB, the limit is 20 MiB")."""
        kib = n < 1024 * 1024
        tenths = n * 10 / (1024 if kib else 1024 * 1024)
        tenths = math.floor(tenths) if limit else math.ceil(tenths)
        number = f"{tenths / 10:.1f}".rstrip("0").rstrip(".")
        return self.t(locale, "unit.kib" if kib else "unit.mib", n=number)

    # --- job message ------------------------------------------------------------------------------

    def title(self, locale: str, prompt: str, workflow: str, limit: int = PROMPT_PREVIEW) -> str:
        """The prompt, or for a workflow without one (upscale) what the workflow does, never "(no prompt)"
        when the catalogue can say better."""
        text = truncate(prompt.strip(), limit)
        if text:
            return text
        key = f"wf.{workflow}"
        return self.t(locale, key) if self.i18n.has(locale, key) else self.t(locale, "job.no_prompt")

    def _header(self, locale: str, view: JobView) -> str:
        prompt = self.title(locale, view.prompt, view.workflow)
        return self.t(locale, "job.header", prompt=prompt, workflow=view.workflow)

    def step_label(self, locale: str, label: str) -> str:
        """A manifest label ("Sampling") in the user's language when the catalogue knows it."""
        key = "step." + _SLUG_RE.sub("_", label.lower()).strip("_")
        if key in self.i18n.catalogues.get(locale, {}) or key in self.i18n.catalogues[self.i18n.default]:
            return self.t(locale, key)
        return label

    def queued(self, locale: str, view: JobView, ev: Queued) -> str:
        lines = [
            self._header(locale, view),
            self.t(locale, "progress.queued", position=ev.position, depth=max(ev.depth, ev.position)),
        ]
        if ev.blocked is not None:
            lines.append(self.blocked(locale, ev.blocked))
        elif ev.eta_s is not None and ev.eta_s >= 1:  # "about 0:00" reads as a promise it can't keep
            lines.append(self.t(locale, "progress.queued_eta", eta=format_duration(ev.eta_s)))
        return "\n".join(lines)

    def held(self, locale: str, view: JobView) -> str:
        return "\n".join([self._header(locale, view), self.t(locale, "progress.held")])

    def blocked(self, locale: str, blocked: Blocked) -> str:
        """Why a job waits although the queue may be empty: no server up, or none has what it needs."""
        return self.t(locale, f"progress.blocked.{blocked.reason}", name=blocked.name)

    def started(self, locale: str, view: JobView) -> str:
        return "\n".join([self._header(locale, view), self.t(locale, "progress.started")])

    def progress(self, locale: str, view: JobView, ev: Progress, now: float) -> str:
        lines = [
            self._header(locale, view),
            self.t(
                locale,
                "progress.node",
                label=self.step_label(locale, ev.node_label),
                done=ev.done_nodes,
                total=ev.total_nodes,
            ),
        ]
        if ev.max > 1:
            lines.append(self.t(locale, "progress.step", value=ev.value, max=ev.max))
        if ev.activity == "loading":  # current ComfyUI: weights moving, no step yet — not "0 %"
            lines.append(self.t(locale, "progress.activity.loading"))
        else:
            lines.append(f"{progress_bar(ev.percent)} {int(min(100.0, max(0.0, ev.percent)))}%")
        elapsed = None if view.started_at is None else max(0.0, now - view.started_at)
        timing = [self.t(locale, "progress.elapsed", elapsed=format_duration(elapsed))]
        if ev.eta_s is not None and ev.eta_s >= 1:
            timing.append(self.t(locale, "progress.eta", eta=format_duration(ev.eta_s)))
        lines.append(" · ".join(timing))
        return "\n".join(lines)

    def result_caption(
        self,
        locale: str,
        view: JobView,
        *,
        seed: int | None,
        duration_ms: int,
        count: int = 1,
        limit: int = 1024,
    ) -> str:
        meta = self.t(
            locale,
            "result.caption" if seed is not None else "result.caption_no_seed",  # no "🌱 –" for upscales
            seed=seed,
            workflow=view.workflow,
            duration=format_duration(duration_ms / 1000),
        )
        if count > 1:
            meta = self.t(locale, "result.count", count=count) + " · " + meta
        room = max(0, limit - len(meta) - 1)
        prompt = truncate(view.prompt.strip(), room)
        return f"{prompt}\n{meta}" if prompt else meta

    def failed(self, locale: str, view: JobView | None, ev: Failed) -> str:
        body = self.failure(locale, ev.code, request_id=ev.request_id, retry_after_s=ev.retry_after_s)
        return body if view is None else f"{self._header(locale, view)}\n{body}"

    def cancelled(self, locale: str, view: JobView, ev: Cancelled) -> str:
        return f"{self._header(locale, view)}\n{self.t(locale, 'result.cancelled')}"

    def timed_out(self, locale: str, view: JobView, ev: TimedOut) -> str:
        text = self.t(locale, "result.timed_out", after=format_duration(ev.after_s))
        ref = self.t(locale, "error.ref", rid=short_id(ev.request_id))
        return f"{self._header(locale, view)}\n{text}\n{ref}"

    # --- refusals and errors ----------------------------------------------------------------------

    def failure(
        self,
        locale: str,
        code: FailureCode | str,
        *,
        request_id: str | None = None,
        retry_after_s: float | None = None,
    ) -> str:
        """The localized text for a failure code, with the short request id when one is known."""
        try:
            fc = FailureCode(code)
        except ValueError:
            fc = FailureCode.INTERNAL
        if fc is FailureCode.RATE_LIMITED and retry_after_s is not None and retry_after_s > 0:
            text = self.t(locale, "error.rate_limited_wait", seconds=max(1, math.ceil(retry_after_s)))
        elif fc is FailureCode.QUOTA_EXCEEDED and retry_after_s is not None and retry_after_s > 0:
            text = self.quota_reset(locale, retry_after_s)
        else:
            text = self.t(locale, f"error.{fc.value}")
        if request_id and fc not in _NO_REF:
            text += "\n" + self.t(locale, "error.ref", rid=short_id(request_id))
        return text

    def quota_reset(self, locale: str, retry_after_s: float, now: float | None = None) -> str:
        """A used-up quota: when it resets (``HH:MM`` UTC, the window's end) and how long that is."""
        at = (time.time() if now is None else now) + retry_after_s
        minutes = max(1, math.ceil(retry_after_s / 60))
        wait = self.t(locale, "quota.wait", hours=minutes // 60, minutes=minutes % 60)
        reset = time.strftime("%H:%M", time.gmtime(round(at / 60) * 60))
        return self.t(locale, "error.quota_exceeded_wait", time=reset, wait=wait)

    def field_name(self, locale: str, field: str) -> str:
        key = f"field.{field}"
        return self.t(locale, key) if self.i18n.has(locale, key) else field

    def param_error(
        self, locale: str, field: str, reason: str, bounds: Mapping[str, Any] | None = None
    ) -> str:
        """``⚠️ Steps: must be between 1 and 100`` from a manifest ParamError's field, reason and bounds."""
        b = dict(bounds or {})
        values: dict[str, Any] = {k: _show(v) for k, v in b.items()}
        key = f"reason.{reason}"
        if reason in ("too_small", "too_large") and "min" in b and "max" in b:
            key = "reason.out_of_range"
        elif reason == "too_small" and "min" in b:
            key = "reason.too_small"
        elif reason == "too_large" and "max" in b:
            key = "reason.too_large"
        if not self.i18n.has(locale, key) or not placeholders(self.i18n.raw(locale, key)) <= values.keys():
            key = "reason.invalid"  # never show a raw "{max}" when the bounds are unknown
        text = self.t(locale, key, **values)
        return self.t(locale, "error.param", field=self.field_name(locale, field), reason=text)

    def parse_error(self, locale: str, exc: ParseError) -> str:
        known = " ".join(f"--{f}" for f in FLAGS)
        return self.t(
            locale,
            f"parse.{exc.code}",
            flag=exc.flag,
            value=truncate(exc.value, 40),
            known=known,
            example=exc.example or exc.flag,
        )


_NO_REF = frozenset(
    {
        FailureCode.RATE_LIMITED,
        FailureCode.TOO_MANY_PENDING,
        FailureCode.QUOTA_EXCEEDED,
        FailureCode.QUEUE_FULL,
        FailureCode.ACCESS_DENIED,
        FailureCode.INVALID_INPUT,
        FailureCode.PROMPT_TOO_LONG,
        FailureCode.PROMPT_BLOCKED,
        FailureCode.UNKNOWN_WORKFLOW,
        FailureCode.INVALID_IMAGE,
        FailureCode.IMAGE_TOO_LARGE,
    }
)


def _show(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple):
        return ", ".join(_show(v) for v in value)
    return str(value)
