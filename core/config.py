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
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from core._values import Rate
from core.redis_settings import RedisSettings
from core.settings_models import (
    ApiSettings,
    ComfySettings,
    DiscordSettings,
    LimitSettings,
    LoggingSettings,
    PathSettings,
    RetentionSettings,
    S3Settings,
    TelegramSettings,
)

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
