"""Where log lines really come from: aiogram's and discord.py's own loggers, and secrets in every path.

The lines are produced by the libraries' own code (aiogram's Dispatcher, discord.py's Client event
dispatch), not by ``logging.getLogger("aiogram...")`` calls of ours, and must come out as the same JSON as
ours. Then each kind of secret — a bot token, a Telegram file URL (which holds the token), a Redis URL
password — is pushed through each path a value can take to a sink (event text, a field, nested dicts and
lists, tuple, exception message, traceback, a stdlib record's args) with no secret registered, so only
the patterns can catch it.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiogram import Bot, Dispatcher, Router
from aiogram.client.telegram import PRODUCTION
from aiogram.types import Message

from core.logs import bind_request, configure_logging, get_logger

with warnings.catch_warnings():
    # discord.py 2.7 imports audioop (deprecated since 3.11); filterwarnings=error would fail collection.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawX"
TOKEN_TAIL = TOKEN.split(":", 1)[1]
FILE_URL = PRODUCTION.file_url(TOKEN, "photos/file_42.jpg")  # aiogram's own builder of the download URL
REDIS_PASSWORD = "s3cr3t-Redis-pw"
REDIS_URL = f"redis://default:{REDIS_PASSWORD}@redis.internal:6379/0"
REQUIRED = {"timestamp", "level", "event", "component"}


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def update(update_id: int, text: str) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": 1, "date": 0, "text": text,
            "chat": {"id": 7, "type": "private"}, "from": {"id": 7, "is_bot": False, "first_name": "A"},
        },
    }  # fmt: skip


async def test_aiogram_dispatcher_lines_are_our_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("bot", tmp_path)
    bind_request("aaaa1111bbbb2222")
    router = Router(name="t")

    @router.message()
    async def fail(message: Message) -> None:
        if message.text == "boom":
            raise RuntimeError(f"download failed: {FILE_URL}")

    dp = Dispatcher()
    dp.include_router(router)
    bot = Bot(TOKEN)
    try:
        await dp.feed_webhook_update(bot, update(1, "hello"))
        with pytest.raises(RuntimeError):
            await dp.feed_webhook_update(bot, update(2, "boom"))
    finally:
        await bot.session.close()

    records = lines(tmp_path / "bot.log")
    by_logger = [(r["logger"], r["level"]) for r in records]
    assert ("aiogram.event", "info") in by_logger  # "Update id=1 is handled. Duration ..."
    assert ("aiogram.event", "error") in by_logger  # "Cause exception while process update id=2 ..."
    for r in records:
        assert set(r) >= REQUIRED and r["component"] == "aiogram" and r["request_id"] == "aaaa1111bbbb2222"
    failed = next(r for r in records if r["level"] == "error")
    assert "RuntimeError" in failed["exception"] and "/file/bot***/photos/file_42.jpg" in failed["exception"]
    raw = (tmp_path / "bot.log").read_text() + capsys.readouterr().out
    assert TOKEN_TAIL not in raw and "download failed" in raw


async def test_discord_client_lines_are_our_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("bot", tmp_path)
    failed = asyncio.Event()

    async def on_boom() -> None:
        failed.set()
        raise RuntimeError(f"token was {TOKEN} and redis {REDIS_URL}")

    async with discord.Client(intents=discord.Intents.none()) as client:  # no login: no network
        client.event(on_boom)
        client.dispatch("boom")  # discord.py's _run_event → on_error → "Ignoring exception in on_boom"
        await failed.wait()
        for _ in range(20):  # let the event task reach on_error
            await asyncio.sleep(0)

    records = [r for r in lines(tmp_path / "bot.log") if r.get("logger") == "discord.client"]
    errors = [r for r in records if r["level"] == "error"]
    assert len(errors) == 1
    (r,) = errors
    assert set(r) >= REQUIRED and r["component"] == "discord"
    assert r["event"] == "Ignoring exception in on_boom"
    assert "RuntimeError: token was *** and redis redis://default:***@redis.internal:6379/0" in r["exception"]
    raw = (tmp_path / "bot.log").read_text() + capsys.readouterr().out
    assert TOKEN_TAIL not in raw and REDIS_PASSWORD not in raw


SECRETS = {
    "bot_token": (TOKEN, TOKEN_TAIL),
    "telegram_file_url": (FILE_URL, TOKEN_TAIL),
    "redis_url": (REDIS_URL, REDIS_PASSWORD),
    # A self-hosted Bot API server (TELEGRAM_API_BASE, --local) answers getFile with an absolute path that
    # holds the token as a directory name.
    "local_bot_api_file_path": (f"/var/lib/telegram-bot-api/{TOKEN}/photos/file_0.jpg", TOKEN_TAIL),
}


def _emit(path: str, value: str) -> None:
    log = get_logger()
    match path:
        case "event_text":
            log.info(f"fetching {value}")
        case "field":
            log.info("fetching", url=value)
        case "nested_dict":
            log.info("fetching", request={"http": {"url": value, "attempt": 1}})
        case "nested_list":
            log.info("fetching", urls=[["a", value], {"b": [value]}])
        case "tuple_and_set":
            log.info("fetching", pair=("x", value), seen={value})
        case "dict_key":
            log.info("fetching", by_url={value: 1})
        case "bytes":
            log.info("fetching", raw=value.encode())
        case "structlog_exception":
            try:
                raise ConnectionError(f"could not reach {value}")
            except ConnectionError:
                log.exception("fetch_failed")
        case "chained_exception":
            try:
                try:
                    raise OSError(value)
                except OSError as inner:
                    raise RuntimeError("wrapped") from inner
            except RuntimeError:
                log.error("fetch_failed", exc_info=True)
        case "stdlib_args":
            logging.getLogger("aiohttp.client").warning("GET %s failed: %r", value, {"url": value})
        case "stdlib_exception":
            try:
                raise ValueError(value)
            except ValueError:
                logging.getLogger("redis.connection").exception("connection error")
        case _:
            raise AssertionError(path)


@pytest.mark.parametrize("secret", sorted(SECRETS))
@pytest.mark.parametrize(
    "path",
    ["event_text", "field", "nested_dict", "nested_list", "tuple_and_set", "dict_key", "bytes",
     "structlog_exception", "chained_exception", "stdlib_args", "stdlib_exception"],
)  # fmt: skip
def test_secret_never_reaches_a_sink(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes], secret: str, path: str
) -> None:
    value, must_not_appear = SECRETS[secret]
    configure_logging("bot", tmp_path)  # nothing registered: the patterns alone must catch it
    _emit(path, value)
    raw_file = (tmp_path / "bot.log").read_bytes()
    raw_out = capsysbinary.readouterr().out
    assert raw_file and raw_file == raw_out
    assert must_not_appear.encode() not in raw_file
    (record,) = lines(tmp_path / "bot.log")
    assert set(record) >= REQUIRED
