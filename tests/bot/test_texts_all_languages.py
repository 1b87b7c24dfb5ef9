"""Every state a user can see, rendered in every language: no raw keys, braces, None, or English leaking."""

from __future__ import annotations

import re

import pytest

from bot.i18n import LANGUAGES, I18n
from bot.parsing import ParseError, parse_prompt
from bot.render import JobView, Renderer
from bot.telegram.keyboards import (
    aspect_keyboard,
    language_keyboard,
    progress_keyboard,
    result_keyboard,
    settings_keyboard,
)
from comfy.workflows import load_workflows
from gateway.models import Cancelled, Failed, FailureCode, Progress, Queued, TimedOut

I18N = I18n.load()
R = Renderer(I18N)
VIEW = JobView(
    prompt="a lighthouse at dusk", workflow="txt2img", request_id="0123456789abcdef", started_at=1.0
)
NO_PROMPT = JobView(prompt="", workflow="upscale", request_id="0123456789abcdef", started_at=1.0)
_KEY_RE = re.compile(r"\b(?:" + "|".join(re.escape(k) for k in I18N.catalogues["en"]) + r")\b")


def _states(locale: str) -> dict[str, str]:
    progress = Progress(
        job_id="j",
        request_id="r",
        node_label="Sampling",
        done_nodes=3,
        total_nodes=7,
        value=12,
        max=20,
        percent=60.0,
        eta_s=8,
    )
    out = {
        "queued": R.queued(locale, VIEW, Queued(job_id="j", request_id="r", position=3, depth=5, eta_s=40)),
        "queued_no_prompt": R.queued(
            locale, NO_PROMPT, Queued(job_id="j", request_id="r", position=1, depth=1)
        ),
        "started": R.started(locale, VIEW),
        "progress": R.progress(locale, VIEW, progress, now=13.0),
        "caption": R.result_caption(locale, VIEW, seed=42, duration_ms=14_000, count=2),
        "caption_no_seed": R.result_caption(locale, NO_PROMPT, seed=None, duration_ms=3_000),
        "cancelled": R.cancelled(locale, VIEW, Cancelled(job_id="j", request_id="r", by="1")),
        "timed_out": R.timed_out(locale, VIEW, TimedOut(job_id="j", request_id="r", after_s=300)),
    }
    for code in FailureCode:
        out[f"failed.{code.value}"] = R.failed(
            locale, VIEW, Failed(job_id="j", request_id="0123456789abcdef", code=code, retry_after_s=3)
        )
    reg = load_workflows()
    for wf in reg:
        for name, spec in wf.params.items():
            bounds = {k: getattr(spec, k) for k in ("min", "max", "max_length") if getattr(spec, k, None)}
            for reason in ("too_large", "too_small", "required", "invalid"):
                out[f"param.{wf.name}.{name}.{reason}"] = R.param_error(locale, name, reason, bounds)
    for text in ("x --foo 1", "x --ar", "x --seed abc", "x --cfg high", "x --ar wide"):
        with pytest.raises(ParseError) as exc:
            parse_prompt(text)
        out[f"parse.{text}"] = R.parse_error(locale, exc.value)
    markups = [
        progress_keyboard(I18N, locale, "0123456789abcdef"),
        result_keyboard(I18N, locale, "0123456789abcdef", images=3),
        settings_keyboard(I18N, locale),
        aspect_keyboard(I18N, locale, "1:1"),
        language_keyboard(I18N, locale, locale, in_settings=True),
    ]
    for i, markup in enumerate(markups):
        out[f"buttons.{i}"] = " ".join(b.text for row in markup.inline_keyboard for b in row)
    return out


@pytest.mark.parametrize("locale", LANGUAGES)
def test_no_raw_keys_braces_or_none(locale: str) -> None:
    for name, text in _states(locale).items():
        assert text.strip(), name
        assert "{" not in text and "}" not in text, (name, text)
        assert "None" not in text, (name, text)
        assert not _KEY_RE.search(text), (name, text)


@pytest.mark.parametrize("locale", [lang for lang in LANGUAGES if lang != "en"])
def test_no_english_leaks_into_other_languages(locale: str) -> None:
    english = _states("en")
    # Texts made only of numbers, names, flags and emoji are the same in every language.
    neutral = {"caption", "caption_no_seed", "buttons.3"}
    for name, text in _states(locale).items():
        if name in neutral or name.startswith("parse.x --foo"):
            continue
        letters = re.sub(r"--\w+|\b(?:txt2img|upscale|img2img|hires|ComfyUI|CFG|English)\b", "", text)
        if not re.search(r"[A-Za-z]{3,}", english[name]):
            continue
        assert text != english[name], (name, text)
        assert not re.search(r"\b[A-Za-z]{4,}\b(?: \b[A-Za-z]{4,}\b)+", letters), (name, text)
