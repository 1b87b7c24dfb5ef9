"""gateway.limits: access policy, prompt filter, the in-memory rate limiter, Limits. (The Redis backend's
rate limit lives in its enqueue script: ``test_store_contract.py`` holds both backends to the same rule.)"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from structlog.testing import capture_logs

from gateway.errors import AccessDenied, InputInvalid, LimitExceeded
from gateway.limits import (
    AccessPolicy,
    InvalidFilterPattern,
    Limits,
    MemoryRateLimiter,
    PromptFilter,
    RateDecision,
    RateRule,
)
from gateway.models import FailureCode, Role

# --- access policy --------------------------------------------------------------------------------


def test_open_mode_lets_everyone_in_but_the_banned() -> None:
    policy = AccessPolicy("open", admins=["1"], banned=[666])
    assert policy.check("42", "chat") is Role.USER
    assert policy.check(1) is Role.ADMIN
    with capture_logs() as logs, pytest.raises(AccessDenied) as info:
        policy.check("666", "chat")
    assert info.value.code is FailureCode.ACCESS_DENIED
    assert (info.value.user_id, info.value.chat_id) == ("666", "chat")
    assert logs[0]["event"] == "access_denied" and logs[0]["reason"] == "banned"


def test_allowlist_admits_listed_users_admins_and_allowed_chats() -> None:
    policy = AccessPolicy("allowlist", allowed_users=["10"], allowed_chats=["-100"], admins=["1"])
    assert policy.check("10", "dm") is Role.USER
    assert policy.check("1", "anywhere") is Role.ADMIN
    assert policy.check("999", "-100") is Role.USER  # anyone in a trusted group
    with pytest.raises(AccessDenied):
        policy.check("999", "dm")
    with pytest.raises(AccessDenied):
        policy.check("999")


def test_ban_wins_over_admin_and_allowlist() -> None:
    policy = AccessPolicy(
        "allowlist", allowed_users=["5"], allowed_chats=["-100"], admins=["5"], banned=["5"]
    )
    assert policy.role_of("5") is Role.BANNED
    with pytest.raises(AccessDenied):
        policy.check("5", "-100")


def test_role_of_and_require_admin() -> None:
    policy = AccessPolicy(admins=[" 7 "])
    assert policy.role_of("7") is Role.ADMIN
    assert policy.role_of("8") is Role.USER
    policy.require_admin("7")
    with pytest.raises(AccessDenied):
        policy.require_admin("8")


def test_permits_decides_as_check_does_without_logging() -> None:
    policy = AccessPolicy(
        "allowlist", allowed_users=["10"], allowed_chats=["-100"], admins=["1"], banned=["7"]
    )
    cases = [("10", "dm"), ("1", "x"), ("999", "-100"), ("999", "dm"), ("7", "-100"), ("7", None)]
    with capture_logs() as logs:
        decisions = [policy.permits(uid, cid) for uid, cid in cases]
    assert decisions == [True, True, True, False, False, False] and logs == []
    for (uid, cid), allowed in zip(cases, decisions, strict=True):
        if not allowed:
            with pytest.raises(AccessDenied):
                policy.check(uid, cid)


def test_bad_access_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="allowlist"):
        AccessPolicy("closed")  # type: ignore[arg-type]


# --- prompt filter --------------------------------------------------------------------------------


@pytest.fixture
def prompt_filter() -> PromptFilter:
    return PromptFilter(words=["nude", "gore", "real person", "누드", "裸体"], regexes=[r"\bcelebrity\s+\w+"])


@pytest.mark.parametrize(
    "text",
    [
        "a nude figure",
        "NUDE",
        "Nude, at dusk",
        "a n u d e figure",
        "n.u.d.e",
        "n_u-d*e",
        "ｎｕｄｅ",  # fullwidth
        "nüde",
        "nu\u200bde",  # zero-width space
        "lots of gore!",
        "a real   person in a field",
        "real-person",
        "누드를 그려줘",  # Korean with a particle glued on
        "一个裸体的人",  # Chinese, no spaces
        "a celebrity   portrait",  # operator regex
    ],
)
def test_blocked_prompts(prompt_filter: PromptFilter, text: str) -> None:
    with capture_logs() as logs, pytest.raises(InputInvalid) as info:
        prompt_filter.check(text)
    assert info.value.code is FailureCode.PROMPT_BLOCKED
    assert (info.value.field, info.value.reason) == ("prompt", "blocked")
    assert logs[0]["event"] == "prompt_refused"


@pytest.mark.parametrize(
    "text",
    [
        "a lighthouse at dusk",
        "denuded hillside",  # whole words only
        "nudes",  # a different word: list it if you mean it
        "gorgeous sunset",
        "goretex jacket",
        "a real personality",
        "a celebrity",  # regex needs a following word
        "",
    ],
)
def test_allowed_prompts(prompt_filter: PromptFilter, text: str) -> None:
    prompt_filter.check(text)
    assert prompt_filter.match(text) is None


def test_match_names_the_rule(prompt_filter: PromptFilter) -> None:
    assert prompt_filter.match("NUDE") == "nude"
    assert prompt_filter.match("celebrity cat") == r"re:\bcelebrity\s+\w+"


def test_prompt_too_long() -> None:
    f = PromptFilter(max_length=10)
    f.check("x" * 10)
    with pytest.raises(LimitExceeded) as info:
        f.check("x" * 11)
    assert info.value.code is FailureCode.PROMPT_TOO_LONG
    assert info.value.retry_after_s is None


def test_bad_regex_is_a_clear_error_at_construction() -> None:
    with pytest.raises(InvalidFilterPattern, match=r"blocklist regex #2 '\(unclosed' is invalid"):
        PromptFilter(regexes=["ok", "(unclosed"])


def test_precompiled_patterns_are_made_case_insensitive() -> None:
    f = PromptFilter(regexes=[re.compile("secret")])
    assert f.match("TOP SECRET") == "re:secret"


def test_empty_words_are_ignored() -> None:
    f = PromptFilter(words=["", "  "])
    assert f.match("anything at all") is None


# --- the in-memory rate limiter -----------------------------------------------------------------------


@pytest.fixture
def limiter() -> MemoryRateLimiter:
    return MemoryRateLimiter()


class TestMemoryRateLimiter:
    """A sliding log; time is passed in, never slept."""

    async def test_allows_up_to_the_limit_then_refuses(self, limiter: MemoryRateLimiter) -> None:
        decisions = [await limiter.hit("u1", 3, 60, now=1000.0 + i) for i in range(3)]
        assert [d.allowed for d in decisions] == [True, True, True]
        assert [d.remaining for d in decisions] == [2, 1, 0]
        refused = await limiter.hit("u1", 3, 60, now=1005.0)
        assert not refused.allowed
        assert refused.retry_after_s == pytest.approx(55.0)  # the first hit (t=1000) leaves at 1060

    async def test_window_slides(self, limiter: MemoryRateLimiter) -> None:
        for t in (0.0, 10.0, 20.0):
            assert (await limiter.hit("k", 3, 30, now=t)).allowed
        assert not (await limiter.hit("k", 3, 30, now=29.9)).allowed
        assert (await limiter.hit("k", 3, 30, now=30.0)).allowed  # t=0 is exactly one window old
        refused = await limiter.hit("k", 3, 30, now=31.0)
        assert not refused.allowed and refused.retry_after_s == pytest.approx(9.0)

    async def test_refused_hits_are_not_counted(self, limiter: MemoryRateLimiter) -> None:
        assert (await limiter.hit("k", 1, 10, now=0.0)).allowed
        for t in range(1, 10):
            assert not (await limiter.hit("k", 1, 10, now=float(t))).allowed
        assert (await limiter.hit("k", 1, 10, now=10.0)).allowed

    async def test_keys_are_independent(self, limiter: MemoryRateLimiter) -> None:
        assert (await limiter.hit("a", 1, 60, now=0.0)).allowed
        assert not (await limiter.hit("a", 1, 60, now=1.0)).allowed
        assert (await limiter.hit("b", 1, 60, now=1.0)).allowed

    async def test_fractional_windows_and_times(self, limiter: MemoryRateLimiter) -> None:
        assert (await limiter.hit("k", 2, 1.5, now=100.25)).allowed
        assert (await limiter.hit("k", 2, 1.5, now=100.5)).allowed
        refused = await limiter.hit("k", 2, 1.5, now=101.0)
        assert not refused.allowed and refused.retry_after_s == pytest.approx(0.75)

    async def test_zero_limit_refuses_everything(self, limiter: MemoryRateLimiter) -> None:
        decision = await limiter.hit("k", 0, 60, now=0.0)
        assert decision == RateDecision(allowed=False, retry_after_s=60.0)

    async def test_bad_window_is_a_programming_error(self, limiter: MemoryRateLimiter) -> None:
        with pytest.raises(ValueError):
            await limiter.hit("k", 1, 0, now=0.0)

    async def test_reset_forgets_a_key(self, limiter: MemoryRateLimiter) -> None:
        assert (await limiter.hit("k", 1, 60, now=0.0)).allowed
        await limiter.reset("k")
        assert (await limiter.hit("k", 1, 60, now=1.0)).allowed
        await limiter.reset("never-seen")

    async def test_concurrent_hits_never_exceed_the_limit(self, limiter: MemoryRateLimiter) -> None:
        results = await asyncio.gather(*(limiter.hit("k", 5, 60, now=50.0) for _ in range(40)))
        assert sum(d.allowed for d in results) == 5

    async def test_own_clock_when_now_is_omitted(self, limiter: MemoryRateLimiter) -> None:
        assert (await limiter.hit("k", 1, 3600)).allowed
        refused = await limiter.hit("k", 1, 3600)
        assert not refused.allowed and 0 < refused.retry_after_s <= 3600


# --- implementation specifics ----------------------------------------------------------------------


async def test_memory_limiter_prunes_expired_keys() -> None:
    limiter = MemoryRateLimiter(sweep_every=10_000)
    for i in range(100):
        await limiter.hit(f"user{i}", 5, 10, now=0.0)
    assert len(limiter) == 100
    assert limiter.sweep(now=5.0) == 0
    assert limiter.sweep(now=10.0) == 100
    assert len(limiter) == 0


async def test_memory_limiter_sweeps_on_its_own() -> None:
    limiter = MemoryRateLimiter(sweep_every=50)
    for i in range(200):
        await limiter.hit(f"user{i}", 5, 1, now=float(i))  # each key expires a second later
    assert len(limiter) <= 51


async def test_memory_limiter_caps_keys() -> None:
    limiter = MemoryRateLimiter(max_keys=10)
    for i in range(50):
        await limiter.hit(f"user{i}", 5, 3600, now=0.0)
    assert len(limiter) == 10


async def test_memory_limiter_uses_its_injected_clock() -> None:
    now = [0.0]
    limiter = MemoryRateLimiter(clock=lambda: now[0])
    assert (await limiter.hit("k", 1, 10)).allowed
    now[0] = 9.0
    assert (await limiter.hit("k", 1, 10)).retry_after_s == pytest.approx(1.0)
    now[0] = 10.0
    assert (await limiter.hit("k", 1, 10)).allowed


# --- Limits bundle ----------------------------------------------------------------------------------


def test_limits_rate_rule_per_user_and_admins_exempt() -> None:
    limits = Limits(rate_count=2, rate_window_s=60)
    rule = limits.rate_rule("u")
    assert rule == RateRule("submit:u", 2, 60)
    assert limits.rate_rule("boss", Role.ADMIN) is None
    assert Limits(admins_exempt=False).rate_rule("boss", Role.ADMIN) is not None
    refusal = rule.exceeded(12.5)
    assert refusal.code is FailureCode.RATE_LIMITED and refusal.retry_after_s == 12.5
    with pytest.raises(ValueError):
        RateRule("k", 1, 0)


def test_limits_pending_cap_exempts_admins_only_when_configured() -> None:
    limits = Limits(max_pending_per_user=2)
    assert limits.pending_cap() == 2 and limits.pending_cap(Role.BANNED) == 2
    assert limits.pending_cap(Role.ADMIN) is None
    assert Limits(max_pending_per_user=2, admins_exempt=False).pending_cap(Role.ADMIN) == 2


def test_limits_defaults_are_plain_values() -> None:
    limits = Limits()
    kwargs: dict[str, Any] = {"max_pending_per_user": 3, "rate_count": 10, "queue_cap": 100}
    assert all(getattr(limits, k) == v for k, v in kwargs.items())
    assert isinstance(limits.prompt_filter, PromptFilter)


# --- the error hierarchy these raise -----------------------------------------------------------------


def test_errors_carry_stable_codes_and_structured_fields() -> None:
    from gateway.errors import GatewayError, ImageRejected, StorageError, UnknownWorkflowError

    assert GatewayError().code is FailureCode.INTERNAL
    rejected = ImageRejected("too big", code=FailureCode.IMAGE_TOO_LARGE)
    assert isinstance(rejected, GatewayError) and rejected.detail == "too big"
    assert str(rejected) == "image_too_large: too big"
    assert repr(rejected) == "ImageRejected(code='image_too_large', detail='too big')"
    assert ImageRejected().code is FailureCode.INVALID_IMAGE
    assert LimitExceeded(retry_after_s=3.0).retry_after_s == 3.0
    invalid = InputInvalid("steps", "out_of_range")
    assert (invalid.code, invalid.field, invalid.reason, invalid.detail) == (
        FailureCode.INVALID_INPUT,
        "steps",
        "out_of_range",
        "steps: out_of_range",
    )
    assert UnknownWorkflowError("nope").code is FailureCode.UNKNOWN_WORKFLOW
    assert StorageError("x").code is FailureCode.INTERNAL
