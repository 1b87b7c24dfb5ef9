"""The registered commands carry their bounds, so the Discord client stops a bad value before it is sent
(issue 10 item 6): seed, steps and batch have min/max, prompt and negative a max length, all from the
installed workflows and limits; /stats is offered to server administrators only; ``batch`` suggests what
the chosen workflow makes. The fake refuses what the client and Discord refuse (bounds, choices)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from comfy.workflows import WorkflowRegistry, load_workflows
from gateway.limits import AccessPolicy, Limits, PromptFilter
from tests.bot.conftest import copy_workflow
from tests.bot.discord.conftest import CHANNEL, USER, DBench, dbench
from tests.fakes.discord import (
    ADMINISTRATOR,
    CHANNEL_MESSAGE,
    CommandHidden,
    FakeDiscord,
    OptionRefused,
)

MANAGE_MESSAGES = 1 << 13


def _options(fake: FakeDiscord, command: str) -> dict[str, dict[str, Any]]:
    registered = next(c for c in fake.commands if c["name"] == command)
    return {o["name"]: o for o in registered.get("options", [])}


async def test_generate_options_carry_the_workflows_bounds(bench: DBench) -> None:
    options = _options(bench.fake, "generate")
    assert (options["steps"]["min_value"], options["steps"]["max_value"]) == (1, 60)
    assert (options["batch"]["min_value"], options["batch"]["max_value"]) == (1, 4)
    # Every seed the bot draws and shows is below 2^53, so each can be typed back.
    assert (options["seed"]["min_value"], options["seed"]["max_value"]) == (0, 2**53 - 1)
    assert (options["prompt"]["min_length"], options["prompt"]["max_length"]) == (1, 2000)
    assert options["negative"]["max_length"] == 2000
    # The client refuses to send what is outside them; nothing reaches the bot.
    for bad in (
        {"steps": 99999},
        {"steps": 0},
        {"batch": 5},
        {"seed": 2**53},
        {"seed": -1},
        {"prompt": "x" * 2001},
    ):
        with pytest.raises(OptionRefused):
            await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": "a cat", **bad})
    assert not bench.fake.interactions and not bench.comfy.received_prompts
    # The largest seed the option takes runs.
    await bench.fake.slash(USER, CHANNEL, "generate", {"prompt": "a cat", "steps": 2, "seed": 2**53 - 1})
    assert f"{2**53 - 1}" in (await bench.result()).content


async def test_bounds_follow_the_installed_workflows_and_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator's workflow allowing 150 steps widens the option; COMFYBOT_MAX_PROMPT_LENGTH=500
    narrows the prompt."""
    copy_workflow(tmp_path, "slow", "many steps", {"steps": {"max": 150}, "batch": {"max": 8}})
    data = tmp_path / "data"
    data.mkdir()
    limits = Limits(prompt_filter=PromptFilter(max_length=500))
    async with dbench(data, load_workflows([tmp_path]), monkeypatch, limits=limits) as b:
        options = _options(b.fake, "generate")
        assert options["steps"]["max_value"] == 150 and options["batch"]["max_value"] == 8
        assert options["prompt"]["max_length"] == 500
        with pytest.raises(OptionRefused):
            await b.fake.slash(USER, CHANNEL, "generate", {"prompt": "x" * 501})


async def test_stats_is_offered_to_server_administrators_only(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with dbench(tmp_path, registry, monkeypatch, access=AccessPolicy(admins=[USER])) as b:
        assert next(c for c in b.fake.commands if c["name"] == "stats")["default_member_permissions"] == "0"
        others = [c["name"] for c in b.fake.commands if c["default_member_permissions"] is not None]
        assert others == ["stats"]  # every other command is for everyone
        with pytest.raises(CommandHidden):
            await b.fake.slash(USER, CHANNEL, "stats", member_permissions=MANAGE_MESSAGES)
        await b.fake.slash(USER, CHANNEL, "help", member_permissions=0)
        stats = await b.original(await b.fake.slash(USER, CHANNEL, "stats", member_permissions=ADMINISTRATOR))
        assert stats.ephemeral and stats.content.startswith(
            b.frontend.ctx.t("en", "stats.text").split("{")[0]
        )


async def test_batch_suggests_what_the_chosen_workflow_makes(bench: DBench) -> None:
    """``batch`` was offered for workflows that refuse it: its suggestions now follow the workflow, and
    a batch for a workflow without one is refused privately before anything public is shown."""
    t = bench.frontend.ctx.t
    for_txt2img = await bench.fake.autocomplete(
        USER, CHANNEL, "generate", {"prompt": "x", "workflow": "txt2img", "batch": ""}, "batch"
    )
    assert [c["value"] for c in for_txt2img] == [1, 2, 3, 4]
    default = await bench.fake.autocomplete(USER, CHANNEL, "generate", {"prompt": "x", "batch": "3"}, "batch")
    assert [c["value"] for c in default] == [3]  # the default workflow, txt2img
    for_hires = await bench.fake.autocomplete(
        USER, CHANNEL, "generate", {"prompt": "x", "workflow": "hires", "batch": ""}, "batch", locale="ru"
    )
    assert for_hires == [{"name": t("ru", "discord.batch_one", workflow="hires"), "value": 1}]
    # The one choice it offers runs.
    await bench.fake.slash(
        USER, CHANNEL, "generate", {"prompt": "a cat", "workflow": "hires", "steps": 2, "batch": 1}
    )
    assert "hires" in (await bench.result()).content
    # More than one is refused, ephemeral from the start.
    inter = await bench.fake.slash(
        USER, CHANNEL, "generate", {"prompt": "a cat", "workflow": "hires", "batch": 3}
    )
    answer = await bench.ephemeral(t("en", "field.batch"))
    assert inter.callback is not None and inter.callback["type"] == CHANNEL_MESSAGE
    assert bench.fake.original(inter) is answer and len(bench.comfy.received_prompts) == 1
