"""ComfyClient against recorded real-ComfyUI frames replayed by a tiny server (tests/comfy/replay.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from comfy.client import ComfyClient
from comfy.errors import ComfyExecutionError, ComfyInterrupted, ComfyPromptLost
from comfy.events import (
    ComfyEvent,
    Executed,
    Executing,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionStart,
    ExecutionSuccess,
    PreviewImage,
    Progress,
    ProgressText,
)

from .replay import TRACES, ReplayComfy, replaying
from .test_client_fake import collect, until

pytestmark = pytest.mark.skipif(not TRACES.is_dir(), reason=f"no recorded traces in {TRACES}")

GRAPH: dict[str, Any] = {"1": {"class_type": "EmptyImage", "inputs": {}}}


async def run(client: ComfyClient, prompt_id: str, **extra: Any) -> tuple[list[ComfyEvent], Any]:
    async with client.track(prompt_id) as tracker:
        await client.submit(GRAPH, prompt_id=prompt_id, extra_data=extra)
        events = [ev async for ev in tracker]
    return events, tracker.result


def client_for(fake: ReplayComfy, session: aiohttp.ClientSession, **kw: Any) -> ComfyClient:
    return ComfyClient(fake.url, session, name="replay", **kw)


def comfy_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("comfy-") and not t.done()]


async def test_success_legacy_previews_attributed_to_running_prompt(session: aiohttp.ClientSession) -> None:
    async with replaying("ws_trace_custom_progress_legacy.jsonl") as fake:
        async with client_for(fake, session) as client:
            events, result = await run(client, "p-legacy", request_id="req-1")
            assert client.server_features == {}  # this replay does not answer feature_flags
        assert comfy_tasks() == []
    assert fake.first_messages == [{"type": "feature_flags", "data": {"supports_preview_metadata": True}}]
    assert all("Origin" not in h for h in fake.ws_headers)
    (posted,) = fake.received_prompts
    assert posted["extra_data"] == {"request_id": "req-1", "preview_method": "auto"}
    assert posted["client_id"] == client.client_id and posted["prompt_id"] == "p-legacy"

    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "ExecutionStart" and events[-1] == Executing("p-legacy", None, None)
    previews = [e for e in events if isinstance(e, PreviewImage)]
    assert len(previews) == 3
    assert all(p.prompt_id == "p-legacy" and p.node_id == "2" and p.mime == "image/jpeg" for p in previews)
    # Legacy order: progress JSON, then its type-1 preview.
    first_preview = events.index(previews[0])
    assert isinstance(events[first_preview - 1], Progress)
    assert kinds.index("ExecutionSuccess") < len(events) - 1
    assert result.status_str == "success"
    assert [i.subfolder for i in result.images] == ["gw_test"]


async def test_metadata_previews_carry_prompt_id(session: aiohttp.ClientSession) -> None:
    async with replaying("ws_trace_tinysd_metadata.jsonl") as fake, client_for(fake, session) as client:
        events, result = await run(client, "p-meta")
    previews = [e for e in events if isinstance(e, PreviewImage)]
    assert len(previews) == 4
    assert {(p.prompt_id, p.node_id, p.mime) for p in previews} == {("p-meta", "3", "image/jpeg")}
    progress = [e for e in events if isinstance(e, Progress)]
    assert [p.value for p in progress] == [1, 2, 3, 4] and progress[0].max == 4
    assert len(result.images) == 1


async def test_progress_text_reaches_running_prompt(session: aiohttp.ClientSession) -> None:
    async with replaying("ws_trace_progress_text.jsonl") as fake, client_for(fake, session) as client:
        events, _ = await run(client, "p-text")
    texts = [e for e in events if isinstance(e, ProgressText)]
    assert texts == [ProgressText("2", "width: 40, height: 30\n batch size: 2")]


async def test_events_of_other_prompts_are_not_delivered(session: aiohttp.ClientSession) -> None:
    async with (
        replaying("ws_trace_progress_text.jsonl") as fake,
        client_for(fake, session) as client,
        client.track("someone-else") as other,
    ):
        events, _ = await run(client, "p-mine")
        assert other._items.empty()
    assert all(getattr(e, "prompt_id", "p-mine") == "p-mine" for e in events)


async def test_runtime_error_raises_after_events(session: aiohttp.ClientSession) -> None:
    async with replaying("ws_trace_errors.jsonl", index=1) as fake, client_for(fake, session) as client:
        seen: list[ComfyEvent] = []
        with capture_logs() as logs, pytest.raises(ComfyExecutionError) as info:
            async with client.track("p-err") as tracker:
                await client.submit(GRAPH, prompt_id="p-err")
                await collect(tracker, seen)
    assert any(isinstance(e, ExecutionError) for e in seen)
    assert seen[-1] == Executing("p-err", None, None)
    exc = info.value
    assert (exc.prompt_id, exc.node_id, exc.node_type, exc.exception_type) == (
        "p-err",
        "2",
        "GwSlowProgress",
        "ValueError",
    )
    assert exc.code == "comfy_execution_error" and exc.backend == "replay"
    errors = [e for e in logs if e["event"] == "comfyui_execution_error"]
    assert errors and errors[0]["log_level"] == "error" and errors[0]["node_type"] == "GwSlowProgress"
    assert errors[0]["component"] == "comfy" and errors[0]["backend"] == "replay"


async def test_interrupted_raises(session: aiohttp.ClientSession) -> None:
    async with replaying("ws_trace_interrupt.jsonl", index=1) as fake, client_for(fake, session) as client:
        events: list[ComfyEvent] = []
        with pytest.raises(ComfyInterrupted) as info:
            async with client.track("p-int") as tracker:
                await client.submit(GRAPH, prompt_id="p-int")
                await collect(tracker, events)
    assert info.value.prompt_id == "p-int"
    assert any(isinstance(e, ExecutionInterrupted) for e in events)


async def test_drop_mid_run_reconnects_and_takes_outcome_from_history(session: aiohttp.ClientSession) -> None:
    async with (
        replaying("ws_trace_custom_progress_legacy.jsonl") as fake,
        client_for(fake, session) as client,
    ):
        fake.hold.clear()
        fake.hold_after = 5  # after execution_start, cached, progress_state, executing, progress_state
        with capture_logs() as logs:
            async with client.track("p-drop") as tracker:
                await client.submit(GRAPH, prompt_id="p-drop")
                events = [await anext(tracker) for _ in range(4)]
                assert isinstance(events[0], ExecutionStart)
                fake.refuse_ws = True
                await fake.drop_sockets()
                fake.hold.set()  # the run finishes while we are away: its frames are lost
                await until(lambda: "p-drop" in fake.history)
                fake.refuse_ws = False
                rest = [ev async for ev in tracker]
        result = tracker.result
    assert not any(isinstance(e, ExecutionSuccess) for e in rest)
    assert result is not None and result.status_str == "success"
    assert [(i.subfolder, i.type) for i in result.images] == [("gw_test", "output")]
    names = [e["event"] for e in logs]
    assert "comfyui_ws_reconnect" in names
    checked = [e for e in logs if e["event"] == "comfyui_history_checked"]
    assert checked[-1]["outcome"] == "finished" and checked[-1]["prompt_id"] == "p-drop"
    assert [e for e in logs if e["event"] == "comfyui_ws_connected"][-1]["reconnect"] is True


async def test_drop_mid_run_while_still_running_keeps_following(session: aiohttp.ClientSession) -> None:
    async with (
        replaying("ws_trace_custom_progress_legacy.jsonl") as fake,
        client_for(fake, session) as client,
    ):
        fake.hold.clear()
        fake.hold_after = 5
        with capture_logs() as logs:
            async with client.track("p-drop2") as tracker:
                await client.submit(GRAPH, prompt_id="p-drop2")
                seen: list[ComfyEvent] = []
                consumer = asyncio.create_task(collect(tracker, seen))
                await until(lambda: len(seen) >= 4)
                await fake.drop_sockets()
                await until(lambda: any(e["event"] == "comfyui_history_checked" for e in logs))
                fake.hold.set()
                events = await consumer
    # locate() tells a prompt ComfyUI is executing from one still waiting in its queue
    assert [e for e in logs if e["event"] == "comfyui_history_checked"][0]["outcome"] == "running"
    assert isinstance(events[-1], Executing) and events[-1].node is None
    assert any(isinstance(e, Executed) for e in events)
    assert tracker.result is not None and len(tracker.result.images) == 1


async def test_stall_reconnects_then_completes(session: aiohttp.ClientSession) -> None:
    async with (
        replaying("ws_trace_custom_progress_legacy.jsonl") as fake,
        client_for(fake, session, ws_stall_timeout_s=0.2) as client,
    ):
        fake.hold.clear()
        fake.hold_after = 5
        with capture_logs() as logs:
            async with client.track("p-stall") as tracker:
                await client.submit(GRAPH, prompt_id="p-stall")
                _ = [await anext(tracker) for _ in range(4)]
                await until(lambda: any(e["event"] == "comfyui_ws_reconnect" for e in logs))
                fake.hold.set()
                result = await tracker.wait()
    assert result.status_str == "success"
    assert any(e["event"] == "comfyui_ws_reconnect" and e["reason"] == "stall" for e in logs)


async def test_forgotten_prompt_is_lost(session: aiohttp.ClientSession) -> None:
    async with (
        replaying("ws_trace_custom_progress_legacy.jsonl") as fake,
        client_for(fake, session, ws_stall_timeout_s=0.2) as client,
    ):
        fake.hold.clear()
        fake.hold_after = 5
        with pytest.raises(ComfyPromptLost) as info:
            async with client.track("p-lost") as tracker:
                await client.submit(GRAPH, prompt_id="p-lost")
                fake.forget_all()
                await tracker.wait()
    assert info.value.prompt_id == "p-lost" and info.value.code == "comfy_prompt_lost"
