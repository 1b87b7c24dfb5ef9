"""Who the bot answers in groups: commands addressed to it, or replies to its messages.

A bare ``/cmd`` counts as addressed: Telegram's own command menu inserts it without ``@ThisBot`` when the
bot is the only one in the group, and in privacy mode Telegram delivers bare commands only to the bot it
meant. ``/cmd@OtherBot`` and ordinary chatter are left alone.
"""

from __future__ import annotations

from aiogram.filters import Filter
from aiogram.types import Message

from bot.telegram.context import BotContext

__all__ = ["Addressed", "addressed"]


def addressed(message: Message, ctx: BotContext) -> bool:
    """True in private chats; in groups for ``/cmd``, ``/cmd@ThisBot`` or a reply to one of our messages."""
    if message.chat.type == "private":
        return True
    replied = message.reply_to_message
    if replied is not None and replied.from_user is not None and replied.from_user.id == ctx.bot_id:
        return True
    text = message.text or message.caption or ""
    if text.startswith("/"):
        head = text.split(maxsplit=1)[0]
        _, _, mention = head.partition("@")
        return not mention or mention.lower() == ctx.bot_username.lower()
    return False


class Addressed(Filter):
    """A router-level filter wrapping :func:`addressed`."""

    async def __call__(self, message: Message, ctx: BotContext) -> bool:
        return addressed(message, ctx)
