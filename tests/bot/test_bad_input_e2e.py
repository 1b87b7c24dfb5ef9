"""Bad input gets one clear, localized answer — and nothing crashes."""

from __future__ import annotations

from pathlib import Path

from comfy.workflow_params import IntParam
from comfy.workflows import WorkflowRegistry
from tests.bot.conftest import bench

USER, CHAT = 3003, 3003


async def test_prompt_of_5000_characters(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry) as b:
        b.fake.send_text(USER, CHAT, "/generate " + "castle " * 715)
        reply = await b.text_reply(CHAT, "Prompt")
        assert "2000" in (reply.text or "") and "too long" in (reply.text or "")
        assert not b.comfy.received_prompts


async def test_unknown_workflow_lists_the_known_ones(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry) as b:
        b.fake.send_text(USER, CHAT, "/generate a cat --wf nope")
        reply = await b.text_reply(CHAT, "nope")
        assert "txt2img" in (reply.text or "") and "img2img" in (reply.text or "")


async def test_steps_out_of_range_names_field_and_range(data_dir: Path, registry: WorkflowRegistry) -> None:
    steps = registry.get("txt2img").params["steps"]
    assert isinstance(steps, IntParam)
    top = steps.max
    async with bench(data_dir, registry) as b:
        b.fake.send_text(USER, CHAT, "/generate a cat --steps 99999")
        reply = await b.text_reply(CHAT, "--steps")
        assert f"between 1 and {top}" in (reply.text or "")


async def test_zero_aspect_ratio(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry) as b:
        b.fake.send_text(USER, CHAT, "/generate a cat --ar 0:0")
        reply = await b.text_reply(CHAT, "--ar")
        assert "16:9" in (reply.text or "")


async def test_answers_are_localized(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry) as b:
        b.fake.send_text(USER, CHAT, "/generate кот --steps 99999", language_code="ru")
        await b.text_reply(CHAT, "Шаги (--steps): должно быть от 1 до")
        b.fake.send_text(USER + 1, USER + 1, "/generate 고양이 --size 3", language_code="ko")
        await b.text_reply(USER + 1, "알 수 없는 옵션 --size")
        b.fake.send_text(USER + 2, USER + 2, "/generate", language_code="zh-hant")
        await b.text_reply(USER + 2, "告訴我要畫什麼")


async def test_unknown_flag_and_bad_number(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry) as b:
        b.fake.send_text(USER, CHAT, "/generate a cat --size 5")
        await b.text_reply(CHAT, "Unknown option --size")
        b.fake.send_text(USER, CHAT, "/generate a cat —steps many")
        await b.text_reply(CHAT, "needs a whole number")


async def test_30_commands_in_2_seconds_from_one_user(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry, comfy_options={"step_delay_s": 0.05}) as b:
        for i in range(30):
            b.fake.send_text(USER, CHAT, f"/generate spam {i} --steps 4")
        pending = b.gateway.limits.max_pending_per_user
        # The accepted jobs all finish; the rest got one "wait" notice, not 27 replies.
        await b.until(lambda: len([m for m in b.bot_msgs(CHAT) if m.photo]) >= pending, timeout=40)
        await b.until(lambda: any("already have jobs" in (m.text or "") for m in b.bot_msgs(CHAT)))
        notices = [
            m
            for m in b.bot_msgs(CHAT)
            if "already have jobs" in (m.text or "") or "Too many" in (m.text or "")
        ]
        assert 1 <= len(notices) <= 2
        assert len(b.fake.messages(CHAT, from_bot=True, include_deleted=True)) <= 2 * pending + 2
        assert b.fake.count_429 == 0


async def test_comfyui_down(data_dir: Path, registry: WorkflowRegistry) -> None:
    async with bench(data_dir, registry) as b:
        await b.comfy.refuse_connections()
        b.fake.send_text(USER, CHAT, "/generate a cat --steps 4")
        reply = await b.text_reply(CHAT, "Request ID", timeout=40)
        assert "server" in (reply.text or "").lower()
        assert not [m for m in b.bot_msgs(CHAT) if m.photo]


async def test_comfyui_rejects_the_graph(data_dir: Path, registry: WorkflowRegistry) -> None:
    body = {
        "error": {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "",
            "extra_info": {},
        },
        "node_errors": {
            "4": {
                "errors": [
                    {
                        "type": "value_not_in_list",
                        "message": "Value not in list",
                        "details": "ckpt_name: 'x' not in []",
                        "extra_info": {},
                    }
                ],
                "dependent_outputs": ["9"],
                "class_type": "CheckpointLoaderSimple",
            }
        },
    }
    async with bench(data_dir, registry) as b:
        b.comfy.reject_next(400, body, times=5)
        b.fake.send_text(USER, CHAT, "/generate a cat --steps 4")
        reply = await b.text_reply(CHAT, "refused this workflow", timeout=30)
        assert "Request ID" in (reply.text or "")
