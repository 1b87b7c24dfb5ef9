"""A fake Discord gateway + REST API on 127.0.0.1, driven by the real discord.py 2.7 client.

It speaks what ``/work/shared/PLATFORMS.md`` describes: a websocket at ``/gateway`` (HELLO, heartbeat ACK,
IDENTIFY → READY, then ``INTERACTION_CREATE`` dispatches) and the REST routes a bot calls under
``/api/v10``: ``gateway/bot`` (the recommended ``shards``), ``users/@me``, ``oauth2/applications/@me``,
``PUT applications/{app}/commands`` (echoed with ids), ``POST interactions/{id}/{token}/callback``
(``with_response``), ``PATCH/GET/DELETE webhooks/{app}/{token}/messages/@original|{id}`` (JSON or
multipart ``payload_json`` + ``files[n]``),
``POST webhooks/{app}/{token}`` (followups), ``POST/PATCH/DELETE channels/{id}/messages[/{id}]``, and the
attachment download URLs it hands out (``/attachments/{id}/{filename}``). Every JSON answer has the
Content-Type exactly ``application/json`` (discord.py decodes nothing else). Message content over 2000
characters is refused (400, code 50035), as Discord does; so are commands whose option bounds Discord
refuses (:func:`command_problem`) and autocomplete answers it refuses (:func:`choices_problem`). What the
client refuses before sending is refused in ``slash``: option values outside the INTEGER range or the
registered min/max/length (:class:`OptionRefused`), and a command ``default_member_permissions`` hides
from a guild member (:class:`CommandHidden`).

What tests get:

* a message store (``fake.messages``: content, embeds, components, attachments with bytes, flags, the
  interaction that made it, the edit history, the ``allowed_mentions`` sent and the mentions that would
  have pinged someone: ``pings``) and a call log (``fake.calls``);
* simulated users: ``slash(user, channel, "generate", {...}, attachments=[...])``, ``autocomplete(...)``,
  ``click(user, message_id, custom_id)`` (``post_message`` leaves buttons of any ``custom_id``); each
  returns the :class:`FakeInteraction` whose callback and original message a test can inspect;
  ``wait_for(predicate)`` waits on any change;
* guilds and shards, as Discord has them: ``add_guild(shard=, shard_count=)`` makes a guild whose id
  Discord routes to that shard (``(guild_id >> 22) % count``), ``add_channel(guild_id)`` a text channel
  in it; interactions in its channels carry ``guild_id`` and a ``member``. Each connection identifies as
  ``shard: [id, count]`` (4010 Invalid shard when ``id >= count``) and gets only its shards' events: its
  guilds in READY (unavailable) and, with the GUILDS intent, one GUILD_CREATE each; the interactions of
  its guilds (DMs: shard 0). ``recommended_shards`` is what ``GET gateway/bot`` answers;
  ``identifies`` records each IDENTIFY's ``(shard_id, shard_count)``;
* faults: ``inject_429(kind, times, retry_after)`` (with a ``Via`` header, so discord.py retries),
  ``inject_error(kind, status, code, message)``, token
  expiry after ``token_ttl_s`` on the injectable ``clock`` or at once with ``expire_token``/
  ``expire_all_tokens`` (401, code 50027), ``delete_message`` (then edits get 404, code 10008).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yarl
from aiohttp import BodyPartReader, WSMsgType, web

if TYPE_CHECKING:
    from core.config import DiscordSettings

JSON = dict[str, Any]

API_PREFIX = "/api/v10"
TOKEN_TTL_S = 15 * 60
DEFAULT_ATTACHMENT_LIMIT = 10 * 1024 * 1024
MAX_CONTENT = 2000
INTEGER_LIMIT = 2**53  # Discord's INTEGER option range is -2^53..2^53
MAX_OPTION_LENGTH = 6000  # a STRING option's max_length (and min_length) is 0..6000
MAX_CHOICES, MAX_CHOICE_NAME = 25, 100  # autocomplete answers and choices
ADMINISTRATOR = 1 << 3
# Interaction callback types (Discord API docs)
PONG, CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE, AUTOCOMPLETE_RESULT = (
    1,
    4,
    5,
    6,
    7,
    8,
)
EPHEMERAL = 1 << 6
# Permission bits (Discord's permissions bitfield) the fake checks on the bot's channel requests.
VIEW_CHANNEL, SEND_MESSAGES, EMBED_LINKS, ATTACH_FILES = 1 << 10, 1 << 11, 1 << 14, 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
BOT_PERMISSIONS = VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES | READ_MESSAGE_HISTORY
LOADING = 1 << 7
GUILDS_INTENT = 1 << 0
# A guild member's permissions in an interaction when a test names none: an ordinary member's.
MEMBER_PERMISSIONS = VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES | READ_MESSAGE_HISTORY
# Application command option types
OPTION_TYPES = {"string": 3, "integer": 4, "boolean": 5, "number": 10, "attachment": 11}


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Exactly "application/json": aiohttp's json_response adds "; charset=utf-8", which discord.py rejects.
    return web.Response(
        body=json.dumps(data).encode(), status=status, content_type="application/json", headers=headers
    )


def _error(status: int, code: int, message: str) -> web.Response:
    return _json({"message": message, "code": code}, status)


_MENTION_RE = re.compile(r"@(everyone|here)\b|<@!?(\d+)>|<@&(\d+)>")


def would_ping(content: str, allowed_mentions: JSON | None) -> list[str]:
    """Who Discord would notify for ``content`` sent with ``allowed_mentions``: ``@everyone``/``@here``,
    ``user:<id>``, ``role:<id>``. Without ``allowed_mentions`` Discord parses every kind from the content;
    with it, only the kinds in ``parse`` and the ids listed in ``users``/``roles`` (``@here`` counts as
    ``everyone``)."""
    allowed = allowed_mentions or {}
    parse = {"everyone", "users", "roles"} if allowed_mentions is None else set(allowed.get("parse") or [])
    users = {str(u) for u in allowed.get("users") or []}
    roles = {str(r) for r in allowed.get("roles") or []}
    out = []
    for m in _MENTION_RE.finditer(content):
        if m[1] and "everyone" in parse:
            out.append("@" + m[1])
        elif m[2] and ("users" in parse or m[2] in users):
            out.append(f"user:{m[2]}")
        elif m[3] and ("roles" in parse or m[3] in roles):
            out.append(f"role:{m[3]}")
    return out


class OptionRefused(ValueError):
    """The Discord client would not send this option value (out of its type's range or bounds)."""


class CommandHidden(PermissionError):
    """The Discord client does not offer this command to this member (``default_member_permissions``)."""


def command_problem(command: JSON) -> str | None:
    """What Discord's ``PUT applications/{app}/commands`` refuses (400, 50035) in one command: more than
    25 options, an INTEGER/NUMBER bound beyond ±2^53, a STRING length bound beyond 0..6000, min over max,
    ``default_member_permissions`` that is not a permission bit set (a number, or its digits: discord.py
    sends an int, Discord answers a string), a name over 32 characters or a description (or one of its
    translations) outside 1..100."""
    options = command.get("options") or []
    if len(options) > 25:
        return f"{command.get('name')}: more than 25 options"
    for item in (command, *options):
        texts = [item.get("description") or "", *(item.get("description_localizations") or {}).values()]
        names = [item.get("name") or "", *(item.get("name_localizations") or {}).values()]
        if any(not 1 <= len(text) <= 100 for text in texts) or any(not 1 <= len(n) <= 32 for n in names):
            return f"{command.get('name')}.{item.get('name')}: a name or description of the wrong length"
    perms = command.get("default_member_permissions")
    if perms is not None and not (isinstance(perms, int) or (isinstance(perms, str) and perms.isdigit())):
        return f"{command.get('name')}: default_member_permissions {perms!r} is not a bit set string"
    for opt in options:
        kind, name = opt.get("type"), f"{command.get('name')}.{opt.get('name')}"
        lo_key, hi_key, limit, floor = (
            ("min_length", "max_length", MAX_OPTION_LENGTH, 0)
            if kind == OPTION_TYPES["string"]
            else ("min_value", "max_value", INTEGER_LIMIT, -INTEGER_LIMIT)
        )
        if kind == OPTION_TYPES["string"] and ("min_value" in opt or "max_value" in opt):
            return f"{name}: min_value/max_value on a STRING option"
        lo, hi = opt.get(lo_key), opt.get(hi_key)
        for bound, least in ((lo, floor), (hi, 1 if kind == OPTION_TYPES["string"] else floor)):
            if bound is not None and not least <= bound <= limit:
                return f"{name}: {bound} is outside {least}..{limit}"
        if lo is not None and hi is not None and lo > hi:
            return f"{name}: {lo_key} {lo} is over {hi_key} {hi}"
        if opt.get("autocomplete") and opt.get("choices"):
            return f"{name}: autocomplete with choices"
    return None


def choices_problem(option: JSON, choices: list[JSON]) -> str | None:
    """What Discord refuses in an autocomplete answer (400, 50035): over 25 choices, a name outside
    1..100 characters, a value not of the option's type (or a STRING value over 100 characters)."""
    if len(choices) > MAX_CHOICES:
        return f"{len(choices)} choices"
    kind = option.get("type")
    for choice in choices:
        name, value = choice.get("name"), choice.get("value")
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_CHOICE_NAME:
            return f"choice name {name!r}"
        if kind == OPTION_TYPES["string"]:
            ok = isinstance(value, str) and len(value) <= MAX_CHOICE_NAME
        elif kind == OPTION_TYPES["integer"]:
            ok = isinstance(value, int) and not isinstance(value, bool) and abs(value) <= INTEGER_LIMIT
        else:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok:
            return f"choice value {value!r} for option type {kind}"
    return None


def may_use_command(command: JSON, member_permissions: int | None) -> bool:
    """Whether the client offers ``command`` to a guild member with ``member_permissions`` (None: a DM,
    where ``default_member_permissions`` does not apply). ``"0"`` leaves it to administrators."""
    required = command.get("default_member_permissions")
    if member_permissions is None or required is None or member_permissions & ADMINISTRATOR:
        return True
    bits = int(required)
    return bits != 0 and member_permissions & bits == bits


def _check_option(name: str, kind: int, spec: JSON, value: Any) -> None:
    """What the Discord client checks before sending a command: INTEGER within ±2^53, ``min_value``/
    ``max_value``, ``min_length``/``max_length`` — the user sees the bound and cannot send."""
    if kind in (OPTION_TYPES["integer"], OPTION_TYPES["number"]) and isinstance(value, int | float):
        lo, hi = spec.get("min_value", -INTEGER_LIMIT), spec.get("max_value", INTEGER_LIMIT)
        if not -INTEGER_LIMIT <= value <= INTEGER_LIMIT or not lo <= value <= hi:
            raise OptionRefused(f"{name}={value} is outside {lo}..{hi}")
    text = kind == OPTION_TYPES["string"] and isinstance(value, str)
    if text and not spec.get("min_length", 0) <= len(value) <= spec.get("max_length", 6000):
        raise OptionRefused(f"{name} has {len(value)} characters")


def _too_long(payload: Any) -> bool:
    """Discord refuses message content over 2000 characters (also inside a callback's ``data``)."""
    if not isinstance(payload, dict):
        return False
    inner = payload.get("data")
    content = payload.get("content") or (inner.get("content") if isinstance(inner, dict) else None)
    return isinstance(content, str) and len(content) > MAX_CONTENT


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}000+00:00"


@dataclass
class StoredFile:
    id: int
    filename: str
    data: bytes
    content_type: str | None = None


@dataclass
class StoredMessage:
    """A message as the fake holds it. ``history`` has a snapshot (content, components, files) per edit.

    ``pings`` collects what every create or edit carrying content would have notified (see
    :func:`would_ping`). Discord notifies on an edit only when it fills a deferred ("thinking") response;
    counting every edit is stricter, so "no pings" here means none on Discord."""

    id: int
    channel_id: int
    content: str = ""
    embeds: list[JSON] = field(default_factory=list)
    components: list[JSON] = field(default_factory=list)
    attachments: list[StoredFile] = field(default_factory=list)
    flags: int = 0
    interaction_id: int | None = None
    webhook_id: int | None = None
    author_id: int = 0
    deleted: bool = False
    created_at: float = 0.0
    history: list[JSON] = field(default_factory=list)
    allowed_mentions: JSON | None = None  # as last sent with content (None: never sent)
    pings: list[str] = field(default_factory=list)

    @property
    def custom_ids(self) -> list[str]:
        return [c.get("custom_id", "") for row in self.components for c in row.get("components", [])]

    @property
    def labels(self) -> list[str]:
        return [c.get("label", "") for row in self.components for c in row.get("components", [])]

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def edits(self) -> int:
        return max(0, len(self.history) - 1)

    def snapshot(self) -> JSON:
        return {
            "content": self.content,
            "custom_ids": self.custom_ids,
            "files": [f.filename for f in self.attachments],
            "flags": self.flags,
            "allowed_mentions": self.allowed_mentions,
        }


@dataclass
class FakeInteraction:
    id: int
    token: str
    type: int
    user_id: int
    channel_id: int
    created_at: float
    name: str = ""
    focused: str | None = None  # the option an autocomplete interaction is about
    custom_id: str = ""
    message_id: int | None = None  # the message a component lives on
    callback: JSON | None = None  # the body of the interaction callback
    original_id: int | None = None  # the message the response created
    expired: bool = False

    @property
    def choices(self) -> list[JSON]:
        """Autocomplete choices the bot answered with."""
        return list(((self.callback or {}).get("data") or {}).get("choices", []))


@dataclass
class Call:
    method: str
    path: str
    kind: str
    payload: Any
    files: list[str]
    status: int = 200
    at: float = 0.0  # the fake's clock when the call arrived


@dataclass
class _Fault:
    kind: str
    times: int
    retry_after: float
    status: int = 429
    code: int = 0
    message: str = ""


class FakeDiscord:
    """Gateway + REST on one free port of 127.0.0.1. ``async with FakeDiscord() as fake: ...``."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        token_ttl_s: float = TOKEN_TTL_S,
        attachment_size_limit: int = DEFAULT_ATTACHMENT_LIMIT,
        enforced_upload_limit: int | None = None,
        recommended_shards: int = 1,
    ) -> None:
        self.clock = clock
        self.token_ttl_s = token_ttl_s
        self.attachment_size_limit = attachment_size_limit
        # What uploads are really checked against (default: the announced limit); lower it to make Discord
        # refuse files that fit the announced one, as a full request sometimes is.
        self.enforced_upload_limit = enforced_upload_limit or attachment_size_limit
        self.application_id = 900000000000000001
        self.bot_user = {
            "id": str(self.application_id),
            "username": "comfybot",
            "discriminator": "0",
            "global_name": "comfybot",
            "avatar": None,
            "bot": True,
        }
        self.token = "MTAxMDEwMTAxMDEwMTAxMDEw.GaBcDe.fake-token-for-tests-only-xxxxxxxxxxx"
        self.messages: dict[int, StoredMessage] = {}
        self.interactions: dict[int, FakeInteraction] = {}
        self.commands: list[JSON] = []
        self.calls: list[Call] = []
        self.files: dict[int, StoredFile] = {}
        self.count_429 = 0
        self.reject_token = False  # answer users/@me with 401, as Discord does for a bad token
        # The bot's permissions per channel (``BOT_PERMISSIONS`` where unset): sent as an interaction's
        # ``app_permissions`` and checked on channel sends/edits (403 50013 as Discord answers).
        self.bot_permissions: dict[int, int] = {}
        self.dm_channels: dict[int, int] = {}  # user id -> the bot's DM channel with them
        self.dms_closed: set[int] = set()  # users who do not accept DMs from the bot: 403 50007
        self.identified = 0
        self.identifies: list[tuple[int, int]] = []  # each IDENTIFY's (shard_id, shard_count)
        self.recommended_shards = recommended_shards  # GET gateway/bot's "shards"
        self.guilds: dict[int, JSON] = {}
        self.channel_guilds: dict[int, int] = {}  # a guild text channel -> its guild
        self._guild_seq = itertools.count(1000)
        self._ids = itertools.count(1_100_000_000_000_000_000)
        self._faults: list[_Fault] = []
        self._changed = asyncio.Condition()
        self._sockets: list[web.WebSocketResponse] = []
        self._shards: dict[web.WebSocketResponse, tuple[int, int]] = {}  # identified: (shard_id, count)
        self._seq = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._ready = asyncio.Event()

    # --- lifecycle --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_base(self) -> str:
        return self.url + API_PREFIX

    @property
    def gateway_url(self) -> yarl.URL:
        return yarl.URL(f"ws://127.0.0.1:{self._port}/gateway")

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._ws)
        app.router.add_get("/attachments/{id}/{filename}", self._download)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self._port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def settings(self, **values: Any) -> DiscordSettings:
        """``DiscordSettings`` for a front end talking to this fake (``DISCORD_API_BASE``,
        ``DISCORD_GATEWAY_URL``), with ``values`` on top."""
        from core.config import DiscordSettings  # the fake itself needs nothing of comfybot

        return DiscordSettings(
            **{"bot_token": self.token, "api_base": self.url, "gateway_url": str(self.gateway_url), **values}
        )

    def env(self) -> dict[str, str]:
        """The environment of a ``comfybot run`` talking to this fake."""
        return {
            "DISCORD_BOT_TOKEN": self.token,
            "DISCORD_API_BASE": self.url,
            "DISCORD_GATEWAY_URL": str(self.gateway_url),
        }

    def patch(self, monkeypatch: Any) -> None:
        """Point discord.py's process-wide URLs at this fake (``monkeypatch`` undoes it after the test),
        for a bare discord.py client; comfybot's front end takes :meth:`settings` instead."""
        import discord

        monkeypatch.setattr(discord.http.Route, "BASE", self.api_base)
        monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", self.gateway_url)

    # --- waiting ----------------------------------------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 20.0) -> Any:  # noqa: ASYNC109
        """Wait until ``predicate()`` is truthy (checked on every change) and return its value."""
        async with asyncio.timeout(timeout), self._changed:
            while True:
                value = predicate()
                if value:
                    return value
                await self._changed.wait()

    async def wait_ready(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            await self._ready.wait()

    # --- faults -----------------------------------------------------------------------------------

    def inject_429(self, kind: str = "edit", *, times: int = 1, retry_after: float = 0.2) -> None:
        """The next ``times`` calls of ``kind`` (``edit``, ``followup``, ``channel_send``, ``channel_edit``,
        ``callback``) get a 429 with a ``Via`` header and ``retry_after``, as Discord's edge answers."""
        self._faults.append(_Fault(kind, times, retry_after))

    def inject_error(self, kind: str, status: int, code: int, message: str, *, times: int = 1) -> None:
        """The next ``times`` calls of ``kind`` fail as Discord answers, e.g. ``403, 50013, "Missing
        Permissions"`` when the bot may not send files or write in the channel. ``kind`` ``me`` is the
        login's ``GET users/@me``; ``gateway`` fails the websocket handshake with ``status``."""
        self._faults.append(_Fault(kind, times, 0.0, status, code, message))

    def expire_token(self, interaction_id: int) -> None:
        self.interactions[interaction_id].expired = True

    def expire_all_tokens(self) -> None:
        for inter in self.interactions.values():
            inter.expired = True

    async def delete_message(self, message_id: int) -> None:
        self.messages[message_id].deleted = True
        await self._notify()

    # --- queries ----------------------------------------------------------------------------------

    def channel_messages(self, channel_id: int, *, include_ephemeral: bool = True) -> list[StoredMessage]:
        return [
            m
            for m in self.messages.values()
            if m.channel_id == channel_id and not m.deleted and (include_ephemeral or not m.ephemeral)
        ]

    def original(self, interaction: FakeInteraction) -> StoredMessage | None:
        inter = self.interactions[interaction.id]
        return None if inter.original_id is None else self.messages.get(inter.original_id)

    def calls_of(self, kind: str) -> list[Call]:
        return [c for c in self.calls if c.kind == kind]

    # --- guilds and shards -------------------------------------------------------------------------

    def add_guild(self, *, shard: int = 0, shard_count: int = 1, name: str = "") -> int:
        """A guild the bot is in, whose id Discord routes to ``shard`` of ``shard_count``."""
        if not 0 <= shard < shard_count:
            raise ValueError(f"shard {shard} of {shard_count}")
        guild_id = ((next(self._guild_seq) * shard_count + shard) << 22) | 7
        self.guilds[guild_id] = {"id": str(guild_id), "name": name or f"guild {len(self.guilds) + 1}"}
        return guild_id

    def add_channel(self, guild_id: int) -> int:
        """A text channel of ``guild_id``."""
        channel_id = next(self._ids)
        self.channel_guilds[channel_id] = guild_id
        return channel_id

    @staticmethod
    def shard_of(guild_id: int | None, shard_count: int) -> int:
        """Discord's routing: a guild's events go to shard ``(guild_id >> 22) % count``, DMs to 0."""
        return 0 if guild_id is None else (guild_id >> 22) % shard_count

    def sockets_for(self, guild_id: int | None) -> list[web.WebSocketResponse]:
        """The identified connections Discord sends ``guild_id``'s events to."""
        return [ws for ws, (sid, n) in self._shards.items() if self.shard_of(guild_id, n) == sid]

    def _text_channel(self, channel_id: int) -> JSON:
        return {
            "id": str(channel_id),
            "type": 0,
            "guild_id": str(self.channel_guilds[channel_id]),
            "name": f"channel-{channel_id}",
            "position": 0,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }

    def _guild_create(self, guild_id: int) -> JSON:
        guild = self.guilds[guild_id]
        return {
            **guild,
            "unavailable": False,
            "owner_id": "1",
            "member_count": 1,
            "large": False,
            "joined_at": _iso(time.time()),
            "features": [],
            "roles": [{"id": guild["id"], "name": "@everyone", "permissions": "0", "position": 0}],
            "emojis": [],
            "stickers": [],
            "channels": [self._text_channel(c) for c, g in self.channel_guilds.items() if g == guild_id],
            "members": [],
            "voice_states": [],
            "presences": [],
            "threads": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
        }

    # --- simulated users --------------------------------------------------------------------------

    def _user(self, user_id: int) -> JSON:
        return {
            "id": str(user_id),
            "username": f"user{user_id}",
            "discriminator": "0",
            "global_name": f"User {user_id}",
            "avatar": None,
        }

    def _new_interaction(self, type_: int, user_id: int, channel_id: int, **extra: Any) -> FakeInteraction:
        inter = FakeInteraction(
            id=next(self._ids),
            token=f"itk-{next(self._ids)}",
            type=type_,
            user_id=user_id,
            channel_id=channel_id,
            created_at=self.clock(),
            **extra,
        )
        self.interactions[inter.id] = inter
        return inter

    def _interaction_payload(
        self, inter: FakeInteraction, data: JSON, locale: str, member_permissions: int | None = None
    ) -> JSON:
        guild_id = self.channel_guilds.get(inter.channel_id)
        if guild_id is not None:  # in a guild: guild_id and the member, not a bare user
            perms = MEMBER_PERMISSIONS if member_permissions is None else member_permissions
            member = {
                "user": self._user(inter.user_id),
                "roles": [],
                "joined_at": _iso(time.time()),
                "deaf": False,
                "mute": False,
                "flags": 0,
                "permissions": str(perms),
            }
            place: JSON = {
                "guild_id": str(guild_id),
                "guild": {"id": str(guild_id), "locale": "en-US", "features": []},
                "guild_locale": "en-US",
                "member": member,
                "channel": {**self._text_channel(inter.channel_id), "permissions": str(perms)},
                "context": 0,
                "authorizing_integration_owners": {"0": str(guild_id)},
            }
        else:
            place = {
                "channel": {
                    "id": str(inter.channel_id),
                    "type": 1,
                    "recipients": [self._user(inter.user_id)],
                },
                "user": self._user(inter.user_id),
                "context": 1,
                "authorizing_integration_owners": {},
            }
        return {
            "id": str(inter.id),
            "application_id": str(self.application_id),
            "type": inter.type,
            "token": inter.token,
            "version": 1,
            "attachment_size_limit": self.attachment_size_limit,
            "app_permissions": str(self.bot_permissions.get(inter.channel_id, BOT_PERMISSIONS)),
            "channel_id": str(inter.channel_id),
            "locale": locale,
            "entitlements": [],
            "data": data,
            **place,
        }

    def _option_specs(self, name: str) -> dict[str, JSON]:
        cmd = next((c for c in self.commands if c["name"] == name), None)
        if cmd is None:
            return {}
        return {o["name"]: o for o in cmd.get("options", [])}

    def _command_options(self, name: str, options: dict[str, Any], focused: str | None) -> list[JSON]:
        specs = self._option_specs(name)
        out = []
        for key, value in options.items():
            kind = specs.get(key, {}).get("type") or (
                OPTION_TYPES["integer"] if isinstance(value, int) else OPTION_TYPES["string"]
            )
            if key != focused:  # a half-typed value is sent to autocomplete as it is
                _check_option(key, kind, specs.get(key, {}), value)
            opt: JSON = {"name": key, "type": kind, "value": value}
            if key == focused:
                opt["focused"] = True
            out.append(opt)
        return out

    async def slash(
        self,
        user_id: int,
        channel_id: int,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        attachments: dict[str, tuple[str, bytes, str | None]] | None = None,
        declared_sizes: dict[str, int] | None = None,
        locale: str = "en-US",
        member_permissions: int | None = None,
    ) -> FakeInteraction:
        """A user runs ``/name``. ``attachments`` maps an option to ``(filename, bytes, content_type)``;
        ``declared_sizes`` overrides the size Discord announces (a huge file without sending its bytes).
        ``member_permissions``: the user is a guild member with these permission bits, so a command's
        ``default_member_permissions`` applies (:class:`CommandHidden` when the client would not offer it);
        the default is a DM. Values outside an option's bounds raise :class:`OptionRefused`, as the
        client refuses to send them."""
        registered = next((c for c in self.commands if c["name"] == name), None)
        if registered is not None and not may_use_command(registered, member_permissions):
            raise CommandHidden(f"/{name} is not offered to a member with permissions {member_permissions}")
        options = dict(options or {})
        resolved: dict[str, JSON] = {}
        for opt, (filename, content, content_type) in (attachments or {}).items():
            stored = StoredFile(next(self._ids), filename, content, content_type)
            self.files[stored.id] = stored
            size = (declared_sizes or {}).get(opt, len(content))
            url = f"{self.url}/attachments/{stored.id}/{filename}"
            resolved[str(stored.id)] = {
                "id": str(stored.id),
                "filename": filename,
                "size": size,
                "url": url,
                "proxy_url": url,
                **({"content_type": content_type} if content_type else {}),
            }
            options[opt] = str(stored.id)
        cmd = next((c for c in self.commands if c["name"] == name), None)
        data: JSON = {
            "id": cmd["id"] if cmd else str(next(self._ids)),
            "name": name,
            "type": 1,
            "options": self._command_options(name, options, None),
        }
        if resolved:
            data["resolved"] = {"attachments": resolved}
        inter = self._new_interaction(2, user_id, channel_id, name=name)
        payload = self._interaction_payload(inter, data, locale, member_permissions)
        await self._dispatch("INTERACTION_CREATE", payload)
        return inter

    async def autocomplete(
        self,
        user_id: int,
        channel_id: int,
        name: str,
        options: dict[str, Any],
        focused: str,
        *,
        locale: str = "en-US",
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> list[JSON]:
        """A user types in option ``focused``; returns the choices the bot answered."""
        cmd = next((c for c in self.commands if c["name"] == name), None)
        data = {
            "id": cmd["id"] if cmd else "0",
            "name": name,
            "type": 1,
            "options": self._command_options(name, options, focused),
        }
        inter = self._new_interaction(4, user_id, channel_id, name=name, focused=focused)
        await self._dispatch("INTERACTION_CREATE", self._interaction_payload(inter, data, locale))
        await self.wait_for(lambda: inter.callback is not None, timeout)
        return inter.choices

    async def click(
        self, user_id: int, message_id: int, custom_id: str, *, locale: str = "en-US"
    ) -> FakeInteraction:
        """A user presses the button ``custom_id`` on ``message_id``."""
        msg = self.messages[message_id]
        inter = self._new_interaction(3, user_id, msg.channel_id, custom_id=custom_id, message_id=message_id)
        data = {"custom_id": custom_id, "component_type": 2}
        payload = self._interaction_payload(inter, data, locale)
        payload["message"] = self._message_payload(msg)
        await self._dispatch("INTERACTION_CREATE", payload)
        return inter

    def post_message(self, channel_id: int, content: str, custom_ids: list[str]) -> StoredMessage:
        """A bot message with buttons ``custom_ids`` (five a row), as an older version may have left."""
        buttons = [{"type": 2, "style": 2, "label": str(i), "custom_id": c} for i, c in enumerate(custom_ids)]
        rows = [{"type": 1, "components": buttons[i : i + 5]} for i in range(0, len(buttons), 5)]
        return self._new_message(channel_id, {"content": content, "components": rows}, [])

    # --- gateway ----------------------------------------------------------------------------------

    async def _dispatch(self, event: str, data: JSON) -> None:
        """Send ``event`` to the connection(s) of the shard Discord routes it to (its ``guild_id``'s; DMs:
        shard 0), waiting for one to be identified."""
        guild_id = int(data["guild_id"]) if data.get("guild_id") else None
        await self.wait_ready()
        targets = await self.wait_for(lambda: self.sockets_for(guild_id), 10.0)
        for ws in targets[-1:]:  # the newest session of that shard (an older one is being replaced)
            await ws.send_str(json.dumps({"op": 0, "t": event, "s": next(self._seq), "d": data}))

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        refused = self._fault("gateway")  # the websocket handshake fails (e.g. 503 from Discord's edge)
        if refused is not None:
            return refused
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                op = frame.get("op")
                if op == 1:
                    await ws.send_str(json.dumps({"op": 11}))
                elif op == 2 and not await self._identify(ws, frame.get("d") or {}):
                    break
        finally:
            self._shards.pop(ws, None)
            if ws in self._sockets:
                self._sockets.remove(ws)
            if not self._sockets:
                self._ready.clear()
        return ws

    async def _identify(self, ws: web.WebSocketResponse, identify: JSON) -> bool:
        """READY for the shard IDENTIFY names (``[0, 1]`` when it names none), then GUILD_CREATE of each
        of its guilds when the GUILDS intent is on; False (closed 4010) for a shard outside its count."""
        shard_id, count = (int(v) for v in identify.get("shard") or (0, 1))
        if not 0 <= shard_id < count:
            await ws.close(code=4010, message=b"Invalid shard")
            return False
        self.identified += 1
        self.identifies.append((shard_id, count))
        self._sockets.append(ws)
        self._shards[ws] = (shard_id, count)
        mine = [g for g in self.guilds if self.shard_of(g, count) == shard_id]
        ready = {
            "v": 10,
            "user": self.bot_user,
            "guilds": [{"id": str(g), "unavailable": True} for g in mine],
            "session_id": f"s{self.identified}",
            "resume_gateway_url": str(self.gateway_url),
            "shard": [shard_id, count],
            "application": {"id": str(self.application_id), "flags": 0},
        }
        await ws.send_str(json.dumps({"op": 0, "t": "READY", "s": next(self._seq), "d": ready}))
        if int(identify.get("intents") or 0) & GUILDS_INTENT:
            for g in mine:
                frame = {"op": 0, "t": "GUILD_CREATE", "s": next(self._seq), "d": self._guild_create(g)}
                await ws.send_str(json.dumps(frame))
        self._ready.set()
        await self._notify()
        return True

    # --- REST -------------------------------------------------------------------------------------

    async def _download(self, request: web.Request) -> web.StreamResponse:
        stored = self.files.get(int(request.match_info["id"]))
        if stored is None:
            return web.Response(status=404)
        return web.Response(body=stored.data, content_type=stored.content_type or "application/octet-stream")

    async def _body(self, request: web.Request) -> tuple[Any, list[tuple[str, bytes, str | None]]]:
        if request.content_type.startswith("multipart/"):
            payload: Any = None
            files: list[tuple[str, bytes, str | None]] = []
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                # discord.py sends a flat form (payload_json + files[n]), never a nested multipart part.
                if not isinstance(part, BodyPartReader):
                    raise web.HTTPBadRequest(text="nested multipart is not supported")
                data = await part.read()
                if part.name == "payload_json":
                    payload = json.loads(data)
                else:
                    files.append((part.filename or "file", bytes(data), part.headers.get("Content-Type")))
            return payload or {}, files
        raw = await request.read()
        return (json.loads(raw) if raw else None), []

    def _fault(self, kind: str) -> web.Response | None:
        for fault in self._faults:
            if fault.kind == kind and fault.times > 0:
                fault.times -= 1
                if fault.status != 429:
                    return _error(fault.status, fault.code, fault.message)
                self.count_429 += 1
                return _json(
                    {
                        "message": "You are being rate limited.",
                        "retry_after": fault.retry_after,
                        "global": False,
                    },
                    429,
                    headers={"Via": "1.1 google", "Retry-After": str(max(1, int(fault.retry_after)))},
                )
        return None

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        parts = request.match_info["tail"].strip("/").split("/")
        payload, files = await self._body(request)
        kind, handler = self._route(request.method, parts)
        call = Call(
            request.method, "/" + "/".join(parts), kind, payload, [f[0] for f in files], at=self.clock()
        )
        self.calls.append(call)
        too_big = next((f for f in files if len(f[1]) > self.enforced_upload_limit), None)
        if too_big is not None:
            response = _error(413, 40005, "Request entity too large")
        elif _too_long(payload):
            response = _error(400, 50035, "Invalid Form Body: content must be 2000 or fewer in length.")
        else:
            response = self._fault(kind) or await handler(parts, request, payload, files)
        call.status = response.status
        await self._notify()
        return response

    def _route(self, method: str, p: list[str]) -> tuple[str, Any]:
        n = len(p)
        if method == "GET" and p == ["gateway", "bot"]:
            return "gateway_bot", self._gateway_bot
        if method == "GET" and p == ["users", "@me"]:
            return "me", self._me
        if method == "POST" and p == ["users", "@me", "channels"]:
            return "dm_open", self._dm_open
        if method == "GET" and p == ["oauth2", "applications", "@me"]:
            return "app", self._app
        if p[:1] == ["applications"] and p[-1] == "commands":
            return "commands", self._commands
        if method == "POST" and p[:1] == ["interactions"] and n == 4:
            return "callback", self._callback
        if p[:1] == ["webhooks"] and n == 3 and method == "POST":
            return "followup", self._followup
        if p[:1] == ["webhooks"] and n == 5 and p[3] == "messages":
            return {"PATCH": "edit", "GET": "get", "DELETE": "delete"}.get(
                method, "other"
            ), self._webhook_message
        if p[:1] == ["channels"] and n == 3 and method == "POST":
            return "channel_send", self._channel_send
        if p[:1] == ["channels"] and n == 4:
            return {"PATCH": "channel_edit", "DELETE": "channel_delete", "GET": "channel_get"}.get(
                method, "other"
            ), self._channel_message
        return "unknown", self._unknown

    async def _unknown(self, *_: Any) -> web.Response:
        return _error(404, 0, "404: Not Found")

    async def _gateway_bot(self, *_: Any) -> web.Response:
        if self.reject_token:
            return _error(401, 0, "401: Unauthorized")
        return _json(
            {
                "url": str(self.gateway_url),
                "shards": self.recommended_shards,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 1000,
                    "reset_after": 86_400_000,
                    "max_concurrency": 1,
                },
            }
        )

    async def _me(self, *_: Any) -> web.Response:
        if self.reject_token:
            return _error(401, 0, "401: Unauthorized")
        return _json(self.bot_user)

    async def _app(self, *_: Any) -> web.Response:
        return _json(
            {
                "id": str(self.application_id),
                "name": "comfybot",
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": self._user(1),
                "verify_key": "0" * 64,
                "flags": 0,
                "team": None,
            }
        )

    async def _commands(self, parts: list[str], request: web.Request, payload: Any, _: Any) -> web.Response:
        if request.method == "PUT":
            problem = next((p for c in payload if (p := command_problem(c)) is not None), None)
            if problem is not None:
                return _error(400, 50035, f"Invalid Form Body: {problem}")
            self.commands = [
                {
                    **c,
                    "id": str(next(self._ids)),
                    "application_id": str(self.application_id),
                    "version": "1",
                    "default_member_permissions": None
                    if (perms := c.get("default_member_permissions")) is None
                    else str(perms),
                    "type": c.get("type", 1),
                }
                for c in payload
            ]
        return _json(self.commands)

    def _message_payload(self, msg: StoredMessage) -> JSON:
        return {
            "id": str(msg.id),
            "channel_id": str(msg.channel_id),
            "author": self.bot_user,
            "content": msg.content,
            "timestamp": _iso(msg.created_at or time.time()),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "pinned": False,
            "type": 0 if msg.interaction_id is None else 20,
            "flags": msg.flags,
            "embeds": msg.embeds,
            "components": msg.components,
            "attachments": [
                {
                    "id": str(f.id),
                    "filename": f.filename,
                    "size": len(f.data),
                    "url": f"{self.url}/attachments/{f.id}/{f.filename}",
                    "proxy_url": f"{self.url}/attachments/{f.id}/{f.filename}",
                    **({"content_type": f.content_type} if f.content_type else {}),
                }
                for f in msg.attachments
            ],
            **({"webhook_id": str(msg.webhook_id)} if msg.webhook_id else {}),
        }

    def _apply(self, msg: StoredMessage, payload: JSON, files: list[tuple[str, bytes, str | None]]) -> None:
        if "content" in payload:
            msg.content = payload["content"] or ""
            msg.allowed_mentions = payload.get("allowed_mentions")
            msg.pings.extend(would_ping(msg.content, msg.allowed_mentions))
        if "embeds" in payload:
            msg.embeds = payload["embeds"] or []
        if "components" in payload:
            msg.components = payload["components"] or []
        if "flags" in payload and payload["flags"] is not None:
            msg.flags = (msg.flags & EPHEMERAL) | (int(payload["flags"]) & ~LOADING)
        else:
            msg.flags &= ~LOADING
        if "attachments" in payload:
            keep = []
            by_id = {f.id: f for f in msg.attachments}
            for att in payload["attachments"] or []:
                att_id = int(att["id"])
                if att_id in by_id:
                    keep.append(by_id[att_id])
                elif att_id < len(files):
                    name, data, ctype = files[att_id]
                    stored = StoredFile(next(self._ids), att.get("filename") or name, data, ctype)
                    self.files[stored.id] = stored
                    keep.append(stored)
            msg.attachments = keep
        elif files:
            for name, data, ctype in files:
                stored = StoredFile(next(self._ids), name, data, ctype)
                self.files[stored.id] = stored
                msg.attachments.append(stored)
        msg.history.append(msg.snapshot())

    def _new_message(self, channel_id: int, payload: JSON, files: list[Any], **extra: Any) -> StoredMessage:
        msg = StoredMessage(
            id=next(self._ids),
            channel_id=channel_id,
            created_at=time.time(),
            author_id=self.application_id,
            **extra,
        )
        self.messages[msg.id] = msg
        self._apply(msg, payload, files)
        if payload.get("flags") and int(payload["flags"]) & EPHEMERAL:
            msg.flags |= EPHEMERAL
        return msg

    def _interaction_by_token(self, token: str) -> FakeInteraction | None:
        return next((i for i in self.interactions.values() if i.token == token), None)

    def _token_dead(self, inter: FakeInteraction) -> bool:
        return inter.expired or self.clock() - inter.created_at > self.token_ttl_s

    async def _callback(
        self, parts: list[str], request: web.Request, payload: Any, files: Any
    ) -> web.Response:
        inter = self.interactions.get(int(parts[1]))
        if inter is None or inter.token != parts[2]:
            return _error(404, 10062, "Unknown interaction")
        if inter.callback is not None:
            return _error(400, 40060, "Interaction has already been acknowledged.")
        kind = payload["type"]
        data = payload.get("data") or {}
        if kind == AUTOCOMPLETE_RESULT and inter.focused is not None:
            option = self._option_specs(inter.name).get(inter.focused, {})
            problem = choices_problem(option, list(data.get("choices") or []))
            if problem is not None:
                return _error(400, 50035, f"Invalid Form Body: {problem}")
        inter.callback = payload
        message: StoredMessage | None = None
        if kind in (CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE):
            flags = int(data.get("flags") or 0)
            message = self._new_message(
                inter.channel_id, data, files, interaction_id=inter.id, webhook_id=self.application_id
            )
            message.flags = flags | (LOADING if kind == DEFERRED_CHANNEL_MESSAGE else 0)
            inter.original_id = message.id
        elif kind == UPDATE_MESSAGE and inter.message_id is not None:
            message = self.messages[inter.message_id]
            self._apply(message, data, files)
        body: JSON = {
            "interaction": {
                "id": str(inter.id),
                "type": inter.type,
                "response_message_loading": kind == DEFERRED_CHANNEL_MESSAGE,
                "response_message_ephemeral": bool(message and message.ephemeral),
            }
        }
        if message is not None:
            body["interaction"]["response_message_id"] = str(message.id)
            body["resource"] = {"type": kind, "message": self._message_payload(message)}
        else:
            body["resource"] = {"type": kind}
        return _json(body)

    async def _followup(
        self, parts: list[str], request: web.Request, payload: Any, files: Any
    ) -> web.Response:
        inter = self._interaction_by_token(parts[2])
        if inter is None or self._token_dead(inter):
            return _error(401, 50027, "Invalid Webhook Token")
        msg = self._new_message(
            inter.channel_id, payload or {}, files, interaction_id=inter.id, webhook_id=self.application_id
        )
        return _json(self._message_payload(msg))

    async def _webhook_message(
        self, parts: list[str], request: web.Request, payload: Any, files: Any
    ) -> web.Response:
        inter = self._interaction_by_token(parts[2])
        if inter is None or self._token_dead(inter):
            return _error(401, 50027, "Invalid Webhook Token")
        target = inter.original_id if parts[4] == "@original" else int(parts[4])
        msg = self.messages.get(target) if target is not None else None
        if msg is None or msg.deleted:
            return _error(404, 10008, "Unknown Message")
        if request.method == "DELETE":
            msg.deleted = True
            return web.Response(status=204)
        if request.method == "PATCH":
            self._apply(msg, payload or {}, files)
        return _json(self._message_payload(msg))

    def dm_messages(self, user_id: int) -> list[StoredMessage]:
        """What the bot sent to ``user_id``'s DMs."""
        channel = self.dm_channels.get(user_id)
        return [] if channel is None else self.channel_messages(channel)

    def _refused_in(self, channel_id: int, needed: int) -> web.Response | None:
        """Discord's answer to a bot request in ``channel_id`` it lacks ``needed`` permissions for."""
        user = next((u for u, c in self.dm_channels.items() if c == channel_id), None)
        if user is not None:
            return (
                _error(403, 50007, "Cannot send messages to this user") if user in self.dms_closed else None
            )
        if self.bot_permissions.get(channel_id, BOT_PERMISSIONS) & needed != needed:
            return _error(403, 50013, "Missing Permissions")
        return None

    async def _dm_open(
        self, parts: list[str], request: web.Request, payload: Any, files: Any
    ) -> web.Response:
        user_id = int((payload or {}).get("recipient_id", 0))
        channel = self.dm_channels.setdefault(user_id, next(self._ids))
        return _json(
            {"id": str(channel), "type": 1, "last_message_id": None, "recipients": [self._user(user_id)]}
        )

    async def _channel_send(
        self, parts: list[str], request: web.Request, payload: Any, files: Any
    ) -> web.Response:
        needed = VIEW_CHANNEL | SEND_MESSAGES | (ATTACH_FILES if files else 0)
        if (refused := self._refused_in(int(parts[1]), needed)) is not None:
            return refused
        msg = self._new_message(int(parts[1]), payload or {}, files)
        return _json(self._message_payload(msg))

    async def _channel_message(
        self, parts: list[str], request: web.Request, payload: Any, files: Any
    ) -> web.Response:
        msg = self.messages.get(int(parts[3]))
        if msg is None or msg.deleted or msg.channel_id != int(parts[1]):
            return _error(404, 10008, "Unknown Message")
        if request.method == "DELETE":
            msg.deleted = True
            return web.Response(status=204)
        if request.method == "PATCH":
            needed = VIEW_CHANNEL | (ATTACH_FILES if files else 0)
            if msg.interaction_id is None and (refused := self._refused_in(msg.channel_id, needed)):
                return refused
            if msg.interaction_id is not None and msg.author_id == self.application_id and msg.webhook_id:
                pass  # a bot may edit its own interaction responses by channel route too
            self._apply(msg, payload or {}, files)
        return _json(self._message_payload(msg))


@contextlib.asynccontextmanager
async def running_fake_discord(**options: Any) -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(**options) as fake:
        yield fake
