"""FakeDiscord against the real discord.py client: login, READY, command sync, defer + edit with files,
autocomplete, buttons, 429 with retry, expired tokens (50027) and deleted messages (10008)."""

from __future__ import annotations

import asyncio
import io
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest

with warnings.catch_warnings():
    # discord.py 2.7 imports audioop (deprecated since 3.11); filterwarnings=error would fail collection.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord
    from discord import app_commands

from tests.fakes.discord import FakeDiscord  # noqa: E402


class _Bot(discord.Client):
    def __init__(self) -> None:
        super().__init__(intents=discord.Intents.none(), guild_ready_timeout=0.1)
        self.tree = app_commands.CommandTree(self)
        self.clicked: list[str] = []

        @self.tree.command(name="echo", description="echo")
        async def echo(
            interaction: discord.Interaction, text: str, file: discord.Attachment | None = None
        ) -> None:
            await interaction.response.defer(thinking=True)
            files = [discord.File(io.BytesIO(await file.read()), "back.png")] if file else []
            view = discord.ui.View(timeout=None)
            view.add_item(discord.ui.Button(label="Go", custom_id="go:1"))
            await interaction.edit_original_response(content=f"echo {text}", attachments=files, view=view)

        @echo.autocomplete("text")
        async def _complete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
            return [app_commands.Choice(name=current + "!", value=current + "!")]

    async def setup_hook(self) -> None:
        await self.tree.sync()

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        if interaction.type is discord.InteractionType.component:
            data: Any = interaction.data or {}
            self.clicked.append(str(data.get("custom_id")))
            await interaction.response.send_message("clicked", ephemeral=True)


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        fake.patch(monkeypatch)
        yield fake


@pytest.fixture
async def bot(fake: FakeDiscord) -> AsyncIterator[_Bot]:
    client = _Bot()
    await client.login(fake.token)
    task = asyncio.create_task(client.connect(reconnect=False))
    await fake.wait_ready()
    await fake.wait_for(lambda: fake.commands)
    yield client
    await client.close()
    await asyncio.gather(task, return_exceptions=True)


async def test_slash_defer_and_edit_with_file_and_buttons(fake: FakeDiscord, bot: _Bot) -> None:
    assert [c["name"] for c in fake.commands] == ["echo"]
    inter = await fake.slash(
        5, 77, "echo", {"text": "hi"}, attachments={"file": ("a.png", b"PNGDATA", "image/png")}
    )
    msg = await fake.wait_for(lambda: (m := fake.original(inter)) and m.content == "echo hi" and m)
    assert inter.callback is not None and inter.callback["type"] == 5
    assert [f.data for f in msg.attachments] == [b"PNGDATA"]
    assert msg.custom_ids == ["go:1"]
    click = await fake.click(6, msg.id, "go:1")
    reply = await fake.wait_for(lambda: fake.original(click))
    assert reply.ephemeral and reply.content == "clicked" and bot.clicked == ["go:1"]


async def test_autocomplete(fake: FakeDiscord, bot: _Bot) -> None:
    choices = await fake.autocomplete(5, 77, "echo", {"text": "ab"}, "text")
    assert choices == [{"name": "ab!", "value": "ab!"}]


async def test_429_is_retried_by_discord_py_without_duplicates(fake: FakeDiscord, bot: _Bot) -> None:
    fake.inject_429("edit", times=2, retry_after=0.05)
    inter = await fake.slash(5, 77, "echo", {"text": "x"})
    msg = await fake.wait_for(lambda: (m := fake.original(inter)) and m.content == "echo x" and m)
    assert fake.count_429 == 2
    assert msg.edits == 1
    assert [c.status for c in fake.calls_of("edit")] == [429, 429, 200]


async def test_expired_token_and_deleted_message(fake: FakeDiscord, bot: _Bot) -> None:
    inter = await fake.slash(5, 77, "echo", {"text": "x"})
    msg = await fake.wait_for(lambda: (m := fake.original(inter)) and m.content == "echo x" and m)
    partial = discord.Webhook.partial(fake.application_id, inter.token, client=bot)
    fake.expire_token(inter.id)
    with pytest.raises(discord.HTTPException) as info:
        await partial.edit_message(msg.id, content="late")
    assert info.value.code == 50027
    channel = bot.get_partial_messageable(77)
    sent = await channel.send("hello")
    await fake.delete_message(sent.id)
    with pytest.raises(discord.NotFound) as gone:
        await channel.get_partial_message(sent.id).edit(content="x")
    assert gone.value.code == 10008
