"""ComfyClient edge cases: recovery of an earlier prompt, timeouts, odd HTTP answers, reconnect replay."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from comfy.client import ComfyClient
from comfy.errors import ComfyPromptLost, ComfyRejected, ComfyTimeout, ComfyUnreachable
from comfy.events import ComfyEvent, Executing, PreviewImage, Progress
from tests.comfy.conftest import pid
from tests.fakes.comfyui import FakeComfyUI

from .test_client_fake import collect, slow, txt2img, until

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def http_server(routes: dict[tuple[str, str], Handler]) -> AsyncIterator[str]:
    """A bare HTTP server answering the given routes (no websocket: the client is not started)."""
    app = web.Application()
    for (method, path), handler in routes.items():
        app.router.add_route(method, path, handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def test_recover_finished_prompt_from_history(fake: FakeComfyUI, client: ComfyClient) -> None:
    await client.submit(txt2img(), prompt_id=pid("earlier"))  # e.g. by a worker that died since
    await fake.wait_history(pid("earlier"))
    async with client.track(pid("earlier"), submitted=True) as tracker:
        result = await tracker.wait()
    assert result.status_str == "success" and len(result.images) == 1


async def test_recover_running_prompt_follows_it(fake: FakeComfyUI, client: ComfyClient) -> None:
    await client.submit(slow(steps=30), prompt_id=pid("running"))
    await until(lambda: fake.running_prompt_id == pid("running"))
    async with client.track(pid("running"), submitted=True) as tracker:
        events = await collect(tracker, [])
    assert events[-1] == Executing(pid("running"), None, None)


async def test_recover_unknown_prompt_is_lost(client: ComfyClient) -> None:
    with pytest.raises(ComfyPromptLost):
        async with client.track(pid("never-posted"), submitted=True) as tracker:
            await tracker.wait()


async def test_track_timeout(client: ComfyClient) -> None:
    with pytest.raises(ComfyTimeout) as info:
        async with client.track(pid("too-slow"), timeout_s=0.3) as tracker:
            await client.submit(slow(steps=500), prompt_id=pid("too-slow"))
            await tracker.wait()
    assert info.value.prompt_id == pid("too-slow") and info.value.code == "timeout"
    await client.interrupt(pid("too-slow"))


async def test_track_twice_is_an_error(client: ComfyClient) -> None:
    async with client.track(pid("dup")):
        with pytest.raises(ValueError, match="already tracked"):
            client.track(pid("dup"))
    async with client.track(pid("dup")):  # free again after the first one exited
        pass


async def test_reconnect_replay_is_attributed_to_running_prompt(
    fake: FakeComfyUI, client: ComfyClient
) -> None:
    seen: list[ComfyEvent] = []
    async with client.track(pid("replayed"), timeout_s=30) as tracker:
        await client.submit(slow(steps=40, delay=0.02), prompt_id=pid("replayed"))
        consumer = asyncio.create_task(collect(tracker, seen))
        await until(lambda: any(isinstance(e, Progress) for e in seen))
        await fake.drop_websockets()
        await consumer
    running = [e for e in seen if isinstance(e, Executing) and e.node == "2"]
    # Once from the run, once from the server's replay to the reconnected socket ({"node": "2"} only).
    assert len(running) == 2
    assert {e.prompt_id for e in running} == {pid("replayed")}


async def test_partial_validation_is_logged(client: ComfyClient) -> None:
    graph = txt2img()
    scale = {"image": ["8", 0], "upscale_method": "bogus", "width": 8, "height": 8, "crop": "disabled"}
    graph["21"] = {"class_type": "ImageScale", "inputs": scale}
    graph["22"] = {"class_type": "SaveImage", "inputs": {"images": ["21", 0], "filename_prefix": "x"}}
    with capture_logs() as logs:
        async with client.track(pid("partial")) as tracker:
            await client.submit(graph, prompt_id=pid("partial"))
            await tracker.wait()
    (logged,) = [e for e in logs if e["event"] == "comfyui_partial_validation"]
    assert "node 21 (ImageScale): upscale_method: Value not in list" in logged["summary"]


async def test_http_timeout_is_comfy_timeout(session: aiohttp.ClientSession) -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.json_response({})

    async with http_server({("GET", "/queue"): hang}) as url:
        client = ComfyClient(url, session, name="slow", request_timeout_s=0.2)
        with pytest.raises(ComfyTimeout) as info:
            await client.queue()
    assert info.value.operation == "GET /queue" and info.value.prompt_id is None


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (403, "", ComfyUnreachable),
        (502, "bad gateway", ComfyUnreachable),
        (400, "not json", ComfyRejected),
    ],
)
async def test_submit_odd_answers(
    session: aiohttp.ClientSession, status: int, body: str, expected: type
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, text=body)

    async with http_server({("POST", "/prompt"): answer}) as url:
        client = ComfyClient(url, session, name="odd")
        with pytest.raises(expected) as info:
            await client.submit({}, prompt_id="x")
    if isinstance(info.value, ComfyRejected):
        assert info.value.summary() == "not json"


async def test_no_origin_header_is_sent(session: aiohttp.ClientSession) -> None:
    headers: list[dict[str, str]] = []

    async def record(request: web.Request) -> web.Response:
        headers.append(dict(request.headers))
        return web.json_response({"prompt_id": "x", "number": 3, "node_errors": {}})

    async with http_server({("POST", "/prompt"): record}) as url:
        assert await ComfyClient(url, session).submit({}, prompt_id="x") == 3
    assert "Origin" not in headers[0]


async def test_default_name_is_host_and_port(session: aiohttp.ClientSession) -> None:
    assert ComfyClient("http://gpu-1:8188/", session).name == "gpu-1:8188"


async def test_bad_frames_are_logged_and_skipped(session: aiohttp.ClientSession) -> None:
    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_bytes(b"\x00")
        await ws.send_str("not json")
        await ws.send_str('{"type": "crystools.monitor", "data": {"cpu": 1}}')
        await ws.send_str('{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 7}}}}')
        async for _ in ws:
            pass
        return ws

    with capture_logs() as logs:
        async with http_server({("GET", "/ws"): ws_handler}) as url, ComfyClient(url, session) as client:
            await until(lambda: client.last_queue_remaining == 7)
            assert client.connected
    assert len([e for e in logs if e["event"] == "comfyui_ws_bad_frame"]) == 2
    assert not [e for e in logs if e["event"] == "comfyui_ws_reconnect"]


async def test_big_binary_frame_is_received(session: aiohttp.ClientSession) -> None:
    big = b"\x89PNG\r\n\x1a\n" + bytes(6 * 1024 * 1024)  # over aiohttp's 4 MB default cap

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()  # the client's feature_flags
        await ws.send_json({"type": "execution_start", "data": {"prompt_id": pid("big"), "timestamp": 1}})
        await ws.send_json(
            {"type": "executing", "data": {"node": "7", "display_node": "7", "prompt_id": pid("big")}}
        )
        await ws.send_bytes(struct.pack(">II", 1, 2) + big)
        await ws.send_json({"type": "execution_success", "data": {"prompt_id": pid("big"), "timestamp": 2}})
        await ws.send_json({"type": "executing", "data": {"node": None, "prompt_id": pid("big")}})
        async for _ in ws:
            pass
        return ws

    async with http_server({("GET", "/ws"): ws_handler}) as url:
        client = ComfyClient(url, session)
        async with client.track(pid("big")) as tracker, client:
            events = await collect(tracker, [])
    (preview,) = [e for e in events if isinstance(e, PreviewImage)]
    assert (preview.prompt_id, preview.node_id, preview.mime) == (pid("big"), "7", "image/png")
    assert preview.data == big
