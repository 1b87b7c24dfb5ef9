"""Platform-neutral text for job messages: queue position, progress bar, ETA, results and failures.

Every chat front end renders the same job events the same way; only the transport differs. Output is
plain text (no markup), so it is safe to send without escaping on any platform.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
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
    "format_duration",
    "progress_bar",
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
        else:
            text = self.t(locale, f"error.{fc.value}")
        if request_id and fc not in _NO_REF:
            text += "\n" + self.t(locale, "error.ref", rid=short_id(request_id))
        return text

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
