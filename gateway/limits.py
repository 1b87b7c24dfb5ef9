"""Who may use the bot, what they may ask for, and how often.

* :class:`AccessPolicy` — open or allowlist access, admins, bans.
* :class:`PromptFilter` — prompt length and a configurable blocklist (whole words, light
  de-obfuscation, operator regexes).
* :class:`RateRule` — a sliding-window rate limit. The queue backend applies it in the same atomic step
  that enqueues the job (after the per-user pending cap, so a refused flood spends no rate): in memory
  with :class:`MemoryRateLimiter`, in Redis inside the enqueue script (``gateway/redis_scripts.py``).
* :class:`Limits` — the plain values the gateway service applies on submit.

Every refusal is a :class:`~gateway.errors.GatewayError` carrying a stable code; ``detail`` is for logs.
"""

from __future__ import annotations

import abc
import re
import time
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from core.logs import get_logger
from gateway.errors import AccessDenied, InputInvalid, LimitExceeded
from gateway.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE
from gateway.models import FailureCode, Role

if TYPE_CHECKING:
    from gateway.quotas import QuotaPolicy

log = get_logger("gateway")

# --- access ---------------------------------------------------------------------------------------


def _ids(values: Iterable[str | int]) -> frozenset[str]:
    return frozenset(str(v).strip() for v in values if str(v).strip())


class AccessPolicy:
    """Decides who may use the bot.

    ``open``: everyone except ``banned``. ``allowlist``: admins, ``allowed_users``, and anyone writing
    in one of ``allowed_chats`` (a group the operator trusts). A banned id is refused in every mode,
    even if it is also listed as an admin. Ids are compared as strings (Telegram and Discord ids both fit).
    """

    def __init__(
        self,
        mode: Literal["open", "allowlist"] = "open",
        *,
        allowed_users: Iterable[str | int] = (),
        allowed_chats: Iterable[str | int] = (),
        admins: Iterable[str | int] = (),
        banned: Iterable[str | int] = (),
        remix_chats: Iterable[str | int] = (),
    ) -> None:
        if mode not in ("open", "allowlist"):
            raise ValueError(f"access mode must be 'open' or 'allowlist', not {mode!r}")
        self.mode = mode
        self.allowed_users = _ids(allowed_users)
        self.allowed_chats = _ids(allowed_chats)
        self.admins = _ids(admins)
        self.banned = _ids(banned)
        self.remix_chats = _ids(remix_chats)  # chats where anyone may Reroll/Vary/Upscale/Info a result

    def role_of(self, user_id: str | int) -> Role:
        """``BANNED``, ``ADMIN`` or ``USER`` (the role says nothing about the allowlist)."""
        uid = str(user_id)
        if uid in self.banned:
            return Role.BANNED
        if uid in self.admins:
            return Role.ADMIN
        return Role.USER

    def may_use_result(self, user_id: str | int, owner_id: str | int, chat_id: str | int) -> bool:
        """Whether ``user_id`` may press a result's Reroll / Variations / Upscale / Info: its owner and
        admins always; anyone else only in a chat the operator opened for remixing (``remix_chats``).
        The new job is the presser's, charged to their limits."""
        uid = str(user_id)
        return uid == str(owner_id) or self.role_of(uid) is Role.ADMIN or str(chat_id) in self.remix_chats

    def check(self, user_id: str | int, chat_id: str | int | None = None) -> Role:
        """The user's role; else ``access_denied`` is logged and :class:`~gateway.errors.AccessDenied`
        raised."""
        uid, cid = str(user_id), None if chat_id is None else str(chat_id)
        reason = self._refusal(uid, cid)
        if reason is not None:
            raise self._deny(reason, uid, cid)
        return self.role_of(uid)

    def permits(self, user_id: str | int, chat_id: str | int | None = None) -> bool:
        """:meth:`check` without the log line, for what a user does many times a second (autocomplete)."""
        return self._refusal(str(user_id), None if chat_id is None else str(chat_id)) is None

    def _refusal(self, uid: str, cid: str | None) -> str | None:
        role = self.role_of(uid)
        if role is Role.BANNED:
            return "banned"
        if self.mode == "allowlist" and not (
            role is Role.ADMIN or uid in self.allowed_users or (cid is not None and cid in self.allowed_chats)
        ):
            return "not_allowlisted"
        return None

    def require_admin(self, user_id: str | int) -> None:
        """Raise :class:`~gateway.errors.AccessDenied` unless ``user_id`` is an admin."""
        if self.role_of(user_id) is not Role.ADMIN:
            raise self._deny("not_admin", str(user_id), None)

    @staticmethod
    def _deny(reason: str, uid: str, cid: str | None) -> AccessDenied:
        log.info("access_denied", component="gateway", reason=reason, user_id=uid, chat_id=cid)
        return AccessDenied(reason, user_id=uid, chat_id=cid)


# --- prompt filter --------------------------------------------------------------------------------

# Characters people slip into a word to dodge a filter, and that render as nothing.
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u034f\u180e\u200b\u200c\u200d\u2060\u2061\u2062\u2063\ufeff"))
_SEP = r"[\W_]?"  # at most one separator between letters: "n u d e", "n.u.d.e", "n_u_d_e"


class InvalidFilterPattern(ValueError):
    """A blocklist regex does not compile; the message names it (a startup configuration error)."""


def _normalise(text: str) -> str:
    """Casefold, fold compatibility forms (fullwidth, ligatures), drop accents and invisible chars,
    collapse whitespace: what both words and prompts are compared in."""
    text = unicodedata.normalize("NFKD", text.translate(_INVISIBLE))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(text.split())


def _unspaced_script(word: str) -> bool:
    """Scripts written without spaces between words (or with particles glued on, like Korean):
    whole-word boundaries would never match there, so such words match as substrings."""
    for ch in word:
        name = unicodedata.name(ch, "")
        if name.startswith(("CJK", "HANGUL", "HIRAGANA", "KATAKANA", "THAI", "LAO", "KHMER", "MYANMAR")):
            return True
    return False


def _word_pattern(word: str) -> str | None:
    norm = _normalise(word)
    if not norm:
        return None
    parts: list[str] = []
    for i, ch in enumerate(norm):
        if ch == " ":
            parts.append(r"[\W_]+")
            continue
        parts.append(re.escape(ch))
        if i + 1 < len(norm) and norm[i + 1] != " ":
            parts.append(_SEP)
    body = "".join(parts)
    if _unspaced_script(norm):
        return body
    return rf"(?<![^\W_]){body}(?![^\W_])"


class PromptFilter:
    """Prompt length limit and blocklist.

    ``words`` match case-insensitively as whole words (or phrases), after Unicode normalisation, with
    accents and zero-width characters removed and at most one separator between letters — so ``NUDE``,
    ``nüde``, ``n u d e`` and ``n.u.d.e`` match ``nude`` but ``denuded`` does not. Words in CJK, Hangul
    and similar scripts match as substrings. ``regexes`` are the operator's own patterns, compiled once
    here (case-insensitive), tried on both the raw and the normalised prompt; a bad one raises
    :class:`InvalidFilterPattern` naming it.
    """

    def __init__(
        self,
        words: Iterable[str] = (),
        regexes: Iterable[str | re.Pattern[str]] = (),
        max_length: int = 2000,
    ) -> None:
        if max_length < 1:
            raise ValueError("max_length must be at least 1")
        self.max_length = max_length
        self._words: list[tuple[str, re.Pattern[str]]] = []
        for word in words:
            pattern = _word_pattern(word)
            if pattern is not None:
                self._words.append((word, re.compile(pattern)))
        self._regexes: list[re.Pattern[str]] = []
        for i, rx in enumerate(regexes):
            if isinstance(rx, re.Pattern):
                self._regexes.append(re.compile(rx.pattern, rx.flags | re.IGNORECASE))
                continue
            try:
                self._regexes.append(re.compile(rx, re.IGNORECASE))
            except re.error as exc:
                raise InvalidFilterPattern(f"blocklist regex #{i + 1} {rx!r} is invalid: {exc}") from None

    def match(self, text: str) -> str | None:
        """The blocklist rule ``text`` trips (the word, or ``re:<pattern>``), or ``None``."""
        norm = _normalise(text)
        for word, pattern in self._words:
            if pattern.search(norm):
                return word
        for rx in self._regexes:
            if rx.search(text) or rx.search(norm):
                return f"re:{rx.pattern}"
        return None

    def check(self, text: str, *, field: str = "prompt") -> None:
        """Raise :class:`~gateway.errors.LimitExceeded` (``PROMPT_TOO_LONG``) or
        :class:`~gateway.errors.InputInvalid` (``PROMPT_BLOCKED``); return ``None`` when fine."""
        if len(text) > self.max_length:
            log.info("prompt_refused", component="gateway", reason="too_long", length=len(text))
            raise LimitExceeded(
                f"{field} has {len(text)} characters, limit {self.max_length}",
                code=FailureCode.PROMPT_TOO_LONG,
            )
        rule = self.match(text)
        if rule is not None:
            # The rule goes to logs and detail (for admins); users only ever see the code's text.
            log.info("prompt_refused", component="gateway", reason="blocked", rule=rule)
            raise InputInvalid(field, "blocked", code=FailureCode.PROMPT_BLOCKED, detail=f"matched {rule!r}")


# --- rate limiting --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The answer to one :meth:`RateLimiter.hit`: allowed or not, and when to retry if not."""

    allowed: bool
    retry_after_s: float = 0.0
    remaining: int = 0


@dataclass(frozen=True, slots=True)
class RateRule:
    """At most ``limit`` accepted hits under ``key`` in any ``window_s`` (refused hits are not counted).
    ``now`` (seconds) is for tests; otherwise the limiter's own clock (Redis: the server's) is used."""

    key: str
    limit: int
    window_s: float
    now: float | None = None

    def __post_init__(self) -> None:
        if self.window_s <= 0:
            raise ValueError("window_s must be positive")

    def exceeded(self, retry_after_s: float) -> LimitExceeded:
        """The refusal of a hit over this rule."""
        detail = f"over {self.limit} per {self.window_s:g}s"
        return LimitExceeded(detail, code=FailureCode.RATE_LIMITED, retry_after_s=retry_after_s)


class RateLimiter(abc.ABC):
    """Sliding-window rate limiter: at most ``limit`` allowed hits per ``key`` in any ``window_s``.

    Refused hits are not counted, so a user who keeps trying is not locked out for longer.
    ``now`` (seconds) is for tests; implementations otherwise use their own clock.
    """

    @abc.abstractmethod
    async def hit(self, key: str, limit: int, window_s: float, *, now: float | None = None) -> RateDecision:
        """Record a hit on ``key`` if allowed; ``retry_after_s`` > 0 says when a slot frees up."""

    @abc.abstractmethod
    async def reset(self, key: str) -> None:
        """Forget every hit on ``key`` (an admin lifting a limit)."""


def _refuse_nonpositive(limit: int, window_s: float) -> RateDecision | None:
    if window_s <= 0:
        raise ValueError("window_s must be positive")
    if limit <= 0:
        return RateDecision(allowed=False, retry_after_s=window_s)
    return None


class MemoryRateLimiter(RateLimiter):
    """In-process sliding log (one deque of timestamps per key).

    Memory stays bounded: every ``sweep_every`` hits, keys whose hits have all expired are dropped, and
    beyond ``max_keys`` the least recently used keys are evicted (which can only make it more lenient).
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000, sweep_every: int = 1000
    ) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._sweep_every = sweep_every
        self._hits_since_sweep = 0
        # key -> (window_s of the latest hit, timestamps of allowed hits, oldest first)
        self._keys: OrderedDict[str, tuple[float, deque[float]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    async def hit(self, key: str, limit: int, window_s: float, *, now: float | None = None) -> RateDecision:
        refused = _refuse_nonpositive(limit, window_s)
        if refused is not None:
            return refused
        now = self._clock() if now is None else now
        self._hits_since_sweep += 1
        if self._hits_since_sweep >= self._sweep_every:
            self.sweep(now)
        _, stamps = self._keys.get(key, (window_s, deque()))
        while stamps and stamps[0] <= now - window_s:
            stamps.popleft()
        self._keys[key] = (window_s, stamps)
        self._keys.move_to_end(key)
        if len(stamps) >= limit:
            return RateDecision(allowed=False, retry_after_s=stamps[0] + window_s - now)
        stamps.append(now)
        while len(self._keys) > self._max_keys:
            self._keys.popitem(last=False)
        return RateDecision(allowed=True, remaining=limit - len(stamps))

    async def reset(self, key: str) -> None:
        self._keys.pop(key, None)

    def sweep(self, now: float | None = None) -> int:
        """Drop keys with no hit inside their window; returns how many were dropped."""
        now = self._clock() if now is None else now
        self._hits_since_sweep = 0
        stale = [k for k, (window, stamps) in self._keys.items() if not stamps or stamps[-1] <= now - window]
        for k in stale:
            del self._keys[k]
        return len(stale)


# --- the bundle -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits the gateway applies on submit. Plain values; the startup module builds them from
    ``core.config.LimitSettings`` (same field names; ``rate_per_user`` becomes ``rate_count`` and
    ``rate_window_s``). Admins skip the per-user rate and pending limits when ``admins_exempt``."""

    max_pending_per_user: int = 3
    rate_count: int = 10
    rate_window_s: float = 60.0
    queue_cap: int = 100
    queue_timeout_s: float = 600.0  # a job no healthy server can run fails no_backend after this long
    prompt_filter: PromptFilter = field(default_factory=PromptFilter)
    max_image_bytes: int = DEFAULT_MAX_BYTES
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    max_input_side: int = DEFAULT_MAX_SIDE
    admins_exempt: bool = True
    quotas: QuotaPolicy | None = None  # hourly/daily job quotas per role (gateway/quotas.py)

    @staticmethod
    def rate_key(user_id: str) -> str:
        """The rate limiter key of a user's submissions."""
        return f"submit:{user_id}"

    def rate_rule(self, user_id: str, role: Role = Role.USER) -> RateRule | None:
        """The submission rate ``user_id`` is held to, for the backend to apply atomically with the
        enqueue; ``None`` for an exempt admin."""
        if role is Role.ADMIN and self.admins_exempt:
            return None
        return RateRule(self.rate_key(user_id), self.rate_count, self.rate_window_s)

    def pending_cap(self, role: Role = Role.USER) -> int | None:
        """How many unfinished jobs a user of ``role`` may have; ``None`` for an exempt admin. (The queue
        cap holds for admins too: it protects the servers.)"""
        if role is Role.ADMIN and self.admins_exempt:
            return None
        return self.max_pending_per_user


__all__ = [
    "AccessPolicy",
    "InvalidFilterPattern",
    "Limits",
    "MemoryRateLimiter",
    "PromptFilter",
    "RateDecision",
    "RateLimiter",
    "RateRule",
]
