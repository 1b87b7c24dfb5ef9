"""Which shard a Discord job belongs to, and the event channel that carries its events back.

Discord sends a guild's gateway events (its interactions included) to shard ``(guild_id >> 22) % count``
and DMs to shard 0. A bot with several front-end processes gives each a subset of the shards
(``DISCORD_SHARD_IDS``), so a slash command reaches only the process that owns its guild's shard. That
process holds the interaction — its token, kept in memory only (``JobRequest.reply_to`` deliberately
has none) — and the job's throttled message, so the job's events must come back to it and to no other
process: the events of every job go to the event channel of the shard that took the command, and each
process subscribes to the channels of its own shards.

Shard 0's channel is the platform's own (``discord``): a bot with one shard, and jobs submitted before
sharding, use the same channel as always. A shard's channel outlives the process: a restart with the same
shards reads what its predecessor left owed; after a change of ``DISCORD_SHARD_COUNT`` events still owed
on a channel no process reads any more are not delivered (their jobs' messages stay at their last state).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import discord

__all__ = ["ShardedClient", "events_channel", "owned_shards", "shard_channel", "shard_of"]

PLATFORM = "discord"


class ShardedClient(Protocol):
    @property
    def shard_count(self) -> int | None: ...

    @property
    def shard_ids(self) -> Sequence[int] | None: ...


def shard_of(guild_id: int | None, count: int) -> int:
    """The shard Discord sends a guild's events to (DMs: shard 0)."""
    return 0 if guild_id is None else (guild_id >> 22) % max(1, count)


def owned_shards(client: ShardedClient) -> tuple[int, ...]:
    """The shards this process runs (all of them when ``DISCORD_SHARD_IDS`` is unset)."""
    if client.shard_ids is not None:
        return tuple(client.shard_ids)
    return tuple(range(client.shard_count or 1))


def shard_channel(shard_id: int) -> str:
    """The event channel of ``shard_id``'s jobs."""
    return PLATFORM if shard_id == 0 else f"{PLATFORM}:shard-{shard_id}"


def events_channel(interaction: discord.Interaction[Any]) -> str | None:
    """The channel for the job of ``interaction`` (``JobRequest.events_channel``; None: the platform's).

    The shard Discord routes the interaction's guild to — and if that is not one of ours (an interaction
    Discord sent here anyway), our first shard: the events must come to the process that took it."""
    client: Any = interaction.client
    mine = owned_shards(client)
    shard = shard_of(interaction.guild_id, client.shard_count or 1)
    if shard not in mine:
        shard = mine[0]
    return None if shard == 0 else shard_channel(shard)
