"""Who the bot answers in groups: only commands addressed to it (``/cmd@ThisBot``) or replies to it."""

from __future__ import annotations

from aiogram.filters import Filter
from aiogram.types import Message

from bot.telegram.context import BotContext

__all__ = ["Addressed", "addressed"]


def addressed(message: Message, ctx: BotContext) -> bool:
    """True in private chats; in groups, only for ``/cmd@ThisBot`` or a reply to one of our messages."""
    if message.chat.type == "private":
        return True
    replied = message.reply_to_message
    if replied is not None and replied.from_user is not None and replied.from_user.id == ctx.bot_id:
        return True
    text = message.text or message.caption or ""
    if text.startswith("/"):
        head = text.split(maxsplit=1)[0]
        _, _, mention = head.partition("@")
        return bool(mention) and mention.lower() == ctx.bot_username.lower()
    return False


class Addressed(Filter):
    """A router-level filter wrapping :func:`addressed`."""

    async def __call__(self, message: Message, ctx: BotContext) -> bool:
        return addressed(message, ctx)
