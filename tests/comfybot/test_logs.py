"""JSON-lines logging: required keys, contextvars, stdlib loggers, rotation, redaction, DESIGN jq recipes."""

from __future__ import annotations

import io
import logging
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog

from core.config import load_settings
from core.logs import (
    bind_request,
    bound,
    clear_request,
    configure_logging,
    get_logger,
    redact,
    register_secret,
)

TOKEN = "123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawXYZ"
REQUIRED = {"timestamp", "level", "event", "component"}
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$")


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "logs"


def test_json_lines_with_required_keys_to_file_and_stdout(
    log_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("gateway", log_dir, "INFO", 1_000_000, 3)
    log = get_logger()
    log.info("job_enqueued", job_id="j1", position=2)
    log.warning("rate_limited", user_id="42")
    get_logger("comfy").info("comfyui_prompt_sent", prompt_id="p1")
    log.debug("not_shown")

    records = lines(log_dir / "gateway.log")
    assert [r["event"] for r in records] == ["job_enqueued", "rate_limited", "comfyui_prompt_sent"]
    for r in records:
        assert set(r) >= REQUIRED, r
        assert ISO_UTC.match(r["timestamp"]), r["timestamp"]
    assert [r["level"] for r in records] == ["info", "warning", "info"]
    assert [r["component"] for r in records] == ["gateway", "gateway", "comfy"]
    assert records[0]["job_id"] == "j1" and records[0]["position"] == 2

    out = capsys.readouterr().out.splitlines()
    assert [orjson.loads(line) for line in out] == records


def test_component_override_by_bind(log_dir: Path) -> None:
    configure_logging("bot", log_dir, stdout=False)
    get_logger().bind(component="telegram").info("command_received")
    with bound(component="worker"):
        get_logger().info("job_dequeued")
    records = lines(log_dir / "bot.log")
    assert [r["component"] for r in records] == ["telegram", "worker"]


def test_contextvars_appear_on_every_line_including_stdlib(log_dir: Path) -> None:
    configure_logging("gateway", log_dir, stdout=False)
    bind_request("0123456789abcdef", platform="telegram", user_id="7")
    log = get_logger()
    log.info("request_received")
    with bound(job_id="job-1", backend="gpu-a"):
        log.info("job_dequeued")
        with bound(prompt_id="p-1"):
            log.info("comfyui_prompt_sent")
            logging.getLogger("aiohttp.client").warning("slow response")
    log.info("response_sent")
    clear_request()
    log.info("idle")

    records = lines(log_dir / "gateway.log")
    assert all(r["request_id"] == "0123456789abcdef" for r in records[:-1])
    assert all(r["platform"] == "telegram" and r["user_id"] == "7" for r in records[:-1])
    by_event = {r["event"]: r for r in records}
    assert by_event["comfyui_prompt_sent"]["prompt_id"] == "p-1"
    assert by_event["comfyui_prompt_sent"]["backend"] == "gpu-a"
    assert by_event["slow response"]["prompt_id"] == "p-1"
    assert by_event["slow response"]["job_id"] == "job-1"
    assert "job_id" not in by_event["response_sent"]
    assert "request_id" not in by_event["idle"]


def test_stdlib_loggers_are_json(log_dir: Path) -> None:
    configure_logging("gateway", log_dir, stdout=False)
    logging.getLogger("aiohttp.access").info('127.0.0.1 "GET /health HTTP/1.1" 200 %d', 12)
    logging.getLogger("aiogram.dispatcher").warning("Failed to fetch updates")
    logging.getLogger("discord.gateway").error("Shard disconnected")
    logging.getLogger("asyncio").debug("filtered at INFO")
    records = lines(log_dir / "gateway.log")
    assert [(r["component"], r["level"], r["logger"]) for r in records] == [
        ("aiohttp", "info", "aiohttp.access"),
        ("aiogram", "warning", "aiogram.dispatcher"),
        ("discord", "error", "discord.gateway"),
    ]
    assert records[0]["event"] == '127.0.0.1 "GET /health HTTP/1.1" 200 12'
    for r in records:
        assert set(r) >= REQUIRED and ISO_UTC.match(r["timestamp"])


def test_exceptions_are_a_string_field(log_dir: Path) -> None:
    configure_logging("gateway", log_dir, stdout=False)
    try:
        empty: dict[str, int] = {}
        empty["missing"]  # noqa: B018  # the point is the KeyError
    except KeyError:
        get_logger().exception("job_failed", job_id="j")
        logging.getLogger("aiohttp.server").exception("Error handling request")
    records = lines(log_dir / "gateway.log")
    for r in records:
        assert isinstance(r["exception"], str) and "KeyError: 'missing'" in r["exception"]
        assert r["level"] == "error"


def test_non_json_values_are_rendered_safely(log_dir: Path) -> None:
    configure_logging("gateway", log_dir, stdout=False)

    class Odd:
        def __str__(self) -> str:
            return f"odd https://api.telegram.org/file/bot{TOKEN}/photos/file_1.jpg"

    get_logger().info("weird", obj=Odd(), raw=b"\xff", nested={"path": Path("/x"), "items": {1, 2}})
    (r,) = lines(log_dir / "gateway.log")
    assert r["obj"] == "odd https://api.telegram.org/file/bot***/photos/file_1.jpg"
    assert r["nested"]["path"] == "/x"


def test_rotation_at_max_bytes(log_dir: Path) -> None:
    configure_logging("gateway", log_dir, "INFO", max_bytes=2048, backups=2, stdout=False)
    log = get_logger()
    for i in range(200):
        log.info("progress", i=i, pad="x" * 50)
    files = sorted(p.name for p in log_dir.iterdir())
    assert files == ["gateway.log", "gateway.log.1", "gateway.log.2"]
    for name in files:
        size = (log_dir / name).stat().st_size
        assert 0 < size <= 2048
        assert all(set(r) >= REQUIRED for r in lines(log_dir / name))
    assert lines(log_dir / "gateway.log")[-1]["i"] == 199


def test_bot_token_in_exception_never_reaches_file_or_stdout(
    log_dir: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    short = "123456:AAH...xyz"
    configure_logging("bot", log_dir, "DEBUG", 1_000_000, 1)
    register_secret(TOKEN)
    log = get_logger()
    try:
        raise RuntimeError(f"failed https://api.telegram.org/bot{short}/getMe and bot{TOKEN}")
    except RuntimeError as exc:
        log.error("telegram_error", exc_info=True, url=f"https://api.telegram.org/bot{short}/sendPhoto")
        log.exception("telegram_error_again", detail=str(exc))
        logging.getLogger("aiogram.event").error("Cause exception while getting updates", exc_info=True)
        logging.getLogger("aiohttp.client").info("GET %s", f"https://api.telegram.org/file/bot{TOKEN}/x.jpg")
    log.info("token_is", token=TOKEN, also=f"prefix{TOKEN}suffix")

    raw_file = (log_dir / "bot.log").read_bytes()
    raw_out = capsysbinary.readouterr().out
    assert raw_file and raw_out
    for raw in (raw_file, raw_out):
        assert TOKEN.encode() not in raw
        assert b"AAH...xyz" not in raw
        assert b"AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw" not in raw
        assert b"/bot***/getMe" in raw
    assert len(lines(log_dir / "bot.log")) == 5


def test_redis_password_redacted(log_dir: Path) -> None:
    configure_logging("worker", log_dir, stdout=False)
    settings = load_settings({"REDIS_URL": "redis://worker:hunter2pass@redis.local:6379/0"})
    assert settings.redis is not None
    get_logger().info("redis_connecting", url=settings.redis.url(), shown=settings.redis.redacted_url)
    logging.getLogger("redis").error("Error connecting to rediss://:hunter2pass@other:6380")
    raw = (log_dir / "worker.log").read_bytes()
    assert b"hunter2pass" not in raw
    records = lines(log_dir / "worker.log")
    assert records[0]["url"] == "redis://worker:***@redis.local:6379/0"
    assert "rediss://:***@other:6380" in records[1]["event"]


def test_registered_secrets_from_settings(log_dir: Path) -> None:
    env = {"DISCORD_BOT_TOKEN": "discord-secret-value", "COMFYBOT_API_TOKEN": "api-tok-987"}
    settings = load_settings(env)
    configure_logging("bot", log_dir, stdout=False, secrets=settings.secrets())
    get_logger().warning("auth", header="Bot discord-secret-value", q="token=api-tok-987")
    raw = (log_dir / "bot.log").read_bytes()
    assert b"discord-secret-value" not in raw and b"api-tok-987" not in raw


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"https://api.telegram.org/bot{TOKEN}/getUpdates", "https://api.telegram.org/bot***/getUpdates"),
        (
            f"https://api.telegram.org/file/bot{TOKEN}/photos/a.jpg",
            "https://api.telegram.org/file/bot***/photos/a.jpg",
        ),
        (f"token {TOKEN} leaked", "token *** leaked"),
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("http://user:pass@host/x", "http://user:***@host/x"),
        ("MTE4NzY1NDMyMTA5ODc2NTQz.GabcDE.abcdefghijklmnopqrstuvwxyz0123", "***"),
        ("the bottom line: 3 robots", "the bottom line: 3 robots"),
        ("/bots/list and 12:30 and job 1234567:short", "/bots/list and 12:30 and job 1234567:short"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_configure_twice_does_not_duplicate_lines(log_dir: Path) -> None:
    configure_logging("gateway", log_dir, stdout=False)
    configure_logging("gateway", log_dir, stdout=False)
    get_logger().info("once")
    assert len(lines(log_dir / "gateway.log")) == 1


def test_stream_override(log_dir: Path) -> None:
    buf = io.StringIO()
    configure_logging("gateway", log_dir, stream=buf)
    get_logger().info("hello")
    assert orjson.loads(buf.getvalue())["event"] == "hello"


def test_capture_logs_still_works_for_other_tests(log_dir: Path) -> None:
    configure_logging("gateway", log_dir, stdout=False)
    with structlog.testing.capture_logs() as captured:
        get_logger().info("job_enqueued", job_id="x")
    assert captured[0]["event"] == "job_enqueued"


# --- the three recipes of DESIGN.md ----------------------------------------------------------------


def _write_sample(log_dir: Path) -> None:
    configure_logging("gateway", log_dir, stdout=False)
    log = get_logger()
    for rid, duration in (("aaaa1111bbbb2222", 1000), ("cccc3333dddd4444", 3000)):
        bind_request(rid, platform="telegram")
        log.info("job_enqueued", job_id=f"job-{rid[:4]}")
        with bound(job_id=f"job-{rid[:4]}", backend="gpu-a"):
            log.info("comfyui_prompt_sent", prompt_id=f"p-{rid[:4]}")
            logging.getLogger("aiohttp.client").error("connection reset")
            log.info("job_succeeded", duration_ms=duration)
        clear_request()
    log.error("worker_crashed")


def _recipe_python(log_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], float]:
    all_lines = [r for f in sorted(log_dir.glob("*.log")) for r in lines(f)]
    one = [r for r in all_lines if r.get("request_id") == "aaaa1111bbbb2222"]
    errors = [r for r in all_lines if r.get("level") == "error"]
    durations = [r["duration_ms"] for r in lines(log_dir / "gateway.log") if r["event"] == "job_succeeded"]
    return one, errors, sum(durations) / len(durations)


def test_jq_recipes_python_equivalents(log_dir: Path) -> None:
    _write_sample(log_dir)
    one, errors, avg = _recipe_python(log_dir)
    expected = ["job_enqueued", "comfyui_prompt_sent", "connection reset", "job_succeeded"]
    assert [r["event"] for r in one] == expected
    assert [r["event"] for r in errors] == ["connection reset", "connection reset", "worker_crashed"]
    assert avg == 2000


def test_jq_recipes_with_real_jq(log_dir: Path) -> None:
    jq = shutil.which("jq")
    if jq is None:
        pytest.skip("jq is not installed")
    _write_sample(log_dir)
    files = [str(p) for p in sorted(log_dir.glob("*.log"))]

    def run(*args: str) -> str:
        return subprocess.run([jq, *args], check=True, capture_output=True, text=True, timeout=30).stdout

    one_py, errors_py, avg_py = _recipe_python(log_dir)
    one = [orjson.loads(x) for x in run("-c", 'select(.request_id=="aaaa1111bbbb2222")', *files).splitlines()]
    errors = [orjson.loads(x) for x in run("-c", 'select(.level=="error")', *files).splitlines()]
    recipe = '[.[]|select(.event=="job_succeeded").duration_ms]|add/length'
    avg = float(run("-s", recipe, str(log_dir / "gateway.log")))
    assert one == one_py and errors == errors_py and avg == avg_py
