"""Sharding against the fake Discord: what each connection identifies as and receives, the recommended
shard count, and two front ends with a shard each on one gateway (in one process; the real-process
version is tests/test_discord_shards_e2e.py)."""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path

import discord
import pytest

from bot.discord.app import DiscordFrontend
from bot.discord.shards import shard_channel, shard_of
from comfy.workflows import WorkflowRegistry
from tests.bot.discord.conftest import DBench, dbench
from tests.fakes.discord import FakeDiscord, FakeInteraction, StoredMessage


def _result(fake: FakeDiscord, inter: FakeInteraction) -> StoredMessage | None:
    msg = fake.original(inter)
    if msg is not None and msg.attachments and any(c.startswith("comfybot:i:") for c in msg.custom_ids):
        return msg
    return None


def test_shard_of_is_discords_formula() -> None:
    guild = (123456 << 22) | 99
    assert [shard_of(guild, n) for n in (1, 2, 5)] == [0, 123456 % 2, 123456 % 5]
    assert shard_of(None, 4) == 0  # DMs go to shard 0
    assert [FakeDiscord.shard_of(guild, n) for n in (1, 2, 5)] == [shard_of(guild, n) for n in (1, 2, 5)]
    assert shard_channel(0) == "discord" and shard_channel(3) == "discord:shard-3"


async def test_each_shard_connection_gets_only_its_guilds() -> None:
    """Bare discord.py AutoShardedClients (GUILDS intent) with shard subsets agree with the fake on
    which guild is whose: IDENTIFY's ``shard``, READY's and GUILD_CREATE's guilds per shard."""
    async with FakeDiscord() as fake:
        guilds = {s: [fake.add_guild(shard=s, shard_count=3) for _ in range(2)] for s in range(3)}
        clients = [
            discord.AutoShardedClient(
                intents=discord.Intents(guilds=True), shard_count=3, shard_ids=ids, guild_ready_timeout=0.2
            )
            for ids in ([0], [1, 2])
        ]
        saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = (
            fake.api_base,
            fake.gateway_url,
        )
        tasks = [asyncio.create_task(c.start(fake.token)) for c in clients]
        try:
            await fake.wait_for(lambda: len(fake.identifies) == 3, 30)
            async with asyncio.timeout(30):
                for c in clients:
                    await c.wait_until_ready()
            assert sorted(fake.identifies) == [(0, 3), (1, 3), (2, 3)]
            assert {g.id for g in clients[0].guilds} == set(guilds[0])
            assert {g.id for g in clients[1].guilds} == set(guilds[1] + guilds[2])
            assert all(g.shard_id == shard_of(g.id, 3) for c in clients for g in c.guilds)
        finally:
            for c in clients:
                await c.close()
            await asyncio.gather(*tasks, return_exceptions=True)
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved


async def test_a_shard_outside_the_count_is_refused() -> None:
    async with FakeDiscord() as fake:
        client = discord.AutoShardedClient(intents=discord.Intents.none(), shard_count=2, shard_ids=[2])
        saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = (
            fake.api_base,
            fake.gateway_url,
        )
        try:
            with pytest.raises(discord.ConnectionClosed) as info:
                async with asyncio.timeout(30):
                    await client.start(fake.token)
            assert info.value.code == 4010
        finally:
            await client.close()
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved


async def _generate_in(b: DBench, channel: int, user: int, prompt: str) -> StoredMessage:
    inter = await b.fake.slash(user, channel, "generate", {"prompt": prompt, "steps": 4})
    result: StoredMessage = await b.fake.wait_for(lambda: _result(b.fake, inter), 30)
    return result


async def test_without_a_count_the_recommended_one_is_run(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ``DISCORD_SHARD_COUNT``: the count ``GET gateway/bot`` recommends, all shards in this process,
    each connected to ``DISCORD_GATEWAY_URL``; guilds of every shard are served."""
    async with dbench(tmp_path, registry, monkeypatch, fake_options={"recommended_shards": 3}) as b:
        assert sorted(b.fake.identifies) == [(0, 3), (1, 3), (2, 3)]
        assert len(b.fake.calls_of("gateway_bot")) == 1
        for shard in range(3):
            channel = b.fake.add_channel(b.fake.add_guild(shard=shard, shard_count=3))
            result = await _generate_in(b, channel, 9000 + shard, f"a boat {shard}")
            assert result.channel_id == channel


async def test_two_front_ends_each_show_the_jobs_of_their_shard(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Front ends with shards {0} and {1} of 2 on one gateway: each job's events reach the front end
    that took its command, so its own interaction response shows progress and result, and its buttons
    are answered there too."""
    async with dbench(tmp_path, registry, monkeypatch) as b:
        await b.frontend.stop()  # the bench's unsharded one
        fronts = [
            DiscordFrontend(
                b.fake.settings(shard_count=2, shard_ids=[s]), b.gateway, registry, options=b.options
            )
            for s in (0, 1)
        ]
        try:
            for f in fronts:
                await f.start()
                await f.wait_ready()
            assert [f.consumer.channels for f in fronts] == [("discord",), ("discord:shard-1",)]
            assert len(b.fake.calls_of("commands")) == 2, "the bench's front end and shard 0's synced"
            channels = [b.fake.add_channel(b.fake.add_guild(shard=s, shard_count=2)) for s in (0, 1)]
            results = await asyncio.gather(
                *(_generate_in(b, channels[s], 9100 + s, f"a kite {s}") for s in (0, 1))
            )
            for s, result in enumerate(results):
                assert result.edits >= 2, "queued, then progress or the result, in the same response"
                reroll = next(c for c in result.custom_ids if c.startswith("comfybot:r:"))
                press = await b.fake.click(9100 + s, result.id, reroll)
                again = await b.fake.wait_for(partial(_result, b.fake, press), 30)
                assert again.channel_id == channels[s]
            assert not [
                m for m in b.fake.messages.values() if m.interaction_id is None and not m.ephemeral
            ], "no job continued on a channel message (its events went to the process with the token)"
        finally:
            for f in reversed(fronts):  # each puts back the discord.py endpoints it found
                await f.stop()
