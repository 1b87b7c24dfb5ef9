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

from tests.fakes.discord import (  # noqa: E402
    ADMINISTRATOR,
    CommandHidden,
    FakeDiscord,
    choices_problem,
    command_problem,
    may_use_command,
)


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


def test_command_and_choice_rules_are_discords() -> None:
    """What the fake refuses at command sync and in autocomplete answers, as Discord documents it."""
    ok = {
        "name": "g",
        "description": "d",
        "options": [{"type": 4, "name": "n", "description": "d", "min_value": 0, "max_value": 2**53}],
    }
    assert command_problem(ok) is None
    assert (
        command_problem({"name": "g", "description": "d", "default_member_permissions": 0}) is None
    )  # discord.py's int
    too_big = {
        "name": "g",
        "description": "d",
        "options": [{"type": 4, "name": "n", "description": "d", "max_value": 2**53 + 1}],
    }
    assert command_problem(too_big) == f"g.n: {2**53 + 1} is outside {-(2**53)}..{2**53}"
    long_text = {
        "name": "g",
        "description": "d",
        "options": [{"type": 3, "name": "p", "description": "d", "max_length": 6001}],
    }
    assert command_problem(long_text) is not None
    upside_down = {
        "name": "g",
        "description": "d",
        "options": [{"type": 4, "name": "n", "description": "d", "min_value": 5, "max_value": 1}],
    }
    assert command_problem(upside_down) is not None
    integer = {"type": 4, "name": "n"}
    assert choices_problem(integer, [{"name": "one", "value": 1}]) is None
    assert choices_problem(integer, [{"name": "one", "value": "1"}]) is not None
    assert choices_problem(integer, [{"name": "", "value": 1}]) is not None
    assert choices_problem(integer, [{"name": "x" * 101, "value": 1}]) is not None
    assert choices_problem(integer, [{"name": str(n), "value": n} for n in range(26)]) == "26 choices"
    # default_member_permissions "0" leaves a command to administrators; other bits to who has them all.
    assert may_use_command({"default_member_permissions": "0"}, ADMINISTRATOR)
    assert not may_use_command({"default_member_permissions": "0"}, 1 << 5)
    assert may_use_command({"default_member_permissions": str(1 << 5)}, 1 << 5 | 1 << 13)
    assert may_use_command({"default_member_permissions": "0"}, None)  # a DM


async def test_a_command_the_member_may_not_use_is_not_offered(fake: FakeDiscord, bot: _Bot) -> None:
    fake.commands[0]["default_member_permissions"] = "0"
    with pytest.raises(CommandHidden):
        await fake.slash(5, 77, "echo", {"text": "hi"}, member_permissions=0)
    assert not fake.interactions


def test_names_and_descriptions_have_discords_lengths() -> None:
    base = {"name": "g", "description": "draw"}
    assert command_problem(base) is None
    assert command_problem({**base, "description": "x" * 101}) is not None
    assert command_problem({**base, "description_localizations": {"ru": ""}}) is not None
    option = {"type": 3, "name": "p", "description": "d" * 100, "max_length": 0}
    assert command_problem({**base, "options": [option]}) == "g.p: 0 is outside 1..6000"
