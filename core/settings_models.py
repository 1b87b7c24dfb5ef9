"""The settings sections: one frozen pydantic model per area (Telegram, Discord, ComfyUI, paths, logging,
limits, retention, S3, HTTP API). :mod:`core.config` assembles them into ``Settings`` and re-exports them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from core._values import (
    ByteSize,
    EnvBool,
    HttpUrl,
    IdSet,
    PatternList,
    Rate,
    RateValue,
    Seconds,
    StrList,
    WsUrl,
    parse_str_list,
    parse_url,
)

__all__ = [
    "ApiSettings",
    "ComfySettings",
    "DiscordSettings",
    "LimitSettings",
    "LoggingSettings",
    "PathSettings",
    "RetentionSettings",
    "S3Settings",
    "TelegramSettings",
]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


_WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")


class TelegramSettings(_Section):
    """Telegram front end. Disabled when ``bot_token`` is None."""

    bot_token: SecretStr | None = None
    api_base: HttpUrl = "https://api.telegram.org"
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: HttpUrl | None = None
    webhook_secret: SecretStr | None = None
    webhook_host: str = "127.0.0.1"
    webhook_port: int = Field(default=8081, ge=1, le=65535)
    previews: EnvBool = True
    #: calls a minute the bot makes in one group (Telegram's guidance: 20); docs/PACE.md
    group_per_minute: int = Field(default=20, ge=1, le=600)
    #: "auto": no per-job "queued" message while a group's budget is spoken for; "always": today's flow
    group_notices: Literal["auto", "always"] = "always"

    @field_validator("bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        # aiogram checks the same (its validate_token) only when the bot starts: say it at startup instead.
        if value is not None:
            token = value.get_secret_value()
            bot_id, sep, secret = token.partition(":")
            if not sep or not bot_id.isdigit() or not secret or any(c.isspace() for c in token):
                raise ValueError("not a Telegram bot token (<bot id>:<secret>, as @BotFather gives it)")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        # Telegram refuses any other secret_token at setWebhook time: say it at startup instead.
        if value is not None and not _WEBHOOK_SECRET.fullmatch(value.get_secret_value()):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)")
        return value

    @property
    def enabled(self) -> bool:
        return self.bot_token is not None


class DiscordSettings(_Section):
    """Discord front end. Disabled when ``bot_token`` is None.

    ``api_base``: where REST calls go — Discord, or a rate-limit proxy in front of it (``/api/v10`` is
    appended); ``gateway_url``: the websocket to connect to — Discord's, or a gateway proxy's."""

    bot_token: SecretStr | None = None
    api_base: HttpUrl = "https://discord.com"
    gateway_url: WsUrl = "wss://gateway.discord.gg"
    # None: the count Discord recommends (GET /gateway/bot); every process of the bot must use one count.
    shard_count: int | None = Field(default=None, ge=1)
    shard_ids: tuple[int, ...] | None = None  # this process's shards; None: all of them

    @field_validator("shard_ids", mode="before")
    @classmethod
    def _shard_ids(cls, value: Any) -> Any:
        if value is None:
            return None
        ids = parse_str_list(value)
        for i in ids:
            if not re.fullmatch(r"\d+", i):
                raise ValueError(f"{i!r} is not a shard id (a number from 0)")
        if len(set(ids)) != len(ids):
            raise ValueError(f"{','.join(ids)!r} names a shard twice")
        return tuple(int(i) for i in ids) or None

    def shard_problem(self) -> tuple[str, str] | None:
        """``(field, problem)`` when the shard ids do not fit the count (checked with the other rules)."""
        if self.shard_ids is None:
            return None
        if self.shard_count is None:
            return "shard_count", "required when DISCORD_SHARD_IDS is set (every process must agree on it)"
        over = [i for i in self.shard_ids if i >= self.shard_count]
        if over:
            return (
                "shard_ids",
                f"shard {over[0]} does not exist with {self.shard_count} shard(s) (ids: 0..count-1)",
            )
        return None

    @property
    def enabled(self) -> bool:
        return self.bot_token is not None


class ComfySettings(_Section):
    """The ComfyUI servers the workers drive."""

    urls: tuple[str, ...] = ()
    capacity: int = Field(default=2, ge=1, le=64)  # prompts in flight per server: one running + one pipelined
    ws_stall_timeout_s: Seconds = Field(default=30.0, gt=0)
    request_timeout_s: Seconds = Field(default=30.0, gt=0)
    # extra_data.preview_method of every prompt (current ComfyUI): live previews on a stock server started
    # without --preview-method. "default" sends none (the server's own setting; 0.3.x ignores the field).
    preview_method: Literal["auto", "latent2rgb", "taesd", "none", "default"] = "auto"
    # SIGTERM: how long running prompts may take to finish before the rest are handed back to the queue
    shutdown_grace_s: Seconds = Field(default=30.0, ge=0)
    # With Redis: this process's name among the front ends (default <host>-<pid>), and how long a replica
    # that stopped renewing keeps its jobs' messages and unshown outcomes before a live one takes them over
    replica_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    replica_lease_s: Seconds = Field(default=30.0, ge=1)
    # how long a job may wait for a busy server that has its checkpoint rather than swap models on a free
    # one (gateway/affinity.py); 0: never wait (a free server with the model is still preferred)
    affinity_wait_s: Seconds = Field(default=3.0, ge=0)

    @field_validator("urls", mode="before")
    @classmethod
    def _urls(cls, value: Any) -> tuple[str, ...]:
        return tuple(parse_url(u) for u in parse_str_list(value))


class PathSettings(_Section):
    """Where things live on disk."""

    workflows_dir: Path | None = None  # extra workflows, on top of the shipped ones
    data_dir: Path = Path("data")
    log_dir: Path = Path("logs")
    # Without Redis: "sqlite" keeps jobs and state in data_dir/comfybot.db across restarts; "memory" forgets.
    store: Literal["sqlite", "memory"] = "sqlite"


class LoggingSettings(_Section):
    """JSON-lines logging (see :mod:`core.logs`)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    max_bytes: ByteSize = Field(default=5 * 1024 * 1024, ge=1024)
    backups: int = Field(default=3, ge=0, le=100)

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value


class LimitSettings(_Section):
    """Per-user and global limits, the prompt blocklist, and who may use the bot.

    User and chat ids are strings (``JobRequest.user_id``), so Telegram and Discord ids both fit.
    """

    max_pending_per_user: int = Field(default=3, ge=1)
    rate_per_user: RateValue = Rate(count=10, per_s=60.0)
    queue_cap: int = Field(default=100, ge=1)
    # how long a job may wait while no healthy server can run it (all down, or missing its model)
    queue_timeout_s: Seconds = Field(default=600.0, gt=0)
    max_prompt_length: int = Field(default=2000, ge=1)
    max_image_bytes: ByteSize = Field(default=20 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    max_input_side: int = Field(default=2048, ge=16)
    blocklist_words: StrList = ()
    blocklist_patterns: PatternList = ()  # regexes, compiled at load time so a bad one fails here
    access: Literal["open", "allowlist"] = "open"
    allowed_users: IdSet = frozenset()
    allowed_chats: IdSet = frozenset()
    admins: IdSet = frozenset()
    banned: IdSet = frozenset()
    remix_chats: IdSet = frozenset()  # chats where anyone may use anyone's result buttons
    # jobs per user per UTC hour / day (None: no quota); admins have their own (None: none)
    quota_hourly: int | None = Field(default=None, ge=1)
    quota_daily: int | None = Field(default=None, ge=1)
    admin_quota_hourly: int | None = Field(default=None, ge=1)
    admin_quota_daily: int | None = Field(default=None, ge=1)
    # the take order (gateway/fair.py): round-robin over users with waiting jobs, or arrival
    queue_order: Literal["fair", "fifo"] = "fair"
    admin_queue_weight: int = Field(default=2, ge=1)  # an admin's jobs per round-robin turn (users: 1)


class RetentionSettings(_Section):
    """How long stored images are kept, in seconds (env values accept ``24h``, ``30d``)."""

    inputs_s: Seconds = Field(default=24 * 3600.0, gt=0)
    outputs_s: Seconds = Field(default=30 * 24 * 3600.0, gt=0)
    shared_s: Seconds = Field(default=24 * 3600.0, gt=0)  # with Redis: how long images stay shared there


class S3Settings(_Section):
    """An S3-compatible bucket for inputs and outputs (see :mod:`gateway.blobs`). Off unless ``bucket`` is
    set; ``url`` defaults to AWS's endpoint for ``region``. Addressing is path-style."""

    url: HttpUrl | None = None
    bucket: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None  # temporary credentials (STS)
    region: str = Field(default="us-east-1", pattern=r"^[a-z0-9-]{1,40}$")
    prefix: str = Field(default="comfybot/", pattern=r"^(?:[A-Za-z0-9._-]+/)*$")  # key prefix, ends with /

    @property
    def enabled(self) -> bool:
        return self.bucket is not None

    @property
    def endpoint(self) -> str:
        return self.url if self.url is not None else f"https://s3.{self.region}.amazonaws.com"


class ApiSettings(_Section):
    """The gateway's HTTP API: off unless enabled, loopback by default, always behind a token."""

    enabled: EnvBool = False
    bind: str = "127.0.0.1"
    port: int = Field(default=8787, ge=1, le=65535)
    token: SecretStr | None = None
    #: signs outbound webhooks (``callback_url`` of ``POST /v1/jobs``): ``X-Comfybot-Signature:
    #: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">``; without it a ``callback_url`` is refused
    webhook_secret: SecretStr | None = None
    #: Prometheus ``/metrics`` on a port of its own, no token (None: only the API's ``/metrics``)
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_bind: str = "127.0.0.1"

    @property
    def webhook_secret_value(self) -> str | None:
        """The webhook secret, or None when unset or empty."""
        if self.webhook_secret is None:
            return None
        return self.webhook_secret.get_secret_value() or None
