"""Platform-neutral rendering of job events."""

from __future__ import annotations

import pytest

from bot.i18n import I18n
from bot.parsing import ParseError
from bot.render import (
    JobView,
    Renderer,
    fit_lines,
    format_duration,
    progress_bar,
    shorten,
    text_length,
    truncate,
)
from gateway.models import Blocked, Failed, FailureCode, Progress, Queued


@pytest.fixture(scope="module")
def r() -> Renderer:
    return Renderer(I18n.load())


VIEW = JobView(
    prompt="a lighthouse at dusk", workflow="txt2img", request_id="0123456789abcdef", started_at=100.0
)


@pytest.mark.parametrize(
    ("pct", "bar"),
    [
        (0, "▱" * 10),
        (0.5, "▰" + "▱" * 9),
        (42, "▰" * 4 + "▱" * 6),
        (100, "▰" * 10),
        (150, "▰" * 10),
        (-3, "▱" * 10),
    ],
)
def test_progress_bar(pct: float, bar: str) -> None:
    assert progress_bar(pct) == bar


@pytest.mark.parametrize(
    ("s", "text"), [(0, "0:00"), (7.4, "0:07"), (65, "1:05"), (3723, "1:02:03"), (None, "–")]
)
def test_format_duration(s: float | None, text: str) -> None:
    assert format_duration(s) == text


def test_truncate() -> None:
    assert truncate("abc", 5) == "abc"
    assert truncate("abcdef", 4) == "abc…"


def test_fit_lines_keeps_whole_lines_and_says_how_many_are_left_out() -> None:
    def more(n: int) -> str:
        return f"…and {n} more"

    lines = ["header", *(f"• workflow_{i:02d} — does thing number {i}" for i in range(40))]
    assert fit_lines(lines[:3], 2000, more) == "\n".join(lines[:3])
    text = fit_lines(lines, 200, more)
    shown = text.split("\n")
    assert len(text) <= 200 and shown[0] == "header"
    assert shown[1:-1] == lines[1 : len(shown) - 1]  # whole lines, in order, none cut mid-word
    assert shown[-1] == more(len(lines) - (len(shown) - 1))
    # As many as fit: one more line would not.
    assert len(text) + len(lines[len(shown) - 1]) + 1 > 200
    assert fit_lines(["x" * 50], 10, more) == "x" * 9 + "…"  # only a lone first line is ever cut


def test_fit_lines_counts_emoji_as_discord_and_telegram_may() -> None:
    """An emoji outside the BMP is two UTF-16 code units: counted so, a list of them still fits."""
    assert text_length("🔁a") == 3
    lines = ["🧩"] + ["🔁" * 10] * 10
    text = fit_lines(lines, 50, lambda n: f"+{n}")
    assert text_length(text) <= 50 and text.endswith("\n+8")  # 2 + 1, 20 + 1, 20 + 1, 2


@pytest.mark.parametrize("locale", ["en", "ru", "ko", "zh_Hant"])
@pytest.mark.parametrize(
    "blocked",
    [
        Blocked(reason="servers_down"),
        Blocked(reason="missing_model", name="sdxl.safetensors"),
        Blocked(reason="missing_node", name="IPAdapter"),
        Blocked(reason="missing_option", name="sampler=lcm"),
    ],
)
def test_blocked_job_says_why_instead_of_an_eta(r: Renderer, locale: str, blocked: Blocked) -> None:
    q = r.queued(
        locale, VIEW, Queued(job_id="j", request_id="r", position=1, depth=1, eta_s=40, blocked=blocked)
    )
    why = r.t(locale, f"progress.blocked.{blocked.reason}", name=blocked.name)
    assert q.endswith(why) and blocked.name in why and "0:40" not in q
    assert why != r.t("en", f"progress.blocked.{blocked.reason}", name=blocked.name) or locale == "en"


def test_queued_and_progress(r: Renderer) -> None:
    q = r.queued("en", VIEW, Queued(job_id="j", request_id="r", position=3, depth=5, eta_s=40))
    assert "position 3 of 5" in q and "0:40" in q and "a lighthouse" in q
    p = r.progress(
        "ru",
        VIEW,
        Progress(
            job_id="j",
            request_id="r",
            node_label="Sampling",
            done_nodes=3,
            total_nodes=7,
            value=12,
            max=20,
            percent=60.0,
            eta_s=8,
        ),
        now=112.0,
    )
    assert "Генерация [3/7]" in p
    assert "Шаг 12/20" in p
    assert "▰▰▰▰▰▰▱▱▱▱ 60%" in p
    assert "0:12" in p and "0:08" in p


def test_unknown_step_label_is_shown_as_is(r: Renderer) -> None:
    assert r.step_label("ko", "My Custom Node") == "My Custom Node"
    assert r.step_label("ko", "Loading model") == "모델 불러오는 중"


def test_failure_shows_short_request_id(r: Renderer) -> None:
    text = r.failed("en", None, Failed(job_id="j", request_id="0123456789abcdef", code=FailureCode.TIMEOUT))
    assert "01234567" in text and "0123456789" not in text
    assert "01234567" not in r.failure("en", FailureCode.QUEUE_FULL, request_id="0123456789abcdef")
    assert "12 s" in r.failure("en", "rate_limited", retry_after_s=11.2)
    assert r.failure("en", "no_such_code") == r.failure("en", FailureCode.INTERNAL)


def test_param_errors_name_field_and_range(r: Renderer) -> None:
    assert r.param_error("en", "steps", "too_large", {"min": 1, "max": 100}) == (
        "⚠️ Steps (--steps): must be between 1 and 100."
    )
    text = r.param_error("ru", "ar", "bad_aspect", {"min_ratio": "1:4", "max_ratio": "4:1"})
    assert "Соотношение сторон" in text and "1:4" in text and "4:1" in text
    assert "2000" in r.param_error("en", "prompt", "too_long", {"max_length": 2000, "length": 5000})
    assert "mystery" in r.param_error("en", "mystery", "weird")


def test_parse_error_text(r: Renderer) -> None:
    text = r.parse_error("en", ParseError("unknown_flag", "--size"))
    assert "--size" in text and "--ar" in text


def test_caption_fits_telegram_limit(r: Renderer) -> None:
    view = JobView(prompt="x" * 5000, workflow="txt2img", request_id="r")
    cap = r.result_caption("en", view, seed=42, duration_ms=14_000, count=2)
    assert len(cap) <= 1024 and "42" in cap and "0:14" in cap and "×2" in cap


@pytest.mark.parametrize(
    ("text", "example"),
    [("cat --ar", "--ar 16:9"), ("cat --seed", "--seed 42"), ("cat --aspect", "--aspect 16:9")],
)
def test_missing_value_gives_an_example_that_fits_the_flag(r: Renderer, text: str, example: str) -> None:
    from bot.parsing import parse_prompt

    with pytest.raises(ParseError) as exc:
        parse_prompt(text)
    for locale in ("en", "ru", "ko", "zh_Hant"):
        shown = r.parse_error(locale, exc.value)
        assert example in shown, shown
        assert " 30" not in shown.replace(example, ""), "no example meant for another flag"


def _sampling(eta_s: float | None) -> Progress:
    return Progress(
        job_id="j",
        request_id="r",
        node_label="Sampling",
        done_nodes=3,
        total_nodes=7,
        value=1,
        max=20,
        percent=45.0,
        eta_s=eta_s,
    )


def test_an_eta_under_a_second_is_not_promised(r: Renderer) -> None:
    assert "left" not in r.progress("en", VIEW, _sampling(0.0), now=101.0)
    assert "0:00 left" not in r.progress("en", VIEW, _sampling(0.4), now=101.0)
    assert "about 0:05 left" in r.progress("en", VIEW, _sampling(5.0), now=101.0)
    q = r.queued("en", VIEW, Queued(job_id="j", request_id="r", position=1, depth=1, eta_s=0.3))
    assert "Starts in" not in q


def test_a_job_without_prompt_is_titled_by_its_workflow(r: Renderer) -> None:
    view = JobView(prompt="", workflow="upscale", request_id="r")
    q = r.queued("ru", view, Queued(job_id="j", request_id="r", position=1, depth=1))
    assert "Увеличить картинку" in q and "без описания" not in q
    assert "(no prompt)" in r.title("en", "", "unknown-workflow")
    cap = r.result_caption("en", view, seed=None, duration_ms=3000)
    assert cap == "upscale · ⏱ 0:03"


def test_sizes_are_binary_units_a_size_rounded_up_and_a_limit_down(r: Renderer) -> None:
    mib = 1024 * 1024
    assert r.size("en", 20 * mib, limit=True) == "20 MiB"
    assert r.size("en", 20 * mib + 1) == "20.1 MiB"  # just over the limit never reads as equal to it
    assert r.size("en", int(20.99 * mib), limit=True) == "20.9 MiB"
    assert r.size("ru", 15 * mib) == "15 МиБ"
    assert r.size("en", 512 * 1024) == "512 KiB"


def test_shorten_cuts_after_a_word_or_where_it_must() -> None:
    assert shorten("a picture from a prompt", 100) == "a picture from a prompt"
    assert shorten("a picture from a prompt", 16) == "a picture from…"
    assert shorten("文字生成圖片然後放大細節", 6) == "文字生成圖…"  # no spaces: cut where it must


@pytest.mark.parametrize(
    ("locale", "text"),
    [
        ("en", "Loading model…"),
        ("ru", "Загрузка модели…"),
        ("ko", "모델 불러오는 중…"),
        ("zh_Hant", "正在載入模型…"),
    ],
)
def test_loading_activity_replaces_the_zero_percent_bar(r: Renderer, locale: str, text: str) -> None:
    """Current ComfyUI says ``activity: "loading"`` while weights move: no "0%" bar that seems stuck."""
    ev = Progress(
        job_id="j",
        request_id="r",
        node_label="Loading model",
        done_nodes=0,
        total_nodes=7,
        activity="loading",
    )
    p = r.progress(locale, VIEW, ev, now=101.0)
    assert text in p and "0%" not in p
    assert "0%" in r.progress(locale, VIEW, ev.model_copy(update={"activity": None}), now=101.0)
