"""The fake Bot API server, driven by the real aiogram client: wire format, limits, polling, faults."""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiogram import Bot, Dispatcher
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramRetryAfter,
)
from aiogram.filters import Command, CommandObject
from aiogram.methods import SendMessage
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllPrivateChats,
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaDocument,
    InputMediaPhoto,
    Message,
    ReplyParameters,
)
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web
from PIL import Image

from tests.fakes.telegram import FakeTelegram, RateLimits


def png(width: int = 64, height: int = 48, color: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


class Clock:
    """A manual clock for rate-limit tests: no wall-clock waits."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(rate_limits_enabled=False) as f:
        yield f


@pytest.fixture
def bot(fake: FakeTelegram) -> Bot:
    return fake.make_bot()


def keyboard(*data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=d[:10] or "x", callback_data=d) for d in data]]
    )


async def test_get_me_and_commands_round_trip(fake: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.username == fake.bot_username and me.is_bot
    await bot.set_my_commands([BotCommand(command="generate", description="Make an image")])
    await bot.set_my_commands(
        [BotCommand(command="generate", description="Сделать картинку")],
        language_code="ru",
        scope=BotCommandScopeAllPrivateChats(),
    )
    assert [c.description for c in await bot.get_my_commands()] == ["Make an image"]
    ru = await bot.get_my_commands(language_code="ru", scope=BotCommandScopeAllPrivateChats())
    assert [c.description for c in ru] == ["Сделать картинку"]
    assert await bot.get_my_commands(language_code="ko") == []


async def test_send_message_with_keyboard_and_edit_in_place(fake: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(
        42, "<b>Queued</b> #3", parse_mode="HTML", reply_markup=keyboard("cancel:j1")
    )
    assert sent.chat.id == 42 and sent.from_user is not None and sent.from_user.is_bot
    edited = await bot.edit_message_text(
        "Sampling 50%", chat_id=42, message_id=sent.message_id, reply_markup=keyboard("cancel:j1")
    )
    assert not isinstance(edited, bool) and edited.text == "Sampling 50%"
    [msg] = fake.bot_messages(42)
    assert msg.text == "Sampling 50%" and len(msg.edits) == 1
    assert msg.edits[0]["before"]["text"] == "Queued #3"  # HTML parsed like Telegram does
    assert msg.buttons[0][0]["callback_data"] == "cancel:j1"
    await bot.edit_message_reply_markup(chat_id=42, message_id=sent.message_id, reply_markup=None)
    assert fake.message(42, sent.message_id).reply_markup is None


async def test_send_photo_upload_and_download_via_get_file(fake: FakeTelegram, bot: Bot) -> None:
    data = png(640, 480)
    sent = await bot.send_photo(
        7,
        BufferedInputFile(data, "out.png"),
        caption="seed 42",
        reply_markup=keyboard("reroll:j1", "upscale:j1"),
    )
    assert sent.photo is not None and sent.photo[-1].width == 640 and sent.photo[-1].file_size == len(data)
    [call] = fake.calls_of("sendPhoto")
    assert call.params["photo"].startswith("attach://") and len(call.files) == 1
    assert fake.bot_messages(7)[0].file_data == data and fake.bot_messages(7)[0].caption == "seed 42"
    file = await bot.get_file(sent.photo[-1].file_id)
    assert file.file_path is not None
    got = await bot.download_file(file.file_path)
    assert got is not None and got.read() == data
    # A file_id is reusable like on Telegram.
    again = await bot.send_photo(7, sent.photo[-1].file_id)
    assert again.photo is not None and again.photo[-1].file_id == sent.photo[-1].file_id


async def test_send_media_group_with_attach_and_edit_message_media(fake: FakeTelegram, bot: Bot) -> None:
    a, b = png(color="red"), png(color="blue")
    msgs = await bot.send_media_group(
        5,
        [
            InputMediaPhoto(media=BufferedInputFile(a, "a.png"), caption="first"),
            InputMediaPhoto(media=BufferedInputFile(b, "b.png")),
        ],
    )
    assert len(msgs) == 2 and msgs[0].media_group_id == msgs[1].media_group_id is not None
    call = fake.calls_of("sendMediaGroup")[0]
    assert all(item["media"].startswith("attach://") for item in call.params["media"])
    assert [m.file_data for m in fake.bot_messages(5)] == [a, b]

    preview = await bot.send_photo(6, BufferedInputFile(png(32, 32), "p.png"), caption="preview")
    final = png(512, 512, "green")
    await bot.edit_message_media(
        InputMediaPhoto(media=BufferedInputFile(final, "final.png"), caption="done"),
        chat_id=6,
        message_id=preview.message_id,
    )
    [msg] = fake.bot_messages(6)
    assert msg.file_data == final and msg.caption == "done" and msg.photo is not None
    assert msg.photo[-1]["width"] == 512 and len(msg.edits) == 1
    await bot.edit_message_media(
        InputMediaDocument(media=BufferedInputFile(b"%PDF", "r.pdf")),
        chat_id=6,
        message_id=preview.message_id,
    )
    assert fake.message(6, preview.message_id).kind == "document"


async def test_text_and_caption_limits(fake: FakeTelegram, bot: Bot) -> None:
    await bot.send_message(1, "x" * 4096)
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(1, "x" * 4097)
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(1, " ")
    with pytest.raises(TelegramBadRequest, match="message caption is too long"):
        await bot.send_photo(1, BufferedInputFile(png(), "a.png"), caption="c" * 1025)
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(1, "hi", reply_markup=keyboard("d" * 65))
    await bot.send_message(1, "hi", reply_markup=keyboard("d" * 64))


async def test_photo_limits_tell_the_caller_to_send_a_document(fake: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="PHOTO_INVALID_DIMENSIONS"):
        await bot.send_photo(1, BufferedInputFile(png(2100, 100), "wide.png"))  # ratio 21
    with pytest.raises(TelegramBadRequest, match="PHOTO_INVALID_DIMENSIONS"):
        await bot.send_photo(1, BufferedInputFile(png(5001, 5000), "big.png"))
    too_big = b"\xff" * (10 * 1024 * 1024 + 1)
    with pytest.raises(TelegramEntityTooLarge):
        await bot.send_photo(1, BufferedInputFile(too_big, "huge.jpg"))
    doc = await bot.send_document(1, BufferedInputFile(too_big, "huge.jpg"))
    assert doc.document is not None and doc.document.file_size == len(too_big)
    assert doc.document.mime_type == "image/jpeg"
    assert fake.bot_messages(1)[-1].file_data == too_big


async def test_not_modified_and_deleted_message_errors(fake: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(3, "same")
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text("same", chat_id=3, message_id=sent.message_id)
    fake.delete_message(3, sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("new", chat_id=3, message_id=sent.message_id)
    assert fake.bot_messages(3) == []
    user = fake.send_text(3, 3, "hello")
    assert user.message_id is not None
    with pytest.raises(TelegramBadRequest, match="message can't be edited"):
        await bot.edit_message_text("x", chat_id=3, message_id=user.message_id)


async def test_long_poll_holds_then_wakes_on_injected_update(fake: FakeTelegram, bot: Bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=30))
    await fake.wait_until(lambda: fake.polling)  # the request is held by the server
    assert not poll.done()
    sent = fake.send_text(11, 11, "/generate a lighthouse", language_code="ru")
    updates = await asyncio.wait_for(poll, 5)  # woken by the update, not by the 30 s timeout
    [u] = updates
    assert u.update_id == sent.update_id and u.message is not None
    assert u.message.text == "/generate a lighthouse"
    assert u.message.from_user is not None and u.message.from_user.language_code == "ru"
    assert u.message.entities is not None and u.message.entities[0].type == "bot_command"
    assert u.message.entities[0].length == len("/generate")
    # Confirmed updates are dropped; an empty short poll answers [] at once.
    assert await bot.get_updates(offset=u.update_id + 1, timeout=0) == []


async def test_group_command_photo_document_and_button_updates(fake: FakeTelegram, bot: Bot) -> None:
    fake.send_text(1, -100, f"/generate@{fake.bot_username} cat", chat_type="supergroup")
    photo = png(300, 200)
    p = fake.send_photo(1, -100, photo, caption="/edit make it blue", chat_type="supergroup")
    d = fake.send_document(1, -100, b"\x89PNG...", file_name="in.png", chat_type="supergroup")
    bot_msg = await bot.send_message(-100, "Result", reply_markup=keyboard("reroll:j9"))
    press = fake.press_button(1, -100, bot_msg.message_id, "reroll:j9")
    updates = await bot.get_updates(timeout=1)
    assert [u.update_id for u in updates[1:]] == [p.update_id, d.update_id, press.update_id]
    cmd, ph, doc, cb = updates
    assert cmd.message is not None and cmd.message.chat.type == "supergroup" and cmd.message.entities
    assert cmd.message.entities[0].length == len(f"/generate@{fake.bot_username}")
    assert ph.message is not None and ph.message.photo is not None
    assert ph.message.caption == "/edit make it blue"
    assert ph.message.photo[-1].width == 300 and ph.message.photo[-1].file_size == len(photo)
    f = await bot.get_file(ph.message.photo[-1].file_id)
    assert f.file_path is not None
    got = await bot.download_file(f.file_path)
    assert got is not None and got.read() == photo
    assert doc.message is not None and doc.message.document is not None
    assert doc.message.document.mime_type == "image/png" and doc.message.document.file_name == "in.png"
    assert cb.callback_query is not None and cb.callback_query.data == "reroll:j9"
    assert cb.callback_query.message is not None
    assert cb.callback_query.message.message_id == bot_msg.message_id
    assert await bot.answer_callback_query(cb.callback_query.id, text="Rerolling")
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(cb.callback_query.id)


async def test_injected_429_storm_and_fail_next(fake: FakeTelegram, bot: Bot) -> None:
    fake.inject_429("sendMessage", times=2, retry_after=7)
    with pytest.raises(TelegramRetryAfter) as err:
        await bot.send_message(1, "a")
    assert err.value.retry_after == 7
    # The chat is blocked for 7 s like real Telegram: an early retry is refused again.
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(2, "b")
    assert fake.count_429 == 2
    await bot.send_message(3, "c")
    fake.fail_next("editMessageText", 400, "Bad Request: message can't be edited")
    with pytest.raises(TelegramBadRequest, match="can't be edited"):
        await bot.edit_message_text("x", chat_id=3, message_id=1)
    assert fake.calls_of("editMessageText")[0].status == 400


async def test_rate_limits_per_chat_group_and_global_with_injected_clock() -> None:
    clock = Clock()
    async with FakeTelegram(clock=clock, limits=RateLimits(slack=0.0)) as fake:
        bot = fake.make_bot()
        await bot.send_message(1, "a")
        with pytest.raises(TelegramRetryAfter) as err:
            await bot.edit_message_text("b", chat_id=1, message_id=1)  # edits count like sends
        assert err.value.retry_after == 1
        clock.now += 1.0
        await bot.edit_message_text("b", chat_id=1, message_id=1)
        # group: 20 a minute
        for _ in range(20):
            clock.now += 1.0
            await bot.send_message(-5, "g")
        clock.now += 1.0
        with pytest.raises(TelegramRetryAfter) as err:
            await bot.send_message(-5, "g")
        assert err.value.retry_after == 40
        # global: 30 a second across chats
        clock.now += 100
        for chat in range(100, 130):
            await bot.send_message(chat, "x")
        with pytest.raises(TelegramRetryAfter):
            await bot.send_message(999, "x")
        assert fake.count_429 == 3


async def test_wait_for_and_webhook_conflict(fake: FakeTelegram, bot: Bot) -> None:
    waiter = asyncio.create_task(fake.wait_for(lambda c: c.method == "sendPhoto" and c.chat_id == 9))
    await bot.send_message(9, "not yet")
    assert not waiter.done()
    await bot.send_photo(9, BufferedInputFile(png(), "a.png"))
    call = await asyncio.wait_for(waiter, 5)
    assert call.ok and call.result["chat"]["id"] == 9
    await bot.set_webhook("https://example.invalid/hook")
    with pytest.raises(Exception, match="webhook is active"):
        await bot.get_updates()
    await bot.delete_webhook()
    assert await bot.get_updates() == []


async def test_wrong_token_is_unauthorized(fake: FakeTelegram) -> None:
    async with aiohttp.ClientSession() as http:
        resp = await http.post(f"{fake.url}/bot1:wrong/getMe")
        assert resp.status == 401 and (await resp.json())["ok"] is False
        resp = await http.post(f"{fake.url}/bot{fake.token}/GETME")  # method names are case-insensitive
        assert (await resp.json())["result"]["id"] == fake.bot_id


async def test_a_newer_get_updates_terminates_the_held_one_with_409(fake: FakeTelegram, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=30))
    await fake.wait_until(lambda: fake.polling)
    second = asyncio.create_task(bot.get_updates(timeout=30))
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates"):
        await asyncio.wait_for(first, 5)
    fake.send_text(1, 1, "hi")
    assert len(await asyncio.wait_for(second, 5)) == 1


async def test_real_dispatcher_polls_handles_and_stops_cleanly(fake: FakeTelegram, bot: Bot) -> None:
    dp = Dispatcher()

    @dp.message(Command("generate"))
    async def generate(message: Message, command: CommandObject) -> None:
        await message.answer(f"Queued: {command.args}")

    @dp.callback_query()
    async def pressed(query: CallbackQuery) -> None:
        await query.answer("ok")

    polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False, polling_timeout=30))
    fake.send_text(5, -200, f"/generate@{fake.bot_username} a cat", chat_type="group")
    reply = await fake.wait_for(lambda c: c.method == "sendMessage" and c.chat_id == -200)
    assert reply.params["text"] == "Queued: a cat"
    fake.press_button(5, -200, reply.result["message_id"], "reroll:1")
    await fake.wait_for(lambda c: c.method == "answerCallbackQuery")
    await dp.stop_polling()
    await asyncio.wait_for(polling, 10)


async def test_webhook_delivery_runs_the_method_in_the_answer(fake: FakeTelegram, bot: Bot) -> None:
    dp = Dispatcher()

    @dp.message()
    async def echo(message: Message) -> SendMessage:
        return message.answer(f"pong: {message.text}")  # answered in the webhook response itself

    app = web.Application()
    SimpleRequestHandler(dp, bot, secret_token="s3cret", handle_in_background=False).register(app, "/hook")
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    try:
        await bot.set_webhook(f"http://127.0.0.1:{sock.getsockname()[1]}/hook", secret_token="s3cret")
        sent = fake.send_text(4, 4, "ping")
        call = await fake.wait_for(lambda c: c.method == "sendMessage")
        assert call.via == "webhook_reply" and call.ok and call.params["text"] == "pong: ping"
        assert fake.webhook_deliveries == [(sent.update_id, 200)]
        assert [m.text for m in fake.bot_messages(4)] == ["pong: ping"]
        info = await bot.get_webhook_info()
        assert info.pending_update_count == 0
        await bot.delete_webhook()
    finally:
        await runner.cleanup()


async def test_blocked_bot_and_missing_reply_target(fake: FakeTelegram, bot: Bot) -> None:
    fake.block_bot(8)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(8, "hi")
    fake.block_bot(8, False)
    with pytest.raises(TelegramBadRequest, match="message to be replied not found"):
        await bot.send_message(8, "hi", reply_parameters=ReplyParameters(message_id=99))
    sent = await bot.send_message(
        8, "hi", reply_parameters=ReplyParameters(message_id=99, allow_sending_without_reply=True)
    )
    assert sent.message_id == 1
