"""ComfyClient end to end against the fake ComfyUI (tests/fakes/comfyui.py), including its faults."""

from __future__ import annotations

import asyncio
import copy
import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp
import pytest
import structlog
from PIL import Image
from structlog.testing import LogCapture, capture_logs

from comfy.client import ComfyClient, Where
from comfy.errors import (
    ComfyExecutionError,
    ComfyInterrupted,
    ComfyPromptLost,
    ComfyRejected,
    ComfyResponseError,
    ComfyUnreachable,
)
from comfy.events import (
    ComfyEvent,
    Executed,
    Executing,
    ExecutionCached,
    ExecutionError,
    ExecutionStart,
    ExecutionSuccess,
    PreviewImage,
    Progress,
)
from comfy.results import OutputImage
from comfy.tracker import PromptTracker
from tests.comfy.conftest import pid
from tests.fakes.comfyui import FakeComfyUI

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def txt2img(steps: int = 4, seed: int = 1, prefix: str = "comfybot/t") -> dict[str, Any]:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 48, "batch_size": 1}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["4", 0], "seed": seed, "steps": steps, "cfg": 7.0, "sampler_name": "euler",
                "scheduler": "normal", "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0],
                "denoise": 1.0,
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": prefix}},
    }  # fmt: skip


def slow(steps: int = 200, delay: float = 0.02) -> dict[str, Any]:
    """A prompt that runs for a while and reports progress (the traces' GwSlowProgress node)."""
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 0}},
        "2": {
            "class_type": "GwSlowProgress",
            "inputs": {"image": ["1", 0], "steps": steps, "delay": delay, "preview": True, "fail_at": -1},
        },
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "comfybot/slow"}},
    }


async def collect(tracker: PromptTracker, seen: list[ComfyEvent]) -> list[ComfyEvent]:
    """A consumer like the gateway's: iterates the tracker to the end (checks run as it pulls)."""
    async for ev in tracker:
        seen.append(ev)  # noqa: PERF401  # appended live: tests watch the list grow and keep it on raise
    return seen


async def until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110  # polls the fake's/log's state, which has no Event
            await asyncio.sleep(0.01)


async def run(client: ComfyClient, graph: dict[str, Any], pid: str, **extra: Any) -> list[ComfyEvent]:
    async with client.track(pid, timeout_s=30) as tracker:
        await client.submit(graph, prompt_id=pid, extra_data=extra)
        return await collect(tracker, [])


def events_of(logs: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    return [e for e in logs if e["event"] == name]


async def test_success_events_in_order_and_images_downloaded(fake: FakeComfyUI, client: ComfyClient) -> None:
    with capture_logs() as logs:
        async with client.track(pid("p1")) as tracker:
            number = await client.submit(txt2img(), prompt_id=pid("p1"), extra_data={"request_id": "req-1"})
            events = await collect(tracker, [])
        result = tracker.result
        assert result is not None
        data = await client.view(result.images[0])
    assert number == 0
    assert isinstance(events[0], ExecutionStart) and events[0].prompt_id == pid("p1")
    assert isinstance(events[1], ExecutionCached)
    assert events[-1] == Executing(pid("p1"), None, None)
    assert isinstance(events[-2], ExecutionSuccess)
    executing = [e.node for e in events if isinstance(e, Executing) and e.node is not None]
    assert executing.index("3") < executing.index("8") < executing.index("9")
    assert [e.value for e in events if isinstance(e, Progress)] == [1, 2, 3, 4]
    assert any(isinstance(e, Executed) and e.node == "9" for e in events)
    assert result.status_str == "success" and result.prompt_id == pid("p1")
    assert result.images == [OutputImage(result.images[0].filename, "comfybot", "output")]
    assert data.startswith(PNG_MAGIC)
    assert Image.open(io.BytesIO(data)).size == (64, 48)
    (sent,) = events_of(logs, "comfyui_prompt_sent")
    assert (sent["prompt_id"], sent["number"], sent["component"], sent["backend"]) == (
        pid("p1"),
        0,
        "comfy",
        "fake",
    )
    (finished,) = events_of(logs, "comfyui_prompt_finished")
    assert (finished["status"], finished["source"], finished["images"]) == ("success", "ws", 1)
    assert isinstance(finished["duration_ms"], int)
    (retrieved,) = events_of(logs, "image_retrieved")
    assert retrieved["bytes"] == len(data)
    assert all(not isinstance(v, bytes) for e in logs for v in e.values())  # never log the bytes


async def test_request_id_and_client_id_are_posted(fake: FakeComfyUI, client: ComfyClient) -> None:
    await run(client, txt2img(), pid("p-req"), request_id="req-42")
    (posted,) = fake.received_prompts
    # preview_method: previews on a stock current ComfyUI (started without --preview-method)
    assert posted["extra_data"] == {"request_id": "req-42", "preview_method": "auto"}
    assert posted["client_id"] == client.client_id and posted["prompt_id"] == pid("p-req")
    stored = dict(fake.history[pid("p-req")]["prompt"][3])
    assert isinstance(stored.pop("create_time", 0), int)  # current ComfyUI stamps it, 0.3.64 does not
    assert stored == {"request_id": "req-42", "client_id": client.client_id, "preview_method": "auto"}


async def test_cached_rerun_still_gives_images(client: ComfyClient) -> None:
    await run(client, txt2img(), pid("first"))
    async with client.track(pid("again")) as tracker:
        await client.submit(txt2img(), prompt_id=pid("again"))
        events = await collect(tracker, [])
    cached = next(e for e in events if isinstance(e, ExecutionCached))
    assert set(cached.nodes) == {"3", "4", "5", "6", "7", "8", "9"}
    assert not any(isinstance(e, Executing) and e.node is not None for e in events)
    assert any(isinstance(e, Executed) and e.node == "9" for e in events)
    assert tracker.result is not None and len(tracker.result.images) == 1


async def test_previews_type4_carry_prompt_id(client: ComfyClient) -> None:
    events = await run(client, txt2img(steps=3), pid("p-prev"))
    previews = [e for e in events if isinstance(e, PreviewImage)]
    assert len(previews) == 3
    assert {(p.prompt_id, p.node_id, p.mime) for p in previews} == {(pid("p-prev"), "3", "image/jpeg")}
    assert all(p.data.startswith(b"\xff\xd8") for p in previews)
    assert client.server_features.get("supports_preview_metadata") is True


async def test_rejection_carries_node_errors_summary(fake: FakeComfyUI, client: ComfyClient) -> None:
    with capture_logs() as logs, pytest.raises(ComfyRejected) as info:
        async with client.track(pid("bad")) as tracker:
            await client.submit(txt2img(steps=99999), prompt_id=pid("bad"))
            await tracker.wait()
    exc = info.value
    assert exc.summary() == "node 3 (KSampler): steps: Value 99999 bigger than max of 10000"
    assert exc.error_type == "prompt_outputs_failed_validation"
    assert exc.node_errors["3"]["class_type"] == "KSampler"
    assert exc.backend == "fake" and exc.code == "comfy_rejected"
    (logged,) = events_of(logs, "comfyui_rejected")
    assert logged["summary"] == exc.summary() and logged["log_level"] == "warning"


async def test_runtime_execution_error(fake: FakeComfyUI, client: ComfyClient) -> None:
    fake.fail_node("KSampler", "RuntimeError", "CUDA out of memory")
    seen: list[ComfyEvent] = []
    with capture_logs() as logs, pytest.raises(ComfyExecutionError) as info:
        async with client.track(pid("boom")) as tracker:
            await client.submit(txt2img(), prompt_id=pid("boom"))
            await collect(tracker, seen)
    exc = info.value
    assert (exc.prompt_id, exc.node_id, exc.node_type) == (pid("boom"), "3", "KSampler")
    assert exc.exception_type == "RuntimeError" and "CUDA out of memory" in exc.exception_message
    assert any(isinstance(e, ExecutionError) for e in seen)
    assert seen[-1] == Executing(pid("boom"), None, None)
    (logged,) = events_of(logs, "comfyui_execution_error")
    assert logged["log_level"] == "error" and logged["node_type"] == "KSampler"


async def test_interrupt(fake: FakeComfyUI, client: ComfyClient) -> None:
    seen: list[ComfyEvent] = []
    with pytest.raises(ComfyInterrupted) as info:
        async with client.track(pid("stop-me")) as tracker:
            await client.submit(slow(), prompt_id=pid("stop-me"))
            consumer = asyncio.create_task(collect(tracker, seen))
            await until(lambda: any(isinstance(e, Progress) for e in seen))
            await client.interrupt(pid("stop-me"))
            await consumer
    assert info.value.prompt_id == pid("stop-me")
    assert fake.interrupts == [pid("stop-me")]
    assert fake.history[pid("stop-me")]["status"]["status_str"] == "error"


async def test_ws_dropped_mid_run_reconnects_and_completes(fake: FakeComfyUI, client: ComfyClient) -> None:
    fake.drop_ws_mid_run = True
    with capture_logs() as logs:
        async with client.track(pid("dropped"), timeout_s=30) as tracker:
            await client.submit(slow(steps=20), prompt_id=pid("dropped"))
            result = await tracker.wait()
    assert result.status_str == "success" and len(result.images) == 1
    assert fake.ws_connections >= 2
    assert events_of(logs, "comfyui_ws_reconnect")
    assert events_of(logs, "comfyui_ws_connected")[-1]["reconnect"] is True


async def test_outcome_from_history_after_outage(fake: FakeComfyUI, client: ComfyClient) -> None:
    seen: list[ComfyEvent] = []
    with capture_logs() as logs:
        async with client.track(pid("away"), timeout_s=30) as tracker:
            await client.submit(slow(steps=10, delay=0.02), prompt_id=pid("away"))
            consumer = asyncio.create_task(collect(tracker, seen))
            await until(lambda: any(isinstance(e, Progress) for e in seen))
            await fake.refuse_connections()  # the run goes on; its frames are lost to us
            await fake.wait_history(pid("away"))
            await fake.accept_connections()
            await consumer
    assert not any(isinstance(e, ExecutionSuccess) for e in seen)
    assert tracker.result is not None and tracker.result.status_str == "success"
    assert len(tracker.result.images) == 1
    checked = events_of(logs, "comfyui_history_checked")
    assert checked[-1]["outcome"] == "finished" and checked[-1]["prompt_id"] == pid("away")


async def test_stall_reconnects_and_completes(fake: FakeComfyUI, session: aiohttp.ClientSession) -> None:
    async with ComfyClient(fake.url, session, name="fake", ws_stall_timeout_s=0.2) as client:
        with capture_logs() as logs:
            async with client.track(pid("stalled"), timeout_s=30) as tracker:
                await client.submit(slow(steps=40, delay=0.02), prompt_id=pid("stalled"))
                seen: list[ComfyEvent] = []
                consumer = asyncio.create_task(collect(tracker, seen))
                await until(lambda: any(isinstance(e, Progress) for e in seen))
                fake.stall_ws(0.5)
                await consumer
    assert tracker.result is not None and tracker.result.status_str == "success"
    assert any(e["reason"] == "stall" for e in events_of(logs, "comfyui_ws_reconnect"))


async def test_server_forgot_prompt_is_lost(fake: FakeComfyUI, client: ComfyClient) -> None:
    seen: list[ComfyEvent] = []
    with pytest.raises(ComfyPromptLost) as info:
        async with client.track(pid("forgotten"), timeout_s=30) as tracker:
            await client.submit(slow(), prompt_id=pid("forgotten"))
            consumer = asyncio.create_task(collect(tracker, seen))
            await until(lambda: any(isinstance(e, Progress) for e in seen))
            await fake.forget_all()
            await consumer
    assert info.value.prompt_id == pid("forgotten") and info.value.backend == "fake"


async def test_server_down_at_submit_is_unreachable(fake: FakeComfyUI, client: ComfyClient) -> None:
    await fake.refuse_connections()
    with pytest.raises(ComfyUnreachable) as info:
        await client.submit(txt2img(), prompt_id=pid("nope"))
    assert info.value.status is None and info.value.code == "comfy_unreachable"
    await fake.accept_connections()
    fake.reject_next(500)
    with pytest.raises(ComfyUnreachable) as info:
        await client.submit(txt2img(), prompt_id=pid("nope2"))
    assert info.value.status == 500


async def test_start_with_server_down_connects_later(
    fake: FakeComfyUI, session: aiohttp.ClientSession
) -> None:
    await fake.refuse_connections()
    async with ComfyClient(fake.url, session, reconnect_max_delay_s=0.1) as client:
        assert not client.connected
        await fake.accept_connections()
        await until(lambda: client.connected)
        events = await run(client, txt2img(), pid("late"))
    assert isinstance(events[-1], Executing)


async def test_upload_dedup_and_load(fake: FakeComfyUI, client: ComfyClient) -> None:
    png = io.BytesIO()
    Image.new("RGB", (40, 30), "red").save(png, "PNG")
    other = io.BytesIO()
    Image.new("RGB", (40, 30), "blue").save(other, "PNG")
    with capture_logs() as logs:
        first = await client.upload_image(png.getvalue(), "in.png")
        again = await client.upload_image(png.getvalue(), "in.png")
        different = await client.upload_image(other.getvalue(), "in.png")
    assert first == again == "comfybot/in.png"
    assert different == "comfybot/in (1).png"
    assert [u["duplicate"] for u in fake.uploads] == [False, True, False]
    assert [e["bytes"] for e in events_of(logs, "image_uploaded")] == [len(png.getvalue())] * 2 + [
        len(other.getvalue())
    ]
    graph = {
        "10": {"class_type": "LoadImage", "inputs": {"image": first}},
        "12": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": "comfybot/up"}},
    }
    await run(client, graph, pid("uses-upload"))
    (entry,) = [h for p, h in fake.history.items() if p == pid("uses-upload")]
    assert entry["status"]["status_str"] == "success"


async def test_queue_order_delete_and_remaining(fake: FakeComfyUI, client: ComfyClient) -> None:
    await client.submit(slow(steps=100), prompt_id=pid("running"))
    await until(lambda: fake.running_prompt_id == pid("running"))
    await client.submit(txt2img(seed=1), prompt_id=pid("a"))
    await client.submit(txt2img(seed=2), prompt_id=pid("b"))
    await client.submit(txt2img(seed=3), prompt_id=pid("c"), front=True)
    state = await client.queue()
    assert state.running == [pid("running")] and state.pending == [pid("c"), pid("a"), pid("b")]
    assert state.position(pid("a")) == 2
    assert await client.queue_remaining() == 4
    await client.delete_queued([pid("a"), pid("b"), pid("c")])
    assert (await client.queue()).pending == []
    assert fake.deleted == [pid("a"), pid("b"), pid("c")]
    await client.interrupt(pid("running"))


async def test_history_and_misc_endpoints(fake: FakeComfyUI, client: ComfyClient) -> None:
    assert await client.history("unknown") is None
    await run(client, txt2img(), pid("h1"))
    result = await client.history(pid("h1"))
    assert result is not None and result.status_str == "success" and len(result.images) == 1
    assert (await client.system_stats())["system"]["comfyui_version"] == "0.3.64"
    info = await client.object_info()
    assert "KSampler" in info
    assert list(await client.object_info("SaveImage")) == ["SaveImage"]
    await client.free(unload_models=True)
    assert fake.frees == [{"unload_models": True, "free_memory": False}]
    with pytest.raises(ComfyResponseError) as info_exc:
        await client.view(OutputImage("missing.png", "", "output"))
    assert info_exc.value.status == 404


async def test_two_prompts_in_flight_each_get_their_events(client: ComfyClient) -> None:
    async def one(prompt_id: str, seed: int) -> list[ComfyEvent]:
        return await run(client, txt2img(seed=seed, prefix=f"comfybot/{seed}"), prompt_id)

    a, b = await asyncio.gather(one(pid("pa"), 1), one(pid("pb"), 2))
    for prompt_id, events in ((pid("pa"), a), (pid("pb"), b)):
        assert all(getattr(e, "prompt_id", prompt_id) == prompt_id for e in events)
        assert events[-1] == Executing(prompt_id, None, None)


async def test_close_leaves_no_pending_tasks(fake: FakeComfyUI, session: aiohttp.ClientSession) -> None:
    before = set(asyncio.all_tasks())
    client = ComfyClient(fake.url, session)
    await client.start()
    assert client.connected
    tracker = client.track(pid("never-submitted"))
    await client.close()
    assert not client.connected
    leftover = [t for t in asyncio.all_tasks() - before if not t.done() and t.get_name().startswith("comfy-")]
    assert leftover == []
    with pytest.raises(Exception, match="client closed"):
        await tracker.wait()
    assert not session.closed  # the caller's session stays open


async def test_graph_is_not_mutated(client: ComfyClient) -> None:
    graph = txt2img()
    frozen = copy.deepcopy(graph)
    await run(client, graph, pid("immut"))
    assert graph == frozen


async def test_caller_context_reaches_client_lines(client: ComfyClient) -> None:
    """The jq recipe `select(.request_id==...)` finds the client's lines: contextvars bound by the caller."""
    capture = LogCapture()
    old = structlog.get_config()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    try:
        with structlog.contextvars.bound_contextvars(request_id="req-ctx", job_id="job-1"):
            await run(client, txt2img(), pid("ctx"), request_id="req-ctx")
    finally:
        structlog.configure(**old)
    mine = {e["event"] for e in capture.entries if e.get("request_id") == "req-ctx"}
    assert {"comfyui_prompt_sent", "comfyui_prompt_finished"} <= mine
    assert all(e["component"] == "comfy" for e in capture.entries if e["event"].startswith("comfyui_"))


async def test_locate_every_state(fake: FakeComfyUI, client: ComfyClient) -> None:
    """One lookup for queued / running / done / failed / cancelled / unknown, on both server versions."""
    assert (await client.locate(pid("nobody"))).where is Where.UNKNOWN
    assert client.jobs_api is (not fake.legacy)  # chosen from the first answer (404 route vs JSON)
    await client.submit(slow(steps=500), prompt_id=pid("loc-run"))
    await until(lambda: fake.running_prompt_id == pid("loc-run"))
    await client.submit(txt2img(), prompt_id=pid("loc-wait"))
    assert (await client.locate(pid("loc-run"))).where is Where.RUNNING
    assert (await client.locate(pid("loc-wait"))).where is Where.QUEUED
    assert await client.cancel(pid("loc-wait")) is True
    assert (await client.locate(pid("loc-wait"))).where is Where.UNKNOWN  # dequeued before it ran
    assert await client.cancel(pid("loc-run")) is True
    await fake.wait_history(pid("loc-run"))
    cancelled = await client.locate(pid("loc-run"))
    assert cancelled.where is Where.CANCELLED and cancelled.finished
    assert fake.cancels == ([] if fake.legacy else [pid("loc-wait"), pid("loc-run")])
    await run(client, txt2img(), pid("loc-done"))
    done = await client.locate(pid("loc-done"))
    assert done.where is Where.DONE and done.result is not None and len(done.result.images) == 1
    fake.fail_node("KSampler", "RuntimeError", "CUDA out of memory")
    with pytest.raises(ComfyExecutionError):
        await run(client, txt2img(seed=9), pid("loc-fail"))
    failed = await client.locate(pid("loc-fail"))
    assert failed.where is Where.FAILED and failed.result is not None
