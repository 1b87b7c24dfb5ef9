"""A fake Telegram Bot API server on 127.0.0.1, driven by the real aiogram client.

It speaks the wire format of ``/work/shared/PLATFORMS.md``: ``POST /bot<token>/<method>`` with
form-urlencoded or multipart bodies (non-string values JSON-encoded, files as ``attach://<name>``),
answers ``{"ok": true, "result": ...}`` or the real error bodies, and ``GET /file/bot<token>/<path>``.

What it gives tests:

* a per-chat message store (``fake.messages(chat_id)``) with text/caption, uploaded bytes,
  reply_markup and edit history, so a test can assert "one message per job, edited in place";
* a call log (``fake.calls``) and event-driven waiters (``await fake.wait_for(pred)``);
* Telegram's limits (text, caption, callback_data, photo size/dimensions, rates) with the real
  error descriptions, every 429 counted in ``fake.count_429``;
* fault injection: ``inject_429`` (a storm; the chat stays blocked for ``retry_after`` like real
  Telegram), ``fail_next`` (any status/description), ``delete_message`` (the user deleted it),
  ``block_bot`` (403 "bot was blocked by the user");
* simulated users: ``send_text``, ``send_photo``, ``send_document``, ``press_button`` enqueue
  updates that a long-polling ``getUpdates`` returns at once (a second poll ends the held one with
  409, like two bot instances); with ``setWebhook`` they are POSTed to the webhook instead, and a
  method in the webhook's answer (JSON or aiogram's multipart) is executed (``Call.via``).

Rates (``RateLimits``) are sliding windows on ``clock`` (injectable); sendMessage, sendPhoto,
sendDocument, sendMediaGroup (one op per album) and the four edits count, other methods don't.
A test module can use the ``fake_telegram``/``telegram_bot`` fixtures below by importing them, or
``async with FakeTelegram(...)`` directly.

Usage::

    async with FakeTelegram() as fake:
        bot = fake.make_bot()          # closed by the fake on exit
        await bot.send_message(42, "hi")
        assert fake.messages(42)[-1].text == "hi"
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import io
import itertools
import json
import math
import mimetypes
import re
import socket
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import BodyPartReader, MultipartReader, web

T = TypeVar("T")

DEFAULT_TOKEN = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11"

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64
MAX_CALLBACK_ANSWER = 200
MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_DOCUMENT_BYTES = 50 * 1024 * 1024
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)

METHODS = [
    "getMe",
    "getUpdates",
    "setWebhook",
    "deleteWebhook",
    "getWebhookInfo",
    "setMyCommands",
    "getMyCommands",
    "deleteMyCommands",
    "sendMessage",
    "editMessageText",
    "editMessageCaption",
    "editMessageMedia",
    "editMessageReplyMarkup",
    "sendPhoto",
    "sendDocument",
    "sendMediaGroup",
    "sendChatAction",
    "deleteMessage",
    "answerCallbackQuery",
    "getFile",
    "close",
    "logOut",
]
_CANONICAL = {m.lower(): m for m in METHODS}

#: Methods that count against the per-chat, per-group and global rate limits (edits count like sends).
RATE_COUNTED = frozenset(
    [
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "sendMediaGroup",
        "editMessageText",
        "editMessageCaption",
        "editMessageMedia",
        "editMessageReplyMarkup",
    ]
)
#: Methods an untargeted ``inject_429`` leaves alone, so polling keeps working during a storm.
_STORM_EXEMPT = frozenset({"getUpdates", "getMe", "deleteWebhook", "getWebhookInfo"})

_JSON_FIELDS = frozenset(
    [
        "reply_markup",
        "media",
        "commands",
        "scope",
        "allowed_updates",
        "entities",
        "caption_entities",
        "reply_parameters",
        "link_preview_options",
    ]
)
_INT_FIELDS = frozenset(
    [
        "chat_id",
        "message_id",
        "offset",
        "limit",
        "timeout",
        "reply_to_message_id",
        "message_thread_id",
        "cache_time",
        "max_connections",
    ]
)
_BOOL_FIELDS = frozenset(
    [
        "disable_notification",
        "protect_content",
        "show_alert",
        "drop_pending_updates",
        "disable_web_page_preview",
        "allow_sending_without_reply",
        "show_caption_above_media",
        "has_spoiler",
    ]
)


class ApiError(Exception):
    """An error answer of the Bot API (status, description, optional ``parameters``)."""

    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def bad_request(detail: str) -> ApiError:
    return ApiError(400, f"Bad Request: {detail}")


@dataclass
class UploadedFile:
    """One multipart file part as received."""

    name: str
    filename: str
    content_type: str
    data: bytes


@dataclass
class Call:
    """One request the fake received: canonical method, decoded params, files, clock time, HTTP status."""

    method: str
    params: dict[str, Any]
    files: dict[str, UploadedFile]
    at: float
    status: int = 200
    result: Any = None
    description: str | None = None
    #: "http", or "webhook_reply" for a method the bot returned in its webhook response
    via: str = "http"
    response: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def chat_id(self) -> Any:
        return self.params.get("chat_id")

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes
    file_path: str
    mime_type: str | None = None
    file_name: str | None = None
    width: int | None = None
    height: int | None = None


@dataclass
class StoredMessage:
    """A message in a chat: what the bot (or a simulated user) sent, its current state and its edits."""

    message_id: int
    chat: dict[str, Any]
    from_user: dict[str, Any]
    date: int
    from_bot: bool
    text: str | None = None
    entities: list[dict[str, Any]] | None = None
    parse_mode: str | None = None
    caption: str | None = None
    caption_entities: list[dict[str, Any]] | None = None
    photo: list[dict[str, Any]] | None = None
    document: dict[str, Any] | None = None
    file_data: bytes | None = None
    reply_markup: dict[str, Any] | None = None
    reply_to_message_id: int | None = None
    media_group_id: str | None = None
    edit_date: int | None = None
    #: the forum topic the message is in (Bot API ``message_thread_id`` + ``is_topic_message``)
    message_thread_id: int | None = None
    #: one entry per accepted edit: ``{"method": ..., "params": ..., "before": <json before>}``
    edits: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False

    @property
    def chat_id(self) -> int:
        return int(self.chat["id"])

    @property
    def kind(self) -> str:
        if self.photo is not None:
            return "photo"
        if self.document is not None:
            return "document"
        return "text"

    @property
    def buttons(self) -> list[list[dict[str, Any]]]:
        """The inline keyboard rows (empty without one)."""
        if not self.reply_markup:
            return []
        return list(self.reply_markup.get("inline_keyboard", []))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "message_id": self.message_id,
            "date": self.date,
            "chat": dict(self.chat),
            "from": dict(self.from_user),
        }
        for key in (
            "text",
            "entities",
            "caption",
            "caption_entities",
            "photo",
            "document",
            "reply_markup",
            "media_group_id",
            "edit_date",
            "message_thread_id",
        ):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.message_thread_id is not None:
            out["is_topic_message"] = True
        return out


@dataclass
class SentUpdate:
    """What a simulated user action enqueued."""

    update_id: int
    data: dict[str, Any]
    message: StoredMessage | None = None

    @property
    def message_id(self) -> int | None:
        return self.message.message_id if self.message else None


@dataclass
class RateLimits:
    """Sliding-window limits; ``slack`` forgives network jitter of a sender that spaces exactly."""

    per_chat: int = 1
    per_chat_window: float = 1.0
    per_group: int = 20
    per_group_window: float = 60.0
    global_: int = 30
    global_window: float = 1.0
    slack: float = 0.05


@dataclass
class _Fault:
    method: str | None
    times: int
    status: int
    description: str
    parameters: dict[str, Any] | None = None
    chat_id: int | None = None
    block: bool = False


def _decode_params(raw: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _JSON_FIELDS or key in _BOOL_FIELDS:
            try:
                out[key] = json.loads(value)
            except ValueError:
                out[key] = value
        elif key in _INT_FIELDS:
            try:
                out[key] = int(value)
            except ValueError:
                out[key] = value  # e.g. chat_id="@channel"
        else:
            out[key] = value
    return out


def _image_size(data: bytes) -> tuple[int, int] | None:
    from PIL import Image  # Pillow is a runtime dependency of comfybot

    try:
        with Image.open(io.BytesIO(data)) as img:
            return int(img.size[0]), int(img.size[1])
    except Exception:  # any undecodable upload is IMAGE_PROCESS_FAILED for Telegram
        return None


def _plain_text(text: str, parse_mode: str | None) -> str:
    """What Telegram stores after parsing markup (HTML tags stripped; other modes kept as sent)."""
    if parse_mode and parse_mode.upper() == "HTML":
        return html.unescape(re.sub(r"<[^>]+>", "", text))
    return text


def _command_entities(text: str) -> list[dict[str, Any]] | None:
    match = re.match(r"/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?", text)
    if not match:
        return None
    return [{"type": "bot_command", "offset": 0, "length": len(match.group(0).encode("utf-16-le")) // 2}]


async def _read_multipart(reader: MultipartReader) -> tuple[dict[str, str], dict[str, UploadedFile]]:
    fields: dict[str, str] = {}
    files: dict[str, UploadedFile] = {}
    async for part in reader:
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        if part.filename is not None:
            files[part.name] = UploadedFile(
                name=part.name,
                filename=part.filename,
                content_type=part.headers.get("Content-Type", "application/octet-stream"),
                data=bytes(await part.read()),
            )
        else:
            fields[part.name] = await part.text()
    return fields, files


class FakeTelegram:
    """The fake Bot API server. Use as ``async with FakeTelegram() as fake``."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        bot_username: str = "comfy_test_bot",
        bot_name: str = "Comfy Test",
        rate_limits_enabled: bool = True,
        limits: RateLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        port: int = 0,
    ) -> None:
        self.token = token
        self.bot_username = bot_username
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_user = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": bot_name,
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.rate_limits_enabled = rate_limits_enabled
        self.limits = limits or RateLimits()
        self.clock = clock
        self.calls: list[Call] = []
        self.count_429 = 0
        self.webhook_url = ""
        self.webhook_secret: str | None = None
        self.webhook_allowed_updates: list[str] | None = None
        #: (update_id, HTTP status or 0 for a connection error) of every webhook delivery attempt
        self.webhook_deliveries: list[tuple[int, int]] = []
        self._webhook_task: asyncio.Task[None] | None = None
        self._webhook_http: aiohttp.ClientSession | None = None
        self._blocked_by: set[int] = set()
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.files: dict[str, StoredFile] = {}
        self.chats: dict[int, dict[str, Any]] = {}
        self.answered_callbacks: dict[str, dict[str, Any]] = {}
        self._msgs: dict[int, dict[int, StoredMessage]] = defaultdict(dict)
        self._next_msg_id: dict[int, int] = defaultdict(lambda: 1)
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._file_seq = itertools.count(1)
        self._group_seq = itertools.count(1)
        self._callbacks: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._faults: list[_Fault] = []
        self._chat_ops: dict[Any, deque[float]] = defaultdict(deque)
        self._group_ops: dict[Any, deque[float]] = defaultdict(deque)
        self._global_ops: deque[float] = deque()
        self._blocked_chat: dict[Any, float] = {}
        self._blocked_global = 0.0
        self._closing = False
        #: getUpdates requests currently held open by the long poll
        self.polling = 0
        self._poll_generation = 0
        self._bots: list[Bot] = []
        self._runner: web.AppRunner | None = None
        self.port = port  # 0: a free one, chosen at start

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_DOCUMENT_BYTES + 5 * 1024 * 1024)
        app.router.add_post("/bot{token}/{method}", self._handle)
        app.router.add_get("/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", self.port))  # 0: a free port, held by us: no race with another test
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()

    async def close(self) -> None:
        self._closing = True
        self._notify()
        await self._stop_webhook()
        for bot in self._bots:
            await bot.session.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def make_bot(self, token: str | None = None) -> Bot:
        """A real aiogram ``Bot`` pointed at this fake; its session is closed by ``close()``."""
        session = AiohttpSession(api=TelegramAPIServer.from_base(self.url))
        bot = Bot(token or self.token, session=session)
        self._bots.append(bot)
        return bot

    # ------------------------------------------------------------------ recording and waiting

    def messages(
        self, chat_id: int, *, from_bot: bool | None = None, include_deleted: bool = False
    ) -> list[StoredMessage]:
        """Messages of a chat in order; by default the ones not deleted, from the bot and users."""
        return [
            m
            for _, m in sorted(self._msgs[chat_id].items())
            if (include_deleted or not m.deleted) and (from_bot is None or m.from_bot == from_bot)
        ]

    def bot_messages(self, chat_id: int) -> list[StoredMessage]:
        return self.messages(chat_id, from_bot=True)

    def message(self, chat_id: int, message_id: int) -> StoredMessage:
        return self._msgs[chat_id][message_id]

    def calls_of(self, method: str, chat_id: int | None = None, *, ok: bool | None = None) -> list[Call]:
        return [
            c
            for c in self.calls
            if c.method.lower() == method.lower()
            and (chat_id is None or c.chat_id == chat_id)
            and (ok is None or c.ok == ok)
        ]

    async def wait_for(
        self,
        predicate: Callable[[Call], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 - test API
        *,
        start: int = 0,
    ) -> Call:
        """The first call (from index ``start``) matching ``predicate``; waits on new calls, not sleeps."""
        async with asyncio.timeout(timeout):
            seen = start
            while True:
                changed = self._changed
                for call in self.calls[seen:]:
                    if predicate(call):
                        return call
                seen = max(seen, len(self.calls))
                await changed.wait()

    async def wait_until(self, condition: Callable[[], T], timeout: float = 5.0) -> T:  # noqa: ASYNC109
        """Re-evaluate ``condition`` after every call/update until it is truthy; returns its value."""
        async with asyncio.timeout(timeout):
            while True:
                changed = self._changed
                if value := condition():
                    return value
                await changed.wait()

    def _notify(self) -> None:
        """Wake every waiter: set the current event and start a fresh one (a broadcast, no lock)."""
        self._changed.set()
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ fault injection

    def inject_429(
        self,
        method: str | None = None,
        *,
        times: int = 1,
        retry_after: int = 1,
        chat_id: int | None = None,
        block: bool = True,
    ) -> None:
        """The next ``times`` matching calls get 429 ``retry after N``.

        ``method=None`` matches every method but polling ones. With ``block`` the chat (or, for calls
        without a chat, the whole bot) stays blocked for ``retry_after`` seconds like real Telegram:
        an early retry gets another 429.
        """
        self._faults.append(
            _Fault(
                method=_CANONICAL.get(method.lower(), method) if method else None,
                times=times,
                status=429,
                description=f"Too Many Requests: retry after {retry_after}",
                parameters={"retry_after": retry_after},
                chat_id=chat_id,
                block=block,
            )
        )

    def fail_next(
        self,
        method: str,
        status: int = 400,
        description: str = "Bad Request: injected",
        *,
        times: int = 1,
        chat_id: int | None = None,
    ) -> None:
        """The next ``times`` calls of ``method`` fail with this status and description."""
        self._faults.append(
            _Fault(
                method=_CANONICAL.get(method.lower(), method),
                times=times,
                status=status,
                description=description,
                chat_id=chat_id,
            )
        )

    def clear_faults(self) -> None:
        """Drop every injected fault that has not fired yet: the API answers normally again."""
        self._faults.clear()

    def block_bot(self, chat_id: int, blocked: bool = True) -> None:
        """As if the user blocked the bot: sends to the chat get 403 "bot was blocked by the user"."""
        if blocked:
            self._blocked_by.add(chat_id)
        else:
            self._blocked_by.discard(chat_id)

    def delete_message(self, chat_id: int, message_id: int) -> None:
        """As if the user deleted the message: edits now fail with "message to edit not found"."""
        self._msgs[chat_id][message_id].deleted = True

    # ------------------------------------------------------------------ simulated users

    def _chat(
        self, chat_id: int, chat_type: str | None = None, user: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if chat_id not in self.chats:
            kind = chat_type or ("private" if chat_id > 0 else "supergroup")
            if kind == "private":
                chat: dict[str, Any] = {
                    "id": chat_id,
                    "type": "private",
                    "first_name": (user or {}).get("first_name", f"User{chat_id}"),
                }
            else:
                chat = {"id": chat_id, "type": kind, "title": f"Group {chat_id}"}
            self.chats[chat_id] = chat
        return self.chats[chat_id]

    @staticmethod
    def user(user_id: int, language_code: str = "en") -> dict[str, Any]:
        return {
            "id": user_id,
            "is_bot": False,
            "first_name": f"User{user_id}",
            "username": f"user{user_id}",
            "language_code": language_code,
        }

    def _new_message(
        self, chat_id: int, from_user: dict[str, Any], *, from_bot: bool, chat_type: str | None = None
    ) -> StoredMessage:
        chat = self._chat(chat_id, chat_type, None if from_bot else from_user)
        msg_id = self._next_msg_id[chat_id]
        self._next_msg_id[chat_id] = msg_id + 1
        msg = StoredMessage(
            message_id=msg_id, chat=chat, from_user=from_user, date=int(time.time()), from_bot=from_bot
        )
        self._msgs[chat_id][msg_id] = msg
        return msg

    def _store_file(
        self,
        data: bytes,
        *,
        kind: str,
        mime_type: str | None = None,
        file_name: str | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> StoredFile:
        n = next(self._file_seq)
        digest = hashlib.sha1(data).hexdigest()[:16]  # noqa: S324 - an id, not security
        ext = (
            (file_name or "").rsplit(".", 1)[-1]
            if file_name and "." in file_name
            else ("jpg" if kind == "photo" else "bin")
        )
        stored = StoredFile(
            file_id=f"{kind[:3].upper()}{n:06d}{digest}",
            file_unique_id=f"U{n}{digest[:8]}",
            data=data,
            file_path=f"{kind}s/file_{n}.{ext}",
            mime_type=mime_type,
            file_name=file_name,
            width=width,
            height=height,
        )
        self.files[stored.file_id] = stored
        return stored

    def _photo_sizes(self, stored: StoredFile) -> list[dict[str, Any]]:
        w, h = stored.width or 0, stored.height or 0
        full = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "width": w,
            "height": h,
            "file_size": len(stored.data),
        }
        scale = 90 / max(w, h, 1)
        if scale >= 1:
            return [full]
        # Telegram always adds thumbnails; this one points at the same bytes (it is a fake).
        thumb: dict[str, Any] = {
            "file_id": stored.file_id + "t",
            "file_unique_id": stored.file_unique_id + "t",
            "width": max(1, round(w * scale)),
            "height": max(1, round(h * scale)),
            "file_size": max(1, len(stored.data) // 20),
        }
        self.files[stored.file_id + "t"] = StoredFile(
            file_id=thumb["file_id"],
            file_unique_id=thumb["file_unique_id"],
            data=stored.data,
            file_path=stored.file_path + ".thumb.jpg",
            width=thumb["width"],
            height=thumb["height"],
        )
        return [thumb, full]

    def _enqueue(self, kind: str, payload: dict[str, Any], message: StoredMessage | None) -> SentUpdate:
        update_id = next(self._update_ids)
        update = {"update_id": update_id, kind: payload}
        self._updates.append(update)
        self._notify()  # wakes a held long poll (or the webhook deliverer) at once
        return SentUpdate(update_id=update_id, data=update, message=message)

    def send_text(
        self,
        user_id: int,
        chat_id: int,
        text: str,
        *,
        reply_to_message_id: int | None = None,
        chat_type: str = "private",
        language_code: str = "en",
        thread_id: int | None = None,
    ) -> SentUpdate:
        """A user types ``text`` (``/cmd`` and ``/cmd@Bot`` get a bot_command entity); ``thread_id``:
        in that forum topic."""
        msg = self._user_message(user_id, chat_id, chat_type, language_code, reply_to_message_id)
        msg.message_thread_id = thread_id
        msg.text = text
        msg.entities = _command_entities(text)
        return self._enqueue("message", self._user_json(msg), msg)

    def send_photo(
        self,
        user_id: int,
        chat_id: int,
        image_bytes: bytes,
        *,
        caption: str | None = None,
        reply_to_message_id: int | None = None,
        chat_type: str = "private",
        language_code: str = "en",
    ) -> SentUpdate:
        """A user sends a photo; ``getFile`` + download return ``image_bytes``."""
        size = _image_size(image_bytes) or (0, 0)
        stored = self._store_file(
            image_bytes, kind="photo", mime_type="image/jpeg", width=size[0], height=size[1]
        )
        msg = self._user_message(user_id, chat_id, chat_type, language_code, reply_to_message_id)
        msg.photo, msg.file_data = self._photo_sizes(stored), image_bytes
        if caption is not None:
            msg.caption, msg.caption_entities = caption, _command_entities(caption)
        return self._enqueue("message", self._user_json(msg), msg)

    def send_document(
        self,
        user_id: int,
        chat_id: int,
        data: bytes,
        *,
        file_name: str = "file.bin",
        mime_type: str | None = None,
        caption: str | None = None,
        reply_to_message_id: int | None = None,
        chat_type: str = "private",
        language_code: str = "en",
    ) -> SentUpdate:
        """A user sends a file as a document."""
        mime = mime_type or mimetypes.guess_type(file_name)[0] or "application/octet-stream"
        stored = self._store_file(data, kind="document", mime_type=mime, file_name=file_name)
        msg = self._user_message(user_id, chat_id, chat_type, language_code, reply_to_message_id)
        msg.document = self._document_json(stored)
        msg.file_data = data
        if caption is not None:
            msg.caption, msg.caption_entities = caption, _command_entities(caption)
        return self._enqueue("message", self._user_json(msg), msg)

    def press_button(
        self, user_id: int, chat_id: int, message_id: int, callback_data: str, *, language_code: str = "en"
    ) -> SentUpdate:
        """A user presses an inline button of a bot message: a ``callback_query`` update."""
        msg = self._msgs[chat_id][message_id]
        query_id = str(next(self._file_seq) * 7919 + user_id)
        self._callbacks[query_id] = chat_id
        payload = {
            "id": query_id,
            "from": self.user(user_id, language_code),
            "message": msg.to_json(),
            "chat_instance": f"ci{chat_id}",
            "data": callback_data,
        }
        return self._enqueue("callback_query", payload, msg)

    def _user_message(
        self, user_id: int, chat_id: int, chat_type: str, language_code: str, reply_to: int | None
    ) -> StoredMessage:
        msg = self._new_message(
            chat_id, self.user(user_id, language_code), from_bot=False, chat_type=chat_type
        )
        msg.reply_to_message_id = reply_to
        return msg

    def _user_json(self, msg: StoredMessage) -> dict[str, Any]:
        out = msg.to_json()
        if msg.reply_to_message_id is not None:
            replied = self._msgs[msg.chat_id].get(msg.reply_to_message_id)
            if replied is not None:
                out["reply_to_message"] = replied.to_json()
        return out

    @staticmethod
    def _document_json(stored: StoredFile) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
        }
        if stored.file_name:
            doc["file_name"] = stored.file_name
        if stored.mime_type:
            doc["mime_type"] = stored.mime_type
        return doc

    # ------------------------------------------------------------------ HTTP plumbing

    async def _read(self, request: web.Request) -> tuple[dict[str, str], dict[str, UploadedFile]]:
        fields: dict[str, str] = {}
        files: dict[str, UploadedFile] = {}
        ctype = request.content_type
        if ctype.startswith("multipart/"):
            fields, files = await _read_multipart(await request.multipart())
        elif ctype == "application/json":
            body = await request.json()
            fields = {k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}
        else:
            form = await request.post()
            fields = {k: str(v) for k, v in form.items()}
        fields.update({k: v for k, v in request.query.items() if k not in fields})
        return fields, files

    async def _handle(self, request: web.Request) -> web.Response:
        fields, files = await self._read(request)
        call = await self._process(
            request.match_info["method"], fields, files, token_ok=request.match_info["token"] == self.token
        )
        return web.json_response(call.response, status=call.status)

    async def _process(
        self,
        raw_method: str,
        fields: dict[str, str],
        files: dict[str, UploadedFile],
        *,
        token_ok: bool = True,
        via: str = "http",
    ) -> Call:
        method = _CANONICAL.get(raw_method.lower(), raw_method)
        call = Call(method=method, params=_decode_params(fields), files=files, at=self.clock(), via=via)
        try:
            if not token_ok:
                raise ApiError(401, "Unauthorized")
            self._check_faults(call)
            if method == "getUpdates":
                result = await self._get_updates(call)
            else:
                handler = getattr(self, f"_m_{method}", None)
                if handler is None:
                    raise ApiError(404, "Not Found")
                self._check_rate(call)
                result = handler(call)
            body: dict[str, Any] = {"ok": True, "result": result}
            call.result = result
        except ApiError as err:
            call.status, call.description = err.status, err.description
            body = {"ok": False, "error_code": err.status, "description": err.description}
            if err.parameters:
                body["parameters"] = err.parameters
            if err.status == 429:
                self.count_429 += 1
        call.response = body
        self.calls.append(call)
        self._notify()
        return call

    async def _download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        path = request.match_info["path"]
        for stored in self.files.values():
            if stored.file_path == path:
                return web.Response(body=stored.data, content_type="application/octet-stream")
        return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)

    # ------------------------------------------------------------------ faults and rates

    def _check_faults(self, call: Call) -> None:
        for fault in self._faults:
            if fault.times <= 0:
                continue
            if fault.method is None:
                if call.method in _STORM_EXEMPT:
                    continue
            elif fault.method != call.method:
                continue
            if fault.chat_id is not None and call.chat_id != fault.chat_id:
                continue
            fault.times -= 1
            if fault.status == 429 and fault.block and fault.parameters:
                until = call.at + float(fault.parameters["retry_after"])
                if call.chat_id is not None:
                    self._blocked_chat[call.chat_id] = max(self._blocked_chat.get(call.chat_id, 0.0), until)
                else:
                    self._blocked_global = max(self._blocked_global, until)
            raise ApiError(fault.status, fault.description, fault.parameters)

    @staticmethod
    def _too_many(wait: float) -> ApiError:
        n = max(1, math.ceil(wait))
        return ApiError(429, f"Too Many Requests: retry after {n}", {"retry_after": n})

    def _check_rate(self, call: Call) -> None:
        if call.method not in RATE_COUNTED:
            return
        now, chat = call.at, call.chat_id
        # A chat (or the bot) told to wait is refused until the wait is over, like real Telegram.
        for until in (self._blocked_global, self._blocked_chat.get(chat, 0.0)):
            if now < until:
                raise self._too_many(until - now)
        if not self.rate_limits_enabled:
            return
        lim = self.limits
        windows: list[tuple[deque[float], int, float, bool]] = [
            (self._global_ops, lim.global_, lim.global_window, True),
            (self._chat_ops[chat], lim.per_chat, lim.per_chat_window, False),
        ]
        if isinstance(chat, int) and chat < 0:
            windows.append((self._group_ops[chat], lim.per_group, lim.per_group_window, False))
        for ops, _limit, window, _ in windows:
            horizon = window - lim.slack
            while ops and ops[0] <= now - horizon:
                ops.popleft()
        for ops, limit, window, is_global in windows:
            if len(ops) >= limit:
                wait = ops[0] + window - lim.slack - now
                err = self._too_many(wait)
                until = now + float(err.parameters["retry_after"]) if err.parameters else now
                if is_global:
                    self._blocked_global = max(self._blocked_global, until)
                else:
                    self._blocked_chat[chat] = max(self._blocked_chat.get(chat, 0.0), until)
                raise err
        for ops, _, _, _ in windows:
            ops.append(now)

    # ------------------------------------------------------------------ validation helpers

    @staticmethod
    def _check_markup(markup: Any) -> dict[str, Any] | None:
        if markup in (None, ""):
            return None
        if not isinstance(markup, dict):
            raise bad_request("can't parse reply keyboard markup JSON object")
        for row in markup.get("inline_keyboard", []):
            for button in row:
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA:
                    raise bad_request("BUTTON_DATA_INVALID")
                if not button.get("text"):
                    raise bad_request("text buttons are unallowed in the inline keyboard")
        return markup

    @staticmethod
    def _check_text(text: Any, parse_mode: str | None) -> str:
        if not isinstance(text, str) or not text.strip():
            raise bad_request("message text is empty")
        plain = _plain_text(text, parse_mode)
        if len(plain) > MAX_TEXT:
            raise bad_request("message is too long")
        return plain

    @staticmethod
    def _check_caption(caption: Any, parse_mode: str | None) -> str | None:
        if caption in (None, ""):
            return None
        plain = _plain_text(str(caption), parse_mode)
        if len(plain) > MAX_CAPTION:
            raise bad_request("message caption is too long")
        return plain

    def _chat_id(self, call: Call) -> int:
        chat_id = call.params.get("chat_id")
        if not isinstance(chat_id, int):
            raise bad_request("chat not found")
        if chat_id in self._blocked_by:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat_id

    def _resolve_file(
        self, value: Any, files: dict[str, UploadedFile]
    ) -> tuple[bytes, str | None, str | None]:
        """(data, filename, existing file_id) for ``attach://x``, a known file_id, or an error."""
        if not isinstance(value, str) or not value:
            raise bad_request("there is no photo in the request")
        if value.startswith("attach://"):
            part = files.get(value.removeprefix("attach://"))
            if part is None:
                raise bad_request("wrong file identifier/HTTP URL specified")
            return part.data, part.filename, None
        if value in self.files:
            stored = self.files[value]
            return stored.data, stored.file_name, stored.file_id
        if value.startswith(("http://", "https://")):
            raise bad_request("failed to get HTTP URL content")
        raise bad_request("wrong file identifier/HTTP URL specified")

    def _photo_payload(self, data: bytes, existing: str | None) -> tuple[list[dict[str, Any]], bytes]:
        if existing is not None and self.files[existing].width is not None:
            return self._photo_sizes(self.files[existing]), data
        if len(data) > MAX_PHOTO_BYTES:
            raise ApiError(413, "Request Entity Too Large")
        size = _image_size(data)
        if size is None:
            raise bad_request("IMAGE_PROCESS_FAILED")
        w, h = size
        if w + h > 10000 or max(w, h) / max(1, min(w, h)) > 20:
            raise bad_request("PHOTO_INVALID_DIMENSIONS")
        stored = self._store_file(data, kind="photo", mime_type="image/jpeg", width=w, height=h)
        return self._photo_sizes(stored), data

    def _document_payload(self, data: bytes, filename: str | None, existing: str | None) -> dict[str, Any]:
        if existing is not None:
            return self._document_json(self.files[existing])
        if len(data) > MAX_DOCUMENT_BYTES:
            raise ApiError(413, "Request Entity Too Large")
        mime = mimetypes.guess_type(filename or "")[0] or "application/octet-stream"
        stored = self._store_file(data, kind="document", mime_type=mime, file_name=filename)
        return self._document_json(stored)

    def _editable(self, call: Call) -> StoredMessage:
        if "inline_message_id" in call.params:
            raise bad_request("MESSAGE_ID_INVALID")
        chat_id = self._chat_id(call)
        msg = self._msgs[chat_id].get(int(call.params.get("message_id", 0)))
        if msg is None or msg.deleted:
            raise bad_request("message to edit not found")
        if not msg.from_bot:
            raise bad_request("message can't be edited")
        return msg

    def _apply_edit(self, msg: StoredMessage, call: Call, changes: dict[str, Any]) -> Any:
        current = {k: getattr(msg, k) for k in changes}
        if current == changes:
            raise bad_request(NOT_MODIFIED)
        before = msg.to_json()
        for key, value in changes.items():
            setattr(msg, key, value)
        msg.edit_date = int(time.time())
        msg.edits.append({"method": call.method, "params": call.params, "before": before})
        return msg.to_json()

    # ------------------------------------------------------------------ methods

    def _m_getMe(self, call: Call) -> Any:
        return self.bot_user

    def _m_close(self, call: Call) -> Any:
        return True

    _m_logOut = _m_close

    async def _get_updates(self, call: Call) -> list[dict[str, Any]]:
        if self.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = int(call.params.get("offset", 0) or 0)
        limit = int(call.params.get("limit", 100) or 100)
        timeout = float(call.params.get("timeout", 0) or 0)
        allowed = call.params.get("allowed_updates") or None
        if offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]

        def ready() -> list[dict[str, Any]]:
            return [u for u in self._updates if allowed is None or any(k in u for k in allowed)][:limit]

        # A newer getUpdates terminates a held one with 409, like Telegram (two bot instances).
        self._poll_generation += 1
        generation = self._poll_generation
        if not ready() and timeout > 0 and not self._closing:
            self.polling += 1
            self._notify()
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        while not ready() and not self._closing and generation == self._poll_generation:
                            await self._changed.wait()
            finally:
                self.polling -= 1
            if generation != self._poll_generation:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; "
                    "make sure that only one bot instance is running",
                )
        return ready()

    def _m_setWebhook(self, call: Call) -> Any:
        url = str(call.params.get("url", ""))
        if url and not url.startswith(("http://", "https://")):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        self.webhook_url = url
        self.webhook_secret = call.params.get("secret_token") or None
        allowed = call.params.get("allowed_updates")
        self.webhook_allowed_updates = list(allowed) if isinstance(allowed, list) else None
        if call.params.get("drop_pending_updates"):
            self._updates.clear()
        if url and self._webhook_task is None:
            self._webhook_task = asyncio.get_running_loop().create_task(self._deliver_webhooks())
        return True

    def _m_deleteWebhook(self, call: Call) -> Any:
        self.webhook_url = ""
        self.webhook_allowed_updates = None
        if call.params.get("drop_pending_updates"):
            self._updates.clear()
        self._notify()  # the deliverer sees the URL gone and stops
        return True

    async def _stop_webhook(self) -> None:
        task, self._webhook_task = self._webhook_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._webhook_http is not None:
            await self._webhook_http.close()
            self._webhook_http = None

    async def _deliver_webhooks(self) -> None:
        """POST pending updates one by one to the webhook, like Telegram; retry until a 2xx."""
        if self._webhook_http is None:
            self._webhook_http = aiohttp.ClientSession()
        http = self._webhook_http
        try:
            while self.webhook_url and not self._closing:
                changed = self._changed
                if not self._updates:
                    await changed.wait()
                    continue
                update = self._updates[0]
                secret = self.webhook_secret
                headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
                reply: tuple[dict[str, str], dict[str, UploadedFile]] | None = None
                try:
                    async with http.post(
                        self.webhook_url,
                        json=update,
                        headers=headers,
                        timeout=aiohttp.ClientTimeout(total=10),
                    ) as resp:
                        status = resp.status
                        if 200 <= status < 300:
                            reply = await self._read_webhook_reply(resp)
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                self.webhook_deliveries.append((update["update_id"], status))
                if 200 <= status < 300:
                    if self._updates and self._updates[0] is update:
                        self._updates.pop(0)
                    if reply is not None and "method" in reply[0]:
                        # A method in the webhook answer is executed like a call; its result goes nowhere.
                        fields, files = reply
                        await self._process(fields.pop("method"), fields, files, via="webhook_reply")
                else:
                    await asyncio.sleep(0.2)  # Telegram backs off before redelivering
                self._notify()
        finally:
            if self._webhook_task is asyncio.current_task():
                self._webhook_task = None

    @staticmethod
    async def _read_webhook_reply(
        resp: aiohttp.ClientResponse,
    ) -> tuple[dict[str, str], dict[str, UploadedFile]] | None:
        """The bot's webhook answer: JSON or multipart (aiogram), possibly naming a method."""
        if resp.content_type.startswith("multipart/"):
            return await _read_multipart(MultipartReader(resp.headers, resp.content))
        try:
            body = json.loads(await resp.read() or b"null")
        except ValueError:
            return None
        if not isinstance(body, dict):
            return None
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}, {}

    def _m_getWebhookInfo(self, call: Call) -> Any:
        # Like the Bot API: the secret is never shown; allowed_updates only when setWebhook gave them.
        info: dict[str, Any] = {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self.webhook_url and self.webhook_allowed_updates is not None:
            info["allowed_updates"] = self.webhook_allowed_updates
        return info

    @staticmethod
    def _commands_key(call: Call) -> tuple[str, str]:
        scope = call.params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(call.params.get("language_code", ""))

    def _m_setMyCommands(self, call: Call) -> Any:
        commands = call.params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise bad_request(
                "BOT_COMMANDS_TOO_MUCH" if isinstance(commands, list) else "can't parse commands JSON"
            )
        for cmd in commands:
            name = str(cmd.get("command", ""))
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(cmd.get("description", ""))) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands[self._commands_key(call)] = commands
        return True

    def _m_getMyCommands(self, call: Call) -> Any:
        return self.commands.get(self._commands_key(call), [])

    def _m_deleteMyCommands(self, call: Call) -> Any:
        self.commands.pop(self._commands_key(call), None)
        return True

    def _bot_message(self, call: Call) -> StoredMessage:
        chat_id = self._chat_id(call)
        reply = call.params.get("reply_parameters")
        reply_to = (
            reply.get("message_id") if isinstance(reply, dict) else call.params.get("reply_to_message_id")
        )
        allow = (
            reply.get("allow_sending_without_reply")
            if isinstance(reply, dict)
            else call.params.get("allow_sending_without_reply")
        )
        replied = self._msgs[chat_id].get(reply_to) if isinstance(reply_to, int) else None
        if reply_to is not None and (replied is None or replied.deleted):
            if not allow:
                raise bad_request("message to be replied not found")
            reply_to = None
        msg = self._new_message(chat_id, self.bot_user, from_bot=True)
        msg.reply_to_message_id = reply_to
        # Telegram: the topic named by message_thread_id, else the topic of the message replied to,
        # else the forum's General topic (None here).
        thread = call.params.get("message_thread_id")
        if thread is None and replied is not None and reply_to is not None:
            thread = replied.message_thread_id
        msg.message_thread_id = thread if isinstance(thread, int) else None
        return msg

    def _m_sendMessage(self, call: Call) -> Any:
        parse_mode = call.params.get("parse_mode")
        text = self._check_text(call.params.get("text"), parse_mode)
        markup = self._check_markup(call.params.get("reply_markup"))
        msg = self._bot_message(call)
        msg.text, msg.parse_mode, msg.reply_markup = text, parse_mode, markup
        return msg.to_json()

    def _m_sendPhoto(self, call: Call) -> Any:
        parse_mode = call.params.get("parse_mode")
        caption = self._check_caption(call.params.get("caption"), parse_mode)
        markup = self._check_markup(call.params.get("reply_markup"))
        data, _, existing = self._resolve_file(call.params.get("photo"), call.files)
        sizes, data = self._photo_payload(data, existing)
        msg = self._bot_message(call)
        msg.photo, msg.file_data, msg.caption, msg.parse_mode, msg.reply_markup = (
            sizes,
            data,
            caption,
            parse_mode,
            markup,
        )
        return msg.to_json()

    def _m_sendDocument(self, call: Call) -> Any:
        parse_mode = call.params.get("parse_mode")
        caption = self._check_caption(call.params.get("caption"), parse_mode)
        markup = self._check_markup(call.params.get("reply_markup"))
        data, filename, existing = self._resolve_file(call.params.get("document"), call.files)
        doc = self._document_payload(data, filename, existing)
        msg = self._bot_message(call)
        msg.document, msg.file_data, msg.caption, msg.parse_mode, msg.reply_markup = (
            doc,
            data,
            caption,
            parse_mode,
            markup,
        )
        return msg.to_json()

    def _m_sendMediaGroup(self, call: Call) -> Any:
        media = call.params.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise bad_request("wrong number of media in the album: must be 2-10")
        prepared: list[tuple[str, Any, bytes, str | None, Any]] = []
        for item in media:
            if not isinstance(item, dict):
                raise bad_request("can't parse InputMedia JSON object")
            caption = self._check_caption(item.get("caption"), item.get("parse_mode"))
            data, filename, existing = self._resolve_file(item.get("media"), call.files)
            if item.get("type") == "photo":
                sizes, data = self._photo_payload(data, existing)
                prepared.append(("photo", sizes, data, caption, item.get("parse_mode")))
            else:
                doc = self._document_payload(data, filename, existing)
                prepared.append(("document", doc, data, caption, item.get("parse_mode")))
        group_id = f"{10**12 + next(self._group_seq)}"
        out = []
        for kind, payload, data, caption, parse_mode in prepared:
            msg = self._bot_message(call)
            if kind == "photo":
                msg.photo = payload
            else:
                msg.document = payload
            msg.file_data, msg.caption, msg.parse_mode = data, caption, parse_mode
            msg.media_group_id = group_id
            out.append(msg.to_json())
        return out

    def _m_editMessageText(self, call: Call) -> Any:
        parse_mode = call.params.get("parse_mode")
        text = self._check_text(call.params.get("text"), parse_mode)
        markup = self._check_markup(call.params.get("reply_markup"))
        msg = self._editable(call)
        if msg.text is None:
            raise bad_request("there is no text in the message to edit")
        return self._apply_edit(msg, call, {"text": text, "parse_mode": parse_mode, "reply_markup": markup})

    def _m_editMessageCaption(self, call: Call) -> Any:
        parse_mode = call.params.get("parse_mode")
        caption = self._check_caption(call.params.get("caption"), parse_mode)
        markup = self._check_markup(call.params.get("reply_markup"))
        msg = self._editable(call)
        if msg.text is not None:
            raise bad_request("there is no caption in the message to edit")
        return self._apply_edit(
            msg, call, {"caption": caption, "parse_mode": parse_mode, "reply_markup": markup}
        )

    def _m_editMessageReplyMarkup(self, call: Call) -> Any:
        markup = self._check_markup(call.params.get("reply_markup"))
        msg = self._editable(call)
        return self._apply_edit(msg, call, {"reply_markup": markup})

    def _m_editMessageMedia(self, call: Call) -> Any:
        media = call.params.get("media")
        if not isinstance(media, dict):
            raise bad_request("can't parse InputMedia JSON object")
        parse_mode = media.get("parse_mode")
        caption = self._check_caption(media.get("caption"), parse_mode)
        markup = self._check_markup(call.params.get("reply_markup"))
        msg = self._editable(call)
        data, filename, existing = self._resolve_file(media.get("media"), call.files)
        changes: dict[str, Any] = {
            "caption": caption,
            "parse_mode": parse_mode,
            "reply_markup": markup,
            "file_data": data,
            "text": None,
            "entities": None,
        }
        if media.get("type") == "photo":
            sizes, data = self._photo_payload(data, existing)
            changes.update(photo=sizes, document=None)
        else:
            changes.update(document=self._document_payload(data, filename, existing), photo=None)
        return self._apply_edit(msg, call, changes)

    def _m_sendChatAction(self, call: Call) -> Any:
        self._chat_id(call)
        return True

    def _m_deleteMessage(self, call: Call) -> Any:
        chat_id = self._chat_id(call)
        msg = self._msgs[chat_id].get(int(call.params.get("message_id", 0)))
        if msg is None or msg.deleted:
            raise bad_request("message to delete not found")
        msg.deleted = True
        return True

    def _m_answerCallbackQuery(self, call: Call) -> Any:
        query_id = str(call.params.get("callback_query_id", ""))
        if query_id not in self._callbacks or query_id in self.answered_callbacks:
            raise bad_request("query is too old and response timeout expired or query ID is invalid")
        if len(str(call.params.get("text", ""))) > MAX_CALLBACK_ANSWER:
            raise bad_request("MESSAGE_TOO_LONG")
        self.answered_callbacks[query_id] = call.params
        return True

    def _m_getFile(self, call: Call) -> Any:
        stored = self.files.get(str(call.params.get("file_id", "")))
        if stored is None:
            raise bad_request("invalid file_id")
        if len(stored.data) > MAX_DOWNLOAD_BYTES:
            raise bad_request("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
            "file_path": stored.file_path,
        }


@pytest.fixture
async def fake_telegram() -> AsyncIterator[FakeTelegram]:
    """A running ``FakeTelegram`` (rate limits on, real clock); register with ``pytest_plugins``."""
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def telegram_bot(fake_telegram: FakeTelegram) -> Bot:
    """A real aiogram ``Bot`` talking to ``fake_telegram`` (its session closes with the fake)."""
    return fake_telegram.make_bot()
