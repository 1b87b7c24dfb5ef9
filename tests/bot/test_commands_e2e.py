"""/start, /help, /workflows, /queue, /history, /language, /settings, /stats, menu commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.i18n import LANGUAGES, I18n
from bot.telegram.app import MENU_COMMANDS
from comfy.workflows import WorkflowRegistry
from gateway.limits import AccessPolicy
from gateway.redis_store import RedisStore
from tests.bot.conftest import bench, check_workflows_answer, many_workflows, png
from tests.conftest import RedisServer

USER, CHAT = 5005, 5005


async def test_menu_commands_registered_per_language(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry) as b:
        await b.until(lambda: len(b.fake.calls_of("setMyCommands", ok=True)) == len(LANGUAGES))
        for (_scope, language), commands in b.fake.commands.items():
            assert [c["command"] for c in commands] == list(MENU_COMMANDS)
            if language == "ru":
                assert commands[0]["description"] == "Нарисовать картинку по описанию"


async def test_start_help_workflows(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry) as b:
        b.fake.send_text(USER, CHAT, "/start")
        await b.text_reply(CHAT, "I draw pictures")
        b.fake.send_text(USER, CHAT, "/help")
        await b.text_reply(CHAT, "--ar 16:9")
        b.fake.send_text(USER, CHAT, "/workflows")
        reply = await b.text_reply(CHAT, "Workflows")
        for name in registry.names():
            assert name in (reply.text or "")


async def test_long_workflows_list_fits_one_message(tmp_path: Path, data_dir: Path) -> None:
    """34 workflows with long descriptions are over Telegram's 4096 characters: the descriptions are
    shortened (at a word) so every name shows — txt2img and upscale included."""
    registry = many_workflows(tmp_path, 30)
    t = I18n.load().t
    async with bench(data_dir, registry) as b:
        b.fake.send_text(USER, CHAT, "/workflows", language_code="ru")
        reply = await b.text_reply(CHAT, t("ru", "workflows.header"))
        shown = check_workflows_answer(
            reply.text or "", registry, b.frontend.ctx, "ru", "workflows.header", 4096
        )
        assert shown == registry.names()


async def test_a_workflows_list_too_long_even_shortened_ends_with_and_n_more(
    tmp_path: Path, data_dir: Path
) -> None:
    """154 workflows do not fit even with short descriptions: whole lines as far as they fit, then
    "…and N more" — never a message cut mid-word, and the count is right."""
    registry = many_workflows(tmp_path, 150)
    t = I18n.load().t
    async with bench(data_dir, registry) as b:
        b.fake.send_text(USER, CHAT, "/workflows")
        reply = await b.text_reply(CHAT, t("en", "workflows.header"))
        shown = check_workflows_answer(
            reply.text or "", registry, b.frontend.ctx, "en", "workflows.header", 4096
        )
        assert 50 < len(shown) < len(registry)
        assert (reply.text or "").endswith(t("en", "list.more", count=len(registry) - len(shown)))


async def test_queue_and_history_with_reroll_button(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry) as b:
        b.fake.send_text(USER, CHAT, "/queue")
        await b.text_reply(CHAT, "no jobs in the queue")
        b.fake.send_text(USER, CHAT, "/history")
        await b.text_reply(CHAT, "no pictures yet")
        b.fake.send_text(USER, CHAT, "/generate a blue bird --steps 4")
        await b.result(CHAT)
        b.fake.send_text(USER, CHAT, "/history")
        reply = await b.text_reply(CHAT, "Your recent jobs")
        assert "a blue bird" in (reply.text or "")
        data = reply.buttons[0][0]["callback_data"]
        assert data.startswith("j:r:")
        b.fake.press_button(USER, CHAT, reply.message_id, data)
        await b.until(lambda: len([m for m in b.bot_msgs(CHAT) if m.photo]) == 2)


async def test_language_command_switches_texts(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry) as b:
        b.fake.send_text(USER, CHAT, "/language")
        menu = await b.text_reply(CHAT, "Choose your language")
        ko = next(x["callback_data"] for r in menu.buttons for x in r if x["callback_data"] == "l:ko")
        b.fake.press_button(USER, CHAT, menu.message_id, ko)
        await b.text_reply(CHAT, "언어: 한국어")
        b.fake.send_text(USER, CHAT, "/help")
        await b.text_reply(CHAT, "그림 그리기")


async def test_stats_is_for_admins(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry, access=AccessPolicy(admins=[USER])) as b:
        b.fake.send_text(USER + 1, USER + 1, "/stats")
        await b.text_reply(USER + 1, "admins only")
        b.fake.send_text(USER, CHAT, "/generate a counted cat --steps 4")
        await b.result(CHAT)
        b.comfy.fail_node("KSampler", times=1)
        b.fake.send_text(USER, CHAT, "/generate a failing cat --steps 4")
        await b.text_reply(CHAT, "Something failed while drawing")
        b.fake.send_text(USER, CHAT, "/stats")
        stats = await b.text_reply(CHAT, "Statistics")
        assert stats.text is not None and "Last 24 hours: ✅ 1 done · ❌ 1 failed" in stats.text
        assert "Average run time: txt2img " in stats.text and "🟢" in stats.text
        assert stats.text.endswith("Failures: comfy_execution_error × 1")


async def test_allowlist_and_banned_get_a_short_answer(data_dir: Path, registry: WorkflowRegistry) -> None:
    policy = AccessPolicy("allowlist", allowed_users=[USER], banned=[USER + 2])
    async with bench(data_dir, registry, access=policy) as b:
        b.fake.send_text(USER + 1, USER + 1, "/generate a cat")
        await b.text_reply(USER + 1, "can't use this bot")
        b.fake.send_text(USER + 2, USER + 2, "/help")
        await b.text_reply(USER + 2, "can't use this bot")
        b.fake.send_text(USER, CHAT, "/help")
        await b.text_reply(CHAT, "/generate <prompt>")
        assert not b.comfy.received_prompts


async def _settings_flow(b, choose: list[tuple[str, str]]) -> None:
    b.fake.send_text(USER, CHAT, "/settings")
    menu = await b.text_reply(CHAT, "Your defaults")
    for opener, value in choose:
        b.fake.press_button(USER, CHAT, menu.message_id, opener)
        await b.until(
            lambda value=value: any(
                x["callback_data"] == value for r in b.fake.message(CHAT, menu.message_id).buttons for x in r
            )
        )
        b.fake.press_button(USER, CHAT, menu.message_id, value)
        await b.until(
            lambda: (
                "Your defaults" in (b.fake.message(CHAT, menu.message_id).text or "")
                or "Ваши настройки" in (b.fake.message(CHAT, menu.message_id).text or "")
            )
        )


@pytest.mark.redis
async def test_settings_survive_a_restart(
    data_dir: Path, registry: WorkflowRegistry, redis_server: RedisServer
) -> None:
    async with bench(data_dir, registry, backend=RedisStore(redis_server.url)) as b:
        await _settings_flow(b, [("s|ar|", "s|ar|16:9"), ("s|wf|", "s|wf|hires"), ("s|lang|", "s|lang|ru")])
        menu = b.bot_msgs(CHAT)[-1]
        assert "16:9" in (menu.text or "") and "hires" in (menu.text or "")
    redis_server.restart()
    async with bench(data_dir, registry, backend=RedisStore(redis_server.url)) as b:
        b.fake.send_text(USER, CHAT, "/settings")
        reply = await b.text_reply(CHAT, "Ваши настройки по умолчанию")
        assert "16:9" in (reply.text or "") and "hires" in (reply.text or "")
        b.fake.send_text(USER, CHAT, "/generate a dune at noon --steps 4")
        result = await b.result(CHAT)
        assert "hires" in (result.caption or "")
        prompt = b.comfy.received_prompts[-1]["prompt"]
        sizes = [
            (n["inputs"]["width"], n["inputs"]["height"]) for n in prompt.values() if "width" in n["inputs"]
        ]
        assert sizes and sizes[0][0] > sizes[0][1], "the default 16:9 was applied"


async def test_plain_text_in_private_chat_is_a_prompt(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry) as b:
        b.fake.send_text(USER, CHAT, "a paper boat on a puddle --steps 4")
        result = await b.result(CHAT)
        assert "a paper boat on a puddle" in (result.caption or "")
        b.fake.send_text(USER, CHAT, "/frobnicate")
        await b.text_reply(CHAT, "/generate <prompt>")
        group = -100123
        b.fake.send_text(USER, group, "just chatting", chat_type="supergroup")
        b.fake.send_text(USER, group, "/help@comfy_test_bot", chat_type="supergroup")
        await b.text_reply(group, "/generate <prompt>")
        assert len(b.bot_msgs(group)) == 1


async def test_an_image_workflow_as_default_still_draws_text_prompts(
    data_dir: Path, registry: WorkflowRegistry
) -> None:
    """Regression: choosing img2img in /settings made every text /generate answer "needs a picture"."""
    async with bench(data_dir, registry) as b:
        await b.gateway.settings.set(f"telegram:{USER}", {"workflow": "img2img"})
        b.fake.send_text(USER, CHAT, "/generate a kite over the sea --steps 3")
        result = await b.result(CHAT)
        assert "txt2img" in (result.caption or "")
        b.fake.send_photo(USER, CHAT, png(), caption="the same, at night")
        await b.until(lambda: len([m for m in b.bot_msgs(CHAT) if m.photo]) == 2)
        assert "img2img" in (b.bot_msgs(CHAT)[-1].caption or "")
