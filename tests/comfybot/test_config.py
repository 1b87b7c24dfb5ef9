"""Settings from the environment and TOML; every bad value is one ConfigError line naming its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ENV_VARS, ConfigError, Rate, RedisSettings, Settings, load_settings

FULL_ENV = {
    "TELEGRAM_BOT_TOKEN": "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
    "TELEGRAM_API_BASE": "http://127.0.0.1:8081/",
    "TELEGRAM_MODE": "webhook",
    "TELEGRAM_WEBHOOK_URL": "https://bot.example.org/tg",
    "TELEGRAM_WEBHOOK_SECRET": "whsecret-123",
    "TELEGRAM_WEBHOOK_HOST": "0.0.0.0",
    "TELEGRAM_WEBHOOK_PORT": "9000",
    "TELEGRAM_PREVIEWS": "off",
    "TELEGRAM_GROUP_PER_MINUTE": "12",
    "TELEGRAM_GROUP_NOTICES": "auto",
    "DISCORD_BOT_TOKEN": "discord-token-xyz",
    "DISCORD_API_BASE": "http://nirn-proxy:8080/",
    "DISCORD_GATEWAY_URL": "ws://gateway-proxy:7878",
    "DISCORD_SHARD_COUNT": "4",
    "DISCORD_SHARD_IDS": "2, 3",
    "COMFYUI_URLS": "http://gpu-a:8188/, https://gpu-b.example.org",
    "COMFYUI_CAPACITY": "3",
    "COMFYUI_WS_STALL_TIMEOUT": "45s",
    "COMFYUI_REQUEST_TIMEOUT": "1m",
    "COMFYUI_PREVIEW_METHOD": "latent2rgb",
    "COMFYBOT_SHUTDOWN_GRACE_S": "45s",
    "COMFYBOT_REPLICA_ID": "front-1",
    "COMFYBOT_REPLICA_LEASE_S": "20s",
    "COMFYBOT_AFFINITY_WAIT_S": "1.5s",
    "REDIS_URL": "redis://worker:s3cr%40t@redis.local:6380/2",
    "COMFYBOT_WORKFLOWS_DIR": "/srv/wf",
    "COMFYBOT_DATA_DIR": "/srv/data",
    "COMFYBOT_STORE": "memory",
    "LOG_DIR": "/var/log/comfybot",
    "LOG_LEVEL": "debug",
    "LOG_MAX_BYTES": "1MB",
    "LOG_BACKUPS": "7",
    "COMFYBOT_MAX_PENDING_PER_USER": "5",
    "COMFYBOT_RATE_PER_USER": "20/min",
    "COMFYBOT_QUEUE_CAP": "50",
    "COMFYBOT_QUEUE_TIMEOUT": "90s",
    "COMFYBOT_QUEUE_ORDER": "fifo",
    "COMFYBOT_ADMIN_QUEUE_WEIGHT": "3",
    "COMFYBOT_MAX_PROMPT_LENGTH": "1000",
    "COMFYBOT_MAX_IMAGE_BYTES": "10MB",
    "COMFYBOT_MAX_IMAGE_PIXELS": "16000000",
    "COMFYBOT_MAX_INPUT_SIDE": "1536",
    "COMFYBOT_BLOCKLIST": "foo, bar baz",
    "COMFYBOT_BLOCKLIST_REGEX": '["\\\\bnsfw\\\\b", "a{1,3}b"]',
    "COMFYBOT_ACCESS": "allowlist",
    "COMFYBOT_ALLOWED_USERS": "1,2",
    "COMFYBOT_ALLOWED_CHATS": "-100123",
    "COMFYBOT_REMIX_CHATS": "-100456",
    "COMFYBOT_ADMINS": "123,456",
    "COMFYBOT_BANNED": "666",
    "COMFYBOT_RETENTION_INPUTS": "12h",
    "COMFYBOT_RETENTION_OUTPUTS": "7d",
    "COMFYBOT_RETENTION_SHARED": "2d",
    "COMFYBOT_S3_URL": "http://minio.local:9000/",
    "COMFYBOT_S3_BUCKET": "comfy-media",
    "COMFYBOT_S3_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "COMFYBOT_S3_SECRET_ACCESS_KEY": "s3-secret-key",
    "COMFYBOT_S3_SESSION_TOKEN": "s3-session-token",
    "COMFYBOT_S3_REGION": "eu-central-1",
    "COMFYBOT_S3_PREFIX": "bots/comfy/",
    "COMFYBOT_API_ENABLED": "true",
    "COMFYBOT_API_BIND": "127.0.0.2",
    "COMFYBOT_API_PORT": "9999",
    "COMFYBOT_API_TOKEN": "api-token-123",
    "COMFYBOT_WEBHOOK_SECRET": "hook-secret-123",
    "COMFYBOT_METRICS_PORT": "9108",
    "COMFYBOT_QUOTA_HOURLY": "5",
    "COMFYBOT_QUOTA_DAILY": "20",
    "COMFYBOT_ADMIN_QUOTA_HOURLY": "50",
    "COMFYBOT_ADMIN_QUOTA_DAILY": "200",
    "COMFYBOT_METRICS_BIND": "0.0.0.0",
    "COMFYBOT_MODEL_CHECKPOINT": "dreamshaper.safetensors",
    "COMFYBOT_MODEL_UPSCALE": "4x.pth",
}


def test_defaults_from_empty_env() -> None:
    s = load_settings({})
    assert s.telegram.bot_token is None and not s.telegram.enabled
    assert s.telegram.api_base == "https://api.telegram.org"
    assert (s.discord.api_base, s.discord.gateway_url) == ("https://discord.com", "wss://gateway.discord.gg")
    assert s.telegram.mode == "polling" and s.telegram.previews
    assert s.discord.bot_token is None
    assert s.comfy.urls == () and s.comfy.capacity == 2
    assert s.redis is None
    assert s.paths.data_dir == Path("data") and s.paths.log_dir == Path("logs")
    assert s.paths.workflows_dir is None
    assert (s.logging.level, s.logging.max_bytes, s.logging.backups) == ("INFO", 5 * 1024 * 1024, 3)
    lim = s.limits
    assert (lim.max_pending_per_user, lim.queue_cap, lim.max_prompt_length) == (3, 100, 2000)
    assert lim.queue_timeout_s == 600
    assert (lim.queue_order, lim.admin_queue_weight) == ("fair", 2)
    assert lim.rate_per_user == Rate(count=10, per_s=60)
    assert (lim.max_image_bytes, lim.max_image_pixels, lim.max_input_side) == (20 * 2**20, 40_000_000, 2048)
    assert lim.access == "open" and lim.admins == frozenset()
    assert (s.retention.inputs_s, s.retention.outputs_s) == (86400, 30 * 86400)
    assert (s.api.enabled, s.api.bind, s.api.token) == (False, "127.0.0.1", None)
    assert s.models == {} and s.config_file is None
    assert not s.s3.enabled and s.s3.endpoint == "https://s3.us-east-1.amazonaws.com"
    assert s.secrets() == []


def test_every_variable_from_env() -> None:
    s = load_settings(FULL_ENV)
    tg = s.telegram
    assert tg.bot_token is not None and tg.bot_token.get_secret_value() == FULL_ENV["TELEGRAM_BOT_TOKEN"]
    assert tg.api_base == "http://127.0.0.1:8081"
    assert (tg.mode, tg.webhook_url, tg.webhook_host, tg.webhook_port) == (
        "webhook",
        "https://bot.example.org/tg",
        "0.0.0.0",
        9000,
    )
    assert tg.webhook_secret is not None and tg.webhook_secret.get_secret_value() == "whsecret-123"
    assert tg.previews is False
    assert tg.group_per_minute == 12 and tg.group_notices == "auto"
    assert s.discord.bot_token is not None and s.discord.bot_token.get_secret_value() == "discord-token-xyz"
    assert (s.discord.api_base, s.discord.gateway_url) == (
        "http://nirn-proxy:8080",
        "ws://gateway-proxy:7878",
    )
    assert (s.discord.shard_count, s.discord.shard_ids) == (4, (2, 3))
    assert s.comfy.urls == ("http://gpu-a:8188", "https://gpu-b.example.org")
    assert (s.comfy.capacity, s.comfy.ws_stall_timeout_s, s.comfy.request_timeout_s) == (3, 45.0, 60.0)
    assert s.comfy.preview_method == "latent2rgb"
    assert s.comfy.shutdown_grace_s == 45.0
    assert (s.comfy.replica_id, s.comfy.replica_lease_s) == ("front-1", 20.0)
    assert s.comfy.affinity_wait_s == 1.5
    assert s.redis is not None
    r = s.redis
    assert (r.host, r.port, r.database, r.username) == ("redis.local", 6380, 2, "worker")
    assert s.redis.password is not None and s.redis.password.get_secret_value() == "s3cr@t"
    assert s.paths.workflows_dir == Path("/srv/wf") and s.paths.data_dir == Path("/srv/data")
    assert s.paths.store == "memory"
    assert s.paths.log_dir == Path("/var/log/comfybot")
    assert (s.logging.level, s.logging.max_bytes, s.logging.backups) == ("DEBUG", 2**20, 7)
    lim = s.limits
    assert (lim.max_pending_per_user, lim.queue_cap, lim.max_prompt_length) == (5, 50, 1000)
    assert lim.queue_timeout_s == 90
    assert (lim.queue_order, lim.admin_queue_weight) == ("fifo", 3)
    assert lim.rate_per_user == Rate(count=20, per_s=60)
    assert (lim.max_image_bytes, lim.max_image_pixels, lim.max_input_side) == (10 * 2**20, 16_000_000, 1536)
    assert lim.blocklist_words == ("foo", "bar baz")
    assert lim.blocklist_patterns == (r"\bnsfw\b", "a{1,3}b")
    assert lim.access == "allowlist"
    assert lim.allowed_users == {"1", "2"} and lim.allowed_chats == {"-100123"}
    assert lim.remix_chats == {"-100456"}
    assert lim.admins == {"123", "456"} and lim.banned == {"666"}
    assert (s.retention.inputs_s, s.retention.outputs_s) == (12 * 3600, 7 * 86400)
    assert (s.api.enabled, s.api.bind, s.api.port) == (True, "127.0.0.2", 9999)
    assert s.api.token is not None and s.api.token.get_secret_value() == "api-token-123"
    assert s.api.webhook_secret_value == "hook-secret-123"
    assert s.api.metrics_port == 9108 and s.api.metrics_bind == "0.0.0.0"
    lim = s.limits
    assert (lim.quota_hourly, lim.quota_daily, lim.admin_quota_hourly, lim.admin_quota_daily) == (
        5,
        20,
        50,
        200,
    )
    assert s.models == {"checkpoint": "dreamshaper.safetensors", "upscale": "4x.pth"}
    s3 = s.s3
    assert (s3.enabled, s3.endpoint, s3.bucket, s3.region, s3.prefix) == (
        True,
        "http://minio.local:9000",
        "comfy-media",
        "eu-central-1",
        "bots/comfy/",
    )
    assert s3.access_key_id == "AKIDEXAMPLE"
    assert set(s.secrets()) == {
        "s3-secret-key",
        "s3-session-token",
        FULL_ENV["TELEGRAM_BOT_TOKEN"],
        "whsecret-123",
        "discord-token-xyz",
        "api-token-123",
        "hook-secret-123",
        "s3cr@t",
    }


def test_discord_shards_default_to_the_recommended_count() -> None:
    discord = load_settings({}).discord
    assert (discord.shard_count, discord.shard_ids) == (None, None)
    discord = load_settings({"DISCORD_SHARD_COUNT": "2", "DISCORD_SHARD_IDS": "[1]"}).discord
    assert (discord.shard_count, discord.shard_ids) == (2, (1,))
    assert load_settings({"DISCORD_SHARD_COUNT": "3"}).discord.shard_ids is None  # all three


def test_every_documented_variable_is_in_the_table() -> None:
    documented = {
        "TELEGRAM_BOT_TOKEN",
        "TELEGRAM_API_BASE",
        "DISCORD_BOT_TOKEN",
        "COMFYUI_URLS",
        "REDIS_URL",
        "COMFYBOT_WORKFLOWS_DIR",
        "COMFYBOT_DATA_DIR",
        "LOG_DIR",
        "LOG_LEVEL",
    }
    assert documented <= set(ENV_VARS)
    assert set(ENV_VARS) <= set(FULL_ENV), "FULL_ENV must exercise every variable"


def test_s3_reads_the_aws_names_when_ours_are_unset() -> None:
    aws = {
        "AWS_ACCESS_KEY_ID": "AKIA-from-aws",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
        "AWS_SESSION_TOKEN": "aws-token",
        "AWS_DEFAULT_REGION": "ap-south-1",
    }
    s3 = load_settings({"COMFYBOT_S3_BUCKET": "media"} | aws).s3
    assert s3.access_key_id == "AKIA-from-aws" and s3.region == "ap-south-1"
    assert s3.secret_access_key is not None and s3.secret_access_key.get_secret_value() == "aws-secret"
    assert s3.session_token is not None and s3.session_token.get_secret_value() == "aws-token"
    assert s3.endpoint == "https://s3.ap-south-1.amazonaws.com"
    ours = load_settings({"COMFYBOT_S3_BUCKET": "media", "COMFYBOT_S3_ACCESS_KEY_ID": "ours"} | aws).s3
    assert ours.access_key_id == "ours"  # our name wins
    with pytest.raises(ConfigError) as info:  # the error names the variable that was actually read
        load_settings({"COMFYBOT_S3_BUCKET": "media", "AWS_REGION": "Mars 1"} | aws)
    assert str(info.value).startswith("AWS_REGION: 'Mars 1' does not match")
    # Without a bucket the AWS names are not ours to read: an odd AWS_REGION on the host stops nothing.
    assert load_settings({"AWS_REGION": "Mars 1"} | aws).s3.access_key_id is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"COMFYBOT_S3_BUCKET": "media"},
            "COMFYBOT_S3_ACCESS_KEY_ID: required when COMFYBOT_S3_BUCKET is set",
        ),
        (
            {"COMFYBOT_S3_BUCKET": "media", "AWS_ACCESS_KEY_ID": "a"},
            "COMFYBOT_S3_SECRET_ACCESS_KEY: required when COMFYBOT_S3_BUCKET is set",
        ),
    ],
)
def test_a_bucket_needs_a_key_pair(env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert str(info.value) == expected


def test_secrets_are_hidden_in_repr() -> None:
    s = load_settings(FULL_ENV)
    text = repr(s) + str(s)
    for secret in s.secrets():
        assert secret not in text
    assert "redis://worker:***@redis.local:6380/2" in text


def test_empty_values_count_as_unset() -> None:
    s = load_settings({"TELEGRAM_BOT_TOKEN": "", "REDIS_URL": "  ", "COMFYUI_CAPACITY": ""})
    assert s.telegram.bot_token is None and s.redis is None and s.comfy.capacity == 2


def test_settings_constructor_never_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "1:x")
    assert Settings().logging.level == "INFO"
    assert Settings().telegram.bot_token is None


def test_os_environ_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "warning")
    assert load_settings().logging.level == "WARNING"


TOML = """
[telegram]
bot_token = "111111:toml-token"
previews = false

[comfy]
urls = ["http://toml-a:8188", "http://toml-b:8188"]
capacity = 4

[redis]
url = "redis://:pw-toml@toml-redis:6379/1"

[logging]
level = "WARNING"
backups = 9

[limits]
admins = [1, 2]
rate_per_user = "3/10s"
blocklist_patterns = ["x{2,}"]

[retention]
inputs_s = 60

[models]
checkpoint = "toml.safetensors"
"""


def test_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "comfybot.toml"
    path.write_text(TOML)
    s = load_settings({}, path)
    assert s.config_file == path
    assert s.telegram.bot_token is not None and s.telegram.bot_token.get_secret_value() == "111111:toml-token"
    assert s.telegram.previews is False
    assert s.comfy.urls == ("http://toml-a:8188", "http://toml-b:8188") and s.comfy.capacity == 4
    assert s.redis is not None and s.redis.host == "toml-redis" and s.redis.database == 1
    assert (s.logging.level, s.logging.backups) == ("WARNING", 9)
    assert s.limits.admins == {"1", "2"} and s.limits.rate_per_user == Rate(count=3, per_s=10)
    assert s.limits.blocklist_patterns == ("x{2,}",)
    assert s.retention.inputs_s == 60
    assert s.models == {"checkpoint": "toml.safetensors"}


def test_env_wins_over_toml(tmp_path: Path) -> None:
    path = tmp_path / "comfybot.toml"
    path.write_text(TOML)
    env = {
        "COMFYBOT_CONFIG": str(path),
        "COMFYUI_URLS": "http://env:1",
        "LOG_LEVEL": "ERROR",
        "REDIS_URL": "redis://env-redis",
        "COMFYBOT_MODEL_CHECKPOINT": "env.safetensors",
    }
    s = load_settings(env)
    assert s.config_file == path
    assert s.comfy.urls == ("http://env:1",)
    assert s.comfy.capacity == 4  # from the file, untouched by env
    assert s.logging.level == "ERROR" and s.logging.backups == 9
    assert s.redis is not None and s.redis.host == "env-redis" and s.redis.password is None
    assert s.models == {"checkpoint": "env.safetensors"}


def test_explicit_config_file_beats_env_path(tmp_path: Path) -> None:
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text("[comfy]\ncapacity = 5\n")
    b.write_text("[comfy]\ncapacity = 6\n")
    assert load_settings({"COMFYBOT_CONFIG": str(a)}, b).comfy.capacity == 6


_SECRET_RULE = "must be 1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)"
BAD_ENV = [
    ("COMFYUI_URLS", "ftp://x", "COMFYUI_URLS: 'ftp://x' is not an http(s) URL"),
    ("COMFYUI_URLS", "http://a:1,gpu-b", "COMFYUI_URLS: 'gpu-b' is not an http(s) URL"),
    ("COMFYUI_URLS", "http://a:99999", "COMFYUI_URLS: 'http://a:99999' has an invalid port"),
    ("COMFYUI_CAPACITY", "two", "COMFYUI_CAPACITY: 'two' is not an integer"),
    ("COMFYUI_CAPACITY", "0", "COMFYUI_CAPACITY: '0' must be >= 1"),
    ("COMFYUI_WS_STALL_TIMEOUT", "soon", "COMFYUI_WS_STALL_TIMEOUT: 'soon' is not a duration"),
    ("COMFYUI_REQUEST_TIMEOUT", "0", "COMFYUI_REQUEST_TIMEOUT: '0' must be > 0"),
    ("COMFYUI_PREVIEW_METHOD", "fancy", "COMFYUI_PREVIEW_METHOD: "),
    ("COMFYBOT_SHUTDOWN_GRACE_S", "-1", "COMFYBOT_SHUTDOWN_GRACE_S: '-1' is not a duration"),
    ("COMFYBOT_REPLICA_ID", "two words", "COMFYBOT_REPLICA_ID: 'two words' does not match"),
    ("COMFYBOT_REPLICA_LEASE_S", "0.5", "COMFYBOT_REPLICA_LEASE_S: '0.5' must be >= 1"),
    ("COMFYBOT_AFFINITY_WAIT_S", "-1", "COMFYBOT_AFFINITY_WAIT_S: '-1' is not a duration"),
    ("TELEGRAM_API_BASE", "api.telegram.org", "TELEGRAM_API_BASE: 'api.telegram.org' is not an http(s) URL"),
    ("DISCORD_API_BASE", "discord.com", "DISCORD_API_BASE: 'discord.com' is not an http(s) URL"),
    ("DISCORD_GATEWAY_URL", "https://gw", "DISCORD_GATEWAY_URL: 'https://gw' is not a ws/wss URL"),
    ("DISCORD_SHARD_COUNT", "0", "DISCORD_SHARD_COUNT: '0' must be >= 1"),
    ("DISCORD_SHARD_IDS", "0,x", "DISCORD_SHARD_IDS: 'x' is not a shard id (a number from 0)"),
    ("DISCORD_SHARD_IDS", "-1", "DISCORD_SHARD_IDS: '-1' is not a shard id"),
    ("DISCORD_SHARD_IDS", "1,1", "DISCORD_SHARD_IDS: '1,1' names a shard twice"),
    ("TELEGRAM_MODE", "push", "TELEGRAM_MODE: 'push' is not one of 'polling' or 'webhook'"),
    ("COMFYBOT_STORE", "postgres", "COMFYBOT_STORE: 'postgres' is not one of 'sqlite' or 'memory'"),
    ("TELEGRAM_WEBHOOK_URL", "ftp://x", "TELEGRAM_WEBHOOK_URL: 'ftp://x' is not an http(s) URL"),
    ("TELEGRAM_WEBHOOK_PORT", "70000", "TELEGRAM_WEBHOOK_PORT: '70000' must be <= 65535"),
    ("TELEGRAM_WEBHOOK_SECRET", "my secret!", f"TELEGRAM_WEBHOOK_SECRET: {_SECRET_RULE}"),
    ("TELEGRAM_WEBHOOK_SECRET", "s" * 257, f"TELEGRAM_WEBHOOK_SECRET: {_SECRET_RULE}"),
    ("TELEGRAM_PREVIEWS", "maybe", "TELEGRAM_PREVIEWS: 'maybe' is not a boolean"),
    ("TELEGRAM_GROUP_PER_MINUTE", "0", "TELEGRAM_GROUP_PER_MINUTE: '0' must be >= 1"),
    ("TELEGRAM_GROUP_NOTICES", "never", "TELEGRAM_GROUP_NOTICES: 'never' is not one of 'auto' or 'always'"),
    ("REDIS_URL", "http://user:hunter22@x", "REDIS_URL: 'http://user:***@x' is not a redis://"),
    ("REDIS_URL", "redis://h/abc", "REDIS_URL: 'redis://h/abc': database 'abc' is not a number"),
    ("REDIS_URL", "redis://:pw@", "REDIS_URL: 'redis://:***@' has no host"),
    ("LOG_LEVEL", "LOUD", "LOG_LEVEL: 'LOUD' is not one of 'DEBUG', 'INFO', 'WARNING', 'ERROR' or"),
    ("LOG_MAX_BYTES", "lots", "LOG_MAX_BYTES: 'lots' is not a size in bytes"),
    ("LOG_MAX_BYTES", "10", "LOG_MAX_BYTES: '10' must be >= 1024"),
    ("LOG_BACKUPS", "-1", "LOG_BACKUPS: '-1' must be >= 0"),
    ("COMFYBOT_MAX_PENDING_PER_USER", "x", "COMFYBOT_MAX_PENDING_PER_USER: 'x' is not an integer"),
    ("COMFYBOT_RATE_PER_USER", "fast", "COMFYBOT_RATE_PER_USER: 'fast' is not a rate"),
    ("COMFYBOT_RATE_PER_USER", "10/fortnight", "COMFYBOT_RATE_PER_USER: '10/fortnight' is not a rate"),
    ("COMFYBOT_QUEUE_CAP", "0", "COMFYBOT_QUEUE_CAP: '0' must be >= 1"),
    ("COMFYBOT_QUEUE_TIMEOUT", "0", "COMFYBOT_QUEUE_TIMEOUT: '0' must be > 0"),
    ("COMFYBOT_QUEUE_TIMEOUT", "soon", "COMFYBOT_QUEUE_TIMEOUT: 'soon' is not a duration"),
    ("COMFYBOT_QUEUE_ORDER", "lifo", "COMFYBOT_QUEUE_ORDER: 'lifo' is not one of 'fair' or 'fifo'"),
    ("COMFYBOT_ADMIN_QUEUE_WEIGHT", "0", "COMFYBOT_ADMIN_QUEUE_WEIGHT: '0' must be >= 1"),
    ("COMFYBOT_MAX_PROMPT_LENGTH", "1.5", "COMFYBOT_MAX_PROMPT_LENGTH: '1.5' is not an integer"),
    ("COMFYBOT_MAX_IMAGE_BYTES", "big", "COMFYBOT_MAX_IMAGE_BYTES: 'big' is not a size in bytes"),
    ("COMFYBOT_MAX_IMAGE_PIXELS", "-5", "COMFYBOT_MAX_IMAGE_PIXELS: '-5' must be >= 1"),
    ("COMFYBOT_MAX_INPUT_SIDE", "8", "COMFYBOT_MAX_INPUT_SIDE: '8' must be >= 16"),
    ("COMFYBOT_BLOCKLIST", "[not json", "COMFYBOT_BLOCKLIST: '[not json' is not a valid JSON array"),
    ("COMFYBOT_BLOCKLIST_REGEX", "(a", "COMFYBOT_BLOCKLIST_REGEX: '(a' is not a valid regex"),
    ("COMFYBOT_ACCESS", "closed", "COMFYBOT_ACCESS: 'closed' is not one of 'open' or 'allowlist'"),
    ("COMFYBOT_ALLOWED_USERS", "alice", "COMFYBOT_ALLOWED_USERS: 'alice' is not a numeric user or chat id"),
    ("COMFYBOT_ALLOWED_CHATS", "1,x", "COMFYBOT_ALLOWED_CHATS: 'x' is not a numeric user or chat id"),
    ("COMFYBOT_REMIX_CHATS", "y", "COMFYBOT_REMIX_CHATS: 'y' is not a numeric user or chat id"),
    ("COMFYBOT_ADMINS", "123,@bob", "COMFYBOT_ADMINS: '@bob' is not a numeric user or chat id"),
    ("COMFYBOT_BANNED", "1;2", "COMFYBOT_BANNED: '1;2' is not a numeric user or chat id"),
    ("COMFYBOT_RETENTION_INPUTS", "forever", "COMFYBOT_RETENTION_INPUTS: 'forever' is not a duration"),
    ("COMFYBOT_RETENTION_OUTPUTS", "0d", "COMFYBOT_RETENTION_OUTPUTS: '0d' must be > 0"),
    ("COMFYBOT_RETENTION_SHARED", "soon", "COMFYBOT_RETENTION_SHARED: 'soon' is not a duration"),
    ("COMFYBOT_S3_URL", "minio:9000", "COMFYBOT_S3_URL: 'minio:9000' is not an http(s) URL"),
    ("COMFYBOT_S3_BUCKET", "My_Bucket", "COMFYBOT_S3_BUCKET: 'My_Bucket' does not match"),
    ("COMFYBOT_S3_REGION", "EU West", "COMFYBOT_S3_REGION: 'EU West' does not match"),
    ("COMFYBOT_S3_PREFIX", "/abs", "COMFYBOT_S3_PREFIX: '/abs' does not match"),
    ("COMFYBOT_API_ENABLED", "sure", "COMFYBOT_API_ENABLED: 'sure' is not a boolean"),
    ("COMFYBOT_API_PORT", "http", "COMFYBOT_API_PORT: 'http' is not an integer"),
    ("COMFYBOT_METRICS_PORT", "metrics", "COMFYBOT_METRICS_PORT: 'metrics' is not an integer"),
    ("COMFYBOT_QUOTA_HOURLY", "lots", "COMFYBOT_QUOTA_HOURLY: 'lots' is not an integer"),
    ("COMFYBOT_QUOTA_DAILY", "x", "COMFYBOT_QUOTA_DAILY: 'x' is not an integer"),
    ("COMFYBOT_ADMIN_QUOTA_HOURLY", "y", "COMFYBOT_ADMIN_QUOTA_HOURLY: 'y' is not an integer"),
    ("COMFYBOT_ADMIN_QUOTA_DAILY", "z", "COMFYBOT_ADMIN_QUOTA_DAILY: 'z' is not an integer"),
]


@pytest.mark.parametrize(("var", "value", "expected"), BAD_ENV, ids=[f"{v}={x}" for v, x, _ in BAD_ENV])
def test_bad_env_value_is_one_line_naming_the_variable(var: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({var: value})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{var}: ")
    assert message.startswith(expected), message
    assert info.value.variable == var
    assert "validation error" not in message and "pydantic" not in message
    assert "hunter22" not in message and "pw@" not in message
    assert "my secret!" not in message and "s" * 257 not in message  # a secret is never echoed


def test_every_variable_has_a_bad_value_case() -> None:
    tested = {var for var, _, _ in BAD_ENV}
    skip = {  # free-form strings and paths: any value is acceptable
        "TELEGRAM_BOT_TOKEN",
        "TELEGRAM_WEBHOOK_HOST",
        "DISCORD_BOT_TOKEN",
        "COMFYBOT_WORKFLOWS_DIR",
        "COMFYBOT_DATA_DIR",
        "LOG_DIR",
        "COMFYBOT_API_BIND",
        "COMFYBOT_METRICS_BIND",
        "COMFYBOT_API_TOKEN",
        "COMFYBOT_WEBHOOK_SECRET",
        "COMFYBOT_S3_ACCESS_KEY_ID",
        "COMFYBOT_S3_SECRET_ACCESS_KEY",
        "COMFYBOT_S3_SESSION_TOKEN",
    }
    assert set(ENV_VARS) - skip <= tested, set(ENV_VARS) - skip - tested


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"TELEGRAM_BOT_TOKEN": "1:a", "TELEGRAM_MODE": "webhook"},
            "TELEGRAM_WEBHOOK_URL: required when TELEGRAM_MODE is webhook",
        ),
        (
            {"TELEGRAM_BOT_TOKEN": "1:a", "TELEGRAM_MODE": "webhook", "TELEGRAM_WEBHOOK_URL": "http://x/y"},
            "TELEGRAM_WEBHOOK_URL: 'http://x/y' must be https://",
        ),
        ({"COMFYBOT_API_ENABLED": "1"}, "COMFYBOT_API_TOKEN: required when the HTTP API is enabled"),
        ({"COMFYBOT_ACCESS": "allowlist"}, "COMFYBOT_ACCESS: allowlist needs COMFYBOT_ALLOWED_USERS"),
        ({"DISCORD_SHARD_IDS": "0"}, "DISCORD_SHARD_COUNT: required when DISCORD_SHARD_IDS is set"),
        (
            {"DISCORD_SHARD_COUNT": "2", "DISCORD_SHARD_IDS": "0,2"},
            "DISCORD_SHARD_IDS: shard 2 does not exist with 2 shard(s)",
        ),
    ],
)
def test_cross_field_rules(env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)


def test_bad_toml_value_names_file_section_and_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[comfy]\ncapacity = "many"\n')
    with pytest.raises(ConfigError) as info:
        load_settings({}, path)
    assert str(info.value) == f"{path} [comfy] capacity: 'many' is not an integer"


def test_bad_toml_value_overridden_by_env_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[comfy]\ncapacity = "many"\n')
    assert load_settings({"COMFYUI_CAPACITY": "2"}, path).comfy.capacity == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[comfy\n", "invalid TOML"),
        ("[nope]\nx = 1\n", "unknown section [nope]"),
        ("[comfy]\nurl = 'http://x'\n", "unknown key [comfy] url"),
        ("comfy = 3\n", "[comfy] must be a table"),
    ],
)
def test_bad_toml_file(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings({}, path)
    assert str(info.value).startswith(str(path)) and expected in str(info.value)
    assert "\n" not in str(info.value)


def test_malformed_secret_is_not_echoed(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[telegram]\nbot_token = 1234567\n")
    with pytest.raises(ConfigError) as info:
        load_settings({}, path)
    assert str(info.value).startswith(f"{path} [telegram] bot_token: (hidden)")
    assert "1234567" not in str(info.value)


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match=r"^COMFYBOT_CONFIG: cannot read '/nonexistent/x.toml'"):
        load_settings({"COMFYBOT_CONFIG": "/nonexistent/x.toml"})


@pytest.mark.parametrize(
    ("url", "fields", "redacted"),
    [
        ("redis://localhost", ("redis", "localhost", 6379, 0, None, None), "redis://localhost:6379/0"),
        ("redis://:pw@h:1/3", ("redis", "h", 1, 3, None, "pw"), "redis://:***@h:1/3"),
        ("rediss://u:p%2Fw@h/2", ("rediss", "h", 6379, 2, "u", "p/w"), "rediss://u:***@h:6379/2"),
        (
            "unix:///run/redis.sock?db=4",
            ("unix", "localhost", 6379, 4, None, None),
            "unix:///run/redis.sock?db=4",
        ),
    ],
)
def test_redis_from_url(url: str, fields: tuple[object, ...], redacted: str) -> None:
    r = RedisSettings.from_url(url)
    password = r.password.get_secret_value() if r.password else None
    assert (r.scheme, r.host, r.port, r.database, r.username, password) == fields
    assert r.redacted_url == redacted
    assert "pw" not in repr(r) and "p/w" not in str(r)
    assert RedisSettings.from_url(r.url()) == r  # round trip keeps the secret
    assert r.ssl == (r.scheme == "rediss")
