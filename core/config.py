"""Typed settings, read once at startup from the environment and an optional TOML file.

This is the only module of comfybot that reads ``os.environ``. Every process's startup module calls
:func:`load_settings` and passes the sections down; a bad value is one :class:`ConfigError` line naming the
variable, never a traceback ten minutes later.

Precedence: environment variable > TOML file (``--config``/``COMFYBOT_CONFIG``) > default. The TOML file uses
the section and field names of the models below (``[telegram] bot_token = "..."``, ``[comfy] urls = [...]``,
``[redis] url = "redis://..."``, ``[models] checkpoint = "..."``).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

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
from core.redis_settings import RedisSettings

__all__ = [
    "ApiSettings",
    "ComfySettings",
    "ConfigError",
    "DiscordSettings",
    "ENV_VARS",
    "LimitSettings",
    "LoggingSettings",
    "PathSettings",
    "Rate",
    "RedisSettings",
    "RetentionSettings",
    "S3Settings",
    "Settings",
    "TelegramSettings",
    "load_settings",
]


class ConfigError(Exception):
    """A configuration problem; ``str()`` is one line: ``<VARIABLE>: <problem>``."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


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


class Settings(BaseSettings):
    """Everything a comfybot process needs. Build it with :func:`load_settings`, not ``Settings()``.

    ``Settings()`` alone gives the defaults and never reads the environment (its only source is the
    constructor), so tests and feature modules cannot pick up stray variables by accident.
    """

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    telegram: TelegramSettings = TelegramSettings()
    discord: DiscordSettings = DiscordSettings()
    comfy: ComfySettings = ComfySettings()
    redis: RedisSettings | None = None  # None: the embedded store (paths.store)
    paths: PathSettings = PathSettings()
    logging: LoggingSettings = LoggingSettings()
    limits: LimitSettings = LimitSettings()
    retention: RetentionSettings = RetentionSettings()
    s3: S3Settings = S3Settings()
    api: ApiSettings = ApiSettings()
    # model overrides from COMFYBOT_MODEL_<NAME>, e.g. {"checkpoint": "x.safetensors"}
    models: dict[str, str] = Field(default_factory=dict)
    config_file: Path | None = None

    @field_validator("redis", mode="before")
    @classmethod
    def _redis(cls, value: Any) -> Any:
        if isinstance(value, str):
            return RedisSettings.from_url(value) if value.strip() else None
        if isinstance(value, Mapping) and set(value) == {"url"}:
            return RedisSettings.from_url(str(value["url"]))
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The interface's variable names (TELEGRAM_BOT_TOKEN, COMFYUI_URLS, LOG_DIR...) don't follow one
        # prefix/delimiter scheme, so load_settings maps them through ENV_VARS instead.
        return (init_settings,)

    def secrets(self) -> list[str]:
        """Every secret value configured, for :func:`core.logs.register_secret`."""
        tg = self.telegram
        values = [
            tg.bot_token,
            tg.webhook_secret,
            self.discord.bot_token,
            self.api.token,
            self.api.webhook_secret,
        ]
        out = [s.get_secret_value() for s in values if s is not None]
        if self.redis is not None and self.redis.password is not None:
            out.append(self.redis.password.get_secret_value())
        out += [
            s.get_secret_value() for s in (self.s3.secret_access_key, self.s3.session_token) if s is not None
        ]
        return [s for s in out if s]


# Environment variable -> (section, field). Model overrides use the COMFYBOT_MODEL_<NAME> prefix.
ENV_VARS: dict[str, tuple[str, str]] = {
    "TELEGRAM_BOT_TOKEN": ("telegram", "bot_token"),
    "TELEGRAM_API_BASE": ("telegram", "api_base"),
    "TELEGRAM_MODE": ("telegram", "mode"),
    "TELEGRAM_WEBHOOK_URL": ("telegram", "webhook_url"),
    "TELEGRAM_WEBHOOK_SECRET": ("telegram", "webhook_secret"),
    "TELEGRAM_WEBHOOK_HOST": ("telegram", "webhook_host"),
    "TELEGRAM_WEBHOOK_PORT": ("telegram", "webhook_port"),
    "TELEGRAM_PREVIEWS": ("telegram", "previews"),
    "TELEGRAM_GROUP_PER_MINUTE": ("telegram", "group_per_minute"),
    "TELEGRAM_GROUP_NOTICES": ("telegram", "group_notices"),
    "DISCORD_BOT_TOKEN": ("discord", "bot_token"),
    "DISCORD_API_BASE": ("discord", "api_base"),
    "DISCORD_GATEWAY_URL": ("discord", "gateway_url"),
    "DISCORD_SHARD_COUNT": ("discord", "shard_count"),
    "DISCORD_SHARD_IDS": ("discord", "shard_ids"),
    "COMFYUI_URLS": ("comfy", "urls"),
    "COMFYUI_CAPACITY": ("comfy", "capacity"),
    "COMFYUI_WS_STALL_TIMEOUT": ("comfy", "ws_stall_timeout_s"),
    "COMFYUI_REQUEST_TIMEOUT": ("comfy", "request_timeout_s"),
    "COMFYUI_PREVIEW_METHOD": ("comfy", "preview_method"),
    "COMFYBOT_SHUTDOWN_GRACE_S": ("comfy", "shutdown_grace_s"),
    "COMFYBOT_REPLICA_ID": ("comfy", "replica_id"),
    "COMFYBOT_REPLICA_LEASE_S": ("comfy", "replica_lease_s"),
    "COMFYBOT_AFFINITY_WAIT_S": ("comfy", "affinity_wait_s"),
    "REDIS_URL": ("redis", "url"),
    "COMFYBOT_WORKFLOWS_DIR": ("paths", "workflows_dir"),
    "COMFYBOT_DATA_DIR": ("paths", "data_dir"),
    "COMFYBOT_STORE": ("paths", "store"),
    "LOG_DIR": ("paths", "log_dir"),
    "LOG_LEVEL": ("logging", "level"),
    "LOG_MAX_BYTES": ("logging", "max_bytes"),
    "LOG_BACKUPS": ("logging", "backups"),
    "COMFYBOT_MAX_PENDING_PER_USER": ("limits", "max_pending_per_user"),
    "COMFYBOT_RATE_PER_USER": ("limits", "rate_per_user"),
    "COMFYBOT_QUEUE_CAP": ("limits", "queue_cap"),
    "COMFYBOT_QUEUE_TIMEOUT": ("limits", "queue_timeout_s"),
    "COMFYBOT_QUEUE_ORDER": ("limits", "queue_order"),
    "COMFYBOT_ADMIN_QUEUE_WEIGHT": ("limits", "admin_queue_weight"),
    "COMFYBOT_MAX_PROMPT_LENGTH": ("limits", "max_prompt_length"),
    "COMFYBOT_MAX_IMAGE_BYTES": ("limits", "max_image_bytes"),
    "COMFYBOT_MAX_IMAGE_PIXELS": ("limits", "max_image_pixels"),
    "COMFYBOT_MAX_INPUT_SIDE": ("limits", "max_input_side"),
    "COMFYBOT_BLOCKLIST": ("limits", "blocklist_words"),
    "COMFYBOT_BLOCKLIST_REGEX": ("limits", "blocklist_patterns"),
    "COMFYBOT_ACCESS": ("limits", "access"),
    "COMFYBOT_ALLOWED_USERS": ("limits", "allowed_users"),
    "COMFYBOT_ALLOWED_CHATS": ("limits", "allowed_chats"),
    "COMFYBOT_REMIX_CHATS": ("limits", "remix_chats"),
    "COMFYBOT_ADMINS": ("limits", "admins"),
    "COMFYBOT_BANNED": ("limits", "banned"),
    "COMFYBOT_QUOTA_HOURLY": ("limits", "quota_hourly"),
    "COMFYBOT_QUOTA_DAILY": ("limits", "quota_daily"),
    "COMFYBOT_ADMIN_QUOTA_HOURLY": ("limits", "admin_quota_hourly"),
    "COMFYBOT_ADMIN_QUOTA_DAILY": ("limits", "admin_quota_daily"),
    "COMFYBOT_RETENTION_INPUTS": ("retention", "inputs_s"),
    "COMFYBOT_RETENTION_OUTPUTS": ("retention", "outputs_s"),
    "COMFYBOT_RETENTION_SHARED": ("retention", "shared_s"),
    "COMFYBOT_S3_URL": ("s3", "url"),
    "COMFYBOT_S3_BUCKET": ("s3", "bucket"),
    "COMFYBOT_S3_ACCESS_KEY_ID": ("s3", "access_key_id"),
    "COMFYBOT_S3_SECRET_ACCESS_KEY": ("s3", "secret_access_key"),
    "COMFYBOT_S3_SESSION_TOKEN": ("s3", "session_token"),
    "COMFYBOT_S3_REGION": ("s3", "region"),
    "COMFYBOT_S3_PREFIX": ("s3", "prefix"),
    "COMFYBOT_API_ENABLED": ("api", "enabled"),
    "COMFYBOT_API_BIND": ("api", "bind"),
    "COMFYBOT_API_PORT": ("api", "port"),
    "COMFYBOT_API_TOKEN": ("api", "token"),
    "COMFYBOT_WEBHOOK_SECRET": ("api", "webhook_secret"),
    "COMFYBOT_METRICS_PORT": ("api", "metrics_port"),
    "COMFYBOT_METRICS_BIND": ("api", "metrics_bind"),
}
# The AWS tools' own names, read when ours is unset (credentials already in the environment just work).
ENV_FALLBACKS: dict[str, tuple[str, ...]] = {
    "COMFYBOT_S3_URL": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    "COMFYBOT_S3_ACCESS_KEY_ID": ("AWS_ACCESS_KEY_ID",),
    "COMFYBOT_S3_SECRET_ACCESS_KEY": ("AWS_SECRET_ACCESS_KEY",),
    "COMFYBOT_S3_SESSION_TOKEN": ("AWS_SESSION_TOKEN",),
    "COMFYBOT_S3_REGION": ("AWS_REGION", "AWS_DEFAULT_REGION"),
}
MODEL_PREFIX = "COMFYBOT_MODEL_"
CONFIG_ENV = "COMFYBOT_CONFIG"


def load_settings(env: Mapping[str, str] | None = None, config_file: Path | str | None = None) -> Settings:
    """Build :class:`Settings` from ``env`` (default ``os.environ``) and a TOML file.

    The file is ``config_file`` if given, else ``env["COMFYBOT_CONFIG"]`` if set, else none. Empty
    environment values count as unset. Raises :class:`ConfigError` (one line) on any bad value.
    """
    env = os.environ if env is None else env
    if config_file is None and env.get(CONFIG_ENV, "").strip():
        config_file = env[CONFIG_ENV].strip()
    path = Path(config_file) if config_file is not None else None
    data: dict[str, Any] = _read_toml(path) if path is not None else {}
    from_env: dict[tuple[str, str], str] = {}
    # The AWS names count only for a bucket comfybot is told to use: a host's unrelated AWS_REGION
    # must not stop a bot that stores nothing in S3.
    fallbacks = ENV_FALLBACKS if env.get("COMFYBOT_S3_BUCKET", "").strip() else {}
    for name, (section, key) in ENV_VARS.items():
        var = next((v for v in (name, *fallbacks.get(name, ())) if env.get(v, "").strip()), name)
        raw = env.get(var, "")
        if raw.strip():
            from_env[(section, key)] = var
            if section == "redis":
                data["redis"] = raw.strip()
            else:
                data.setdefault(section, {})[key] = raw
    for var, raw in env.items():
        if var.startswith(MODEL_PREFIX) and len(var) > len(MODEL_PREFIX) and raw.strip():
            data.setdefault("models", {})[var[len(MODEL_PREFIX) :].lower()] = raw.strip()
    if path is not None:
        data["config_file"] = path
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise _to_config_error(exc, from_env, env, path) from None
    _check(settings, from_env, path)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(CONFIG_ENV, f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"invalid TOML: {exc}") from None
    for section, body in data.items():
        if section not in Settings.model_fields or section == "config_file":
            raise ConfigError(str(path), f"unknown section [{section}]")
        if section != "redis" and not isinstance(body, dict):
            raise ConfigError(str(path), f"[{section}] must be a table")
    return data


def _name(loc: tuple[str | int, ...], from_env: Mapping[tuple[str, str], str], path: Path | None) -> str:
    section = str(loc[0]) if loc else ""
    key = str(loc[1]) if len(loc) > 1 else ""
    if section == "redis":
        key = "url"
    if (section, key) in from_env:
        return from_env[(section, key)]
    if section == "models" and key:
        return MODEL_PREFIX + key.upper()
    where = f"[{section}] {key}".strip() if key else f"[{section}]"
    if path is not None:
        return f"{path} {where}"
    env_names = [v for v, target in ENV_VARS.items() if target == (section, key)]
    return env_names[0] if env_names else where


def _to_config_error(
    exc: ValidationError, from_env: Mapping[tuple[str, str], str], env: Mapping[str, str], path: Path | None
) -> ConfigError:
    err = exc.errors(include_url=False)[0]
    loc = tuple(err["loc"])
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    var = from_env.get((str(loc[0]), str(loc[1]) if len(loc) > 1 else ""))
    if var is not None:
        value = env[var]  # what the operator typed, not the value after unit parsing
    shown = repr(value.get_secret_value() if isinstance(value, SecretStr) else value)
    if any(word in str(loc[-1]) for word in ("token", "secret", "password")):
        shown = "(hidden)"  # never echo a secret, even a malformed one
    if kind == "value_error":
        problem = str(ctx.get("error", err["msg"]))
    elif kind == "extra_forbidden":
        return ConfigError(path.as_posix() if path else "config", f"unknown key {_name(loc, {}, None)}")
    elif kind in ("int_parsing", "int_type", "int_from_float"):
        problem = f"{shown} is not an integer"
    elif kind in ("float_parsing", "float_type"):
        problem = f"{shown} is not a number"
    elif kind in ("bool_parsing", "bool_type"):
        problem = f"{shown} is not a boolean (use true or false)"
    elif kind == "string_pattern_mismatch":
        problem = f"{shown} does not match {ctx.get('pattern')}"
    elif kind == "literal_error":
        problem = f"{shown} is not one of {ctx.get('expected')}"
    elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = next(iter(ctx.values()), "?")
        bound = f"{bound:g}" if isinstance(bound, float) else bound
        words = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
        problem = f"{shown} must be {words[kind]} {bound}"
    else:
        problem = f"{shown}: {err['msg']}"
    if len(exc.errors()) > 1:
        problem += f" (and {len(exc.errors()) - 1} more problem(s))"
    return ConfigError(_name(loc, from_env, path), problem.replace("\n", " "))


def _check(settings: Settings, from_env: Mapping[tuple[str, str], str], path: Path | None) -> None:
    """Rules that span fields, checked after each field is valid on its own."""
    tg, api = settings.telegram, settings.api
    if tg.mode == "webhook" and tg.enabled:
        if not tg.webhook_url:
            name = _name(("telegram", "webhook_url"), from_env, path)
            raise ConfigError(name, "required when TELEGRAM_MODE is webhook")
        if not tg.webhook_url.startswith("https://"):
            name = _name(("telegram", "webhook_url"), from_env, path)
            raise ConfigError(name, f"{tg.webhook_url!r} must be https:// (Telegram only calls https)")
    shards = settings.discord.shard_problem()
    if shards is not None:
        raise ConfigError(_name(("discord", shards[0]), from_env, path), shards[1])
    if api.enabled and (api.token is None or not api.token.get_secret_value()):
        raise ConfigError(_name(("api", "token"), from_env, path), "required when the HTTP API is enabled")
    limits = settings.limits
    if limits.access == "allowlist" and not (limits.allowed_users or limits.allowed_chats or limits.admins):
        name = _name(("limits", "access"), from_env, path)
        problem = "allowlist needs COMFYBOT_ALLOWED_USERS, COMFYBOT_ALLOWED_CHATS or COMFYBOT_ADMINS"
        raise ConfigError(name, problem)
    s3 = settings.s3
    if s3.enabled and not (
        s3.access_key_id and s3.secret_access_key and s3.secret_access_key.get_secret_value()
    ):
        missing = "access_key_id" if not s3.access_key_id else "secret_access_key"
        raise ConfigError(_name(("s3", missing), from_env, path), "required when COMFYBOT_S3_BUCKET is set")
