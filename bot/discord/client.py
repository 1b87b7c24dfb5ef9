"""``ComfyBot``: the discord.py client with its app-command tree and the feature Cogs.

It is an ``AutoShardedBot``: it runs the shards ``shard_ids`` of ``shard_count`` (all of them when
``shard_ids`` is None), one gateway connection each (see :mod:`bot.discord.shards`). A shard's first
connection that fails is retried with :attr:`ComfyBot.backoff` and logged ``frontend_start_retry``
(discord.py would retry it every 5 s with a traceback).

Every message it sends or edits pings no one: prompts are user text and are repeated in public job
messages, so ``@everyone``, ``@here``, ``<@id>`` or ``<@&id>`` in a prompt must stay plain text.
discord.py applies the client's ``allowed_mentions`` to channel sends and edits, interaction responses,
followups and edits of the original response alike.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
import yarl
from discord.ext import commands
from discord.gateway import DiscordWebSocket
from discord.shard import Shard

from bot.discord.access import GuardedTree
from bot.discord.cogs.buttons import ButtonsCog
from bot.discord.cogs.generate import GenerateCog
from bot.discord.cogs.help import HelpCog
from bot.discord.cogs.jobs import JobsCog
from bot.discord.cogs.settings import SettingsCog
from bot.discord.context import DiscordContext
from bot.discord.translator import CatalogueTranslator
from bot.startup import Backoff
from core.logs import get_logger
from gateway import metrics

__all__ = ["ComfyBot", "RateLimitLogFilter"]

log = get_logger("discord")


class _DeliberateIntentsFilter(logging.Filter):
    """Drops discord.py's startup warning about the guilds intent: the bot runs with no intents on
    purpose (slash commands and buttons arrive as interactions, which need none), so it is no fault."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Guilds intent seems to be disabled" not in str(record.msg)


_INTENTS_FILTER = _DeliberateIntentsFilter()


class ComfyBot(commands.AutoShardedBot):
    """Slash commands only (no message content intent); Cogs get their dependencies in the constructor.
    The access policy is checked before every command (:class:`GuardedTree`) and button."""

    backoff = Backoff()  # pauses between tries of a shard's first connection

    def __init__(self, ctx: DiscordContext, **options: Any) -> None:
        options.setdefault("intents", discord.Intents.none())
        options.setdefault("guild_ready_timeout", 0.1)
        options["allowed_mentions"] = discord.AllowedMentions.none()  # not an option: see the module doc
        # No voice, ever: discord.py's warnings that its voice extras are missing are no fault either.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        logging.getLogger("discord.state").addFilter(_INTENTS_FILTER)  # adding it twice is a no-op
        super().__init__(
            command_prefix=commands.when_mentioned, help_command=None, tree_cls=GuardedTree, **options
        )
        self.ctx = ctx

    async def setup_hook(self) -> None:
        await self.add_cog(GenerateCog(self.ctx))
        await self.add_cog(JobsCog(self.ctx))
        await self.add_cog(SettingsCog(self.ctx))
        await self.add_cog(ButtonsCog(self, self.ctx))
        await self.add_cog(HelpCog(self, self.ctx))
        await self.tree.set_translator(CatalogueTranslator(self.ctx.i18n))
        if self.ctx.options.sync_commands and (self.shard_ids is None or 0 in self.shard_ids):
            # The commands are the application's, not a shard's: one process (shard 0's) syncs them,
            # not each of N on every rolling restart.
            synced = await self.tree.sync()
            log.info("discord_commands_synced", commands=[c.name for c in synced])
        elif self.ctx.options.sync_commands:
            log.info("discord_commands_sync_skipped", reason="shard 0 syncs them")

    async def on_ready(self) -> None:
        log.info(
            "discord_ready",
            user_id=self.user.id if self.user else None,
            shard_count=self.shard_count,
            shard_ids=list(self.shard_ids or range(self.shard_count or 1)),
        )

    async def launch_shard(self, gateway: yarl.URL, shard_id: int, *, initial: bool = False) -> None:
        """discord.py's, with :attr:`backoff` and a ``frontend_start_retry`` line instead of its fixed
        5 s and traceback. The connected shard is registered as discord.py does."""
        attempt = 0
        while True:
            try:
                coro = DiscordWebSocket.from_client(self, initial=initial, gateway=gateway, shard_id=shard_id)
                ws = await asyncio.wait_for(coro, timeout=self.shard_connect_timeout)
                break
            except Exception as exc:
                attempt += 1
                delay = self.backoff.delay(attempt)
                log.warning(
                    "frontend_start_retry",
                    platform="discord",
                    step="gateway",
                    shard_id=shard_id,
                    attempt=attempt,
                    delay_s=round(delay, 2),
                    error=f"{type(exc).__name__}: {exc}"[:300],
                )
                await asyncio.sleep(delay)
        # AutoShardedClient keeps its shards and their event queue in name-mangled attributes.
        shards: dict[int, Shard] = getattr(self, "_AutoShardedClient__shards")  # noqa: B009
        queue: asyncio.PriorityQueue[Any] = getattr(self, "_AutoShardedClient__queue")  # noqa: B009
        shards[shard_id] = shard = Shard(ws, self, queue.put_nowait)
        shard.launch()


class RateLimitLogFilter(logging.Filter):
    """Turns discord.py's "rate limited ... retrying in N seconds" warnings into ``discord_rate_limited``.

    discord.py itself waits ``retry_after`` and retries (only the request that got the 429); this makes
    the wait visible as one structlog event. URLs are not logged: webhook URLs hold the interaction token.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if "rate limited" in str(record.msg):
            args = record.args if isinstance(record.args, tuple) else ()
            numbers = [a for a in args if isinstance(a, float)]
            metrics.chat_rate_limited("discord")
            log.warning(
                "discord_rate_limited", retry_after=numbers[-1] if numbers else None, source=record.name
            )
        return True
