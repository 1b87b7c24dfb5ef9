"""The fake ComfyUI next to a real one: the same model-free graphs, the same messages in the same order.

Runs only with ``COMFYUI_TEST_URL`` (a real ComfyUI 0.3.64; ``python main.py --cpu`` is enough). Each scenario
is one our workflows hit: a fresh run and its fully cached re-run, an uploaded input image through LoadImage
(img2img, upscale), a node failing at run time, a 400 with ``node_errors``, upload dedup/rename and ``/view``
refusals. Frames are compared by kind and key shape (values such as ids and timestamps differ); ``status``
frames are left out because the real server broadcasts them for other people's prompts too.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from PIL import Image

from comfy.client import ComfyClient
from tests.fakes.comfyui import FakeComfyUI, WsRecorder
from tests.fakes.test_fake_comfyui import frame_shape, shape, token

URL = os.environ.get("COMFYUI_TEST_URL", "")
pytestmark = [
    pytest.mark.real_comfyui,
    pytest.mark.skipif(not URL, reason="COMFYUI_TEST_URL is not set"),
]

JSON = dict[str, Any]
SUBFOLDER = "comfybot_test"
Scenario = Callable[[aiohttp.ClientSession, str, WsRecorder], Awaitable[list[str]]]


def _png(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def _save(source: list[Any]) -> JSON:
    return {"class_type": "SaveImage", "inputs": {"images": source, "filename_prefix": f"{SUBFOLDER}/cmp"}}


async def _upload(http: aiohttp.ClientSession, url: str, data: bytes, name: str) -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field("image", data, filename=name, content_type="image/png")
    form.add_field("subfolder", SUBFOLDER)
    async with http.post(f"{url}/upload/image", data=form) as r:
        return r.status, (await r.json()) if r.status == 200 else None


async def _run(http: aiohttp.ClientSession, url: str, rec: WsRecorder, graph: JSON) -> str:
    pid = f"comfybot-cmp-{uuid.uuid4()}"
    body = {
        "prompt": graph,
        "client_id": rec.client_id,
        "prompt_id": pid,
        "extra_data": {"request_id": "cmp"},
    }
    async with http.post(f"{url}/prompt", json=body) as r:
        assert r.status == 200, await r.text()
    await rec.wait_done(pid, timeout_s=60)
    return pid


def _frames_of(rec: WsRecorder, pid: str) -> list[JSON]:
    """The frames of one prompt: JSON with its prompt_id, binary previews carrying it (type 4)."""
    out = []
    for f in rec.frames:
        if f["kind"] == "binary":
            if f.get("metadata", {}).get("prompt_id") == pid:
                out.append(f)
        elif isinstance(f["data"], dict) and f["data"].get("prompt_id") == pid:
            out.append(f)
    return out


async def _fresh_then_cached(http: aiohttp.ClientSession, url: str, rec: WsRecorder) -> list[str]:
    graph = {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 48, "height": 32, "batch_size": 1, "color": uuid.uuid4().int & 0xFFFFFF}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": _save(["2", 0]),
    }  # fmt: skip
    return [await _run(http, url, rec, graph), await _run(http, url, rec, graph)]


async def _load_image(http: aiohttp.ClientSession, url: str, rec: WsRecorder) -> list[str]:
    image = _png((uuid.uuid4().int & 0xFF, 10, 20))
    status, up = await _upload(http, url, image, f"in-{uuid.uuid4().hex}.png")
    assert status == 200
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": f"{up['subfolder']}/{up['name']}"}},
        "2": {"class_type": "ImageScale",
              "inputs": {"image": ["1", 0], "upscale_method": "bilinear", "width": 80, "height": 0,
                         "crop": "disabled"}},
        "3": _save(["2", 0]),
    }  # fmt: skip
    return [await _run(http, url, rec, graph)]


async def _runtime_error(http: aiohttp.ClientSession, url: str, rec: WsRecorder) -> list[str]:
    # Upload does not look inside the file; LoadImage fails when it opens it, at run time.
    status, up = await _upload(http, url, b"not an image", f"broken-{uuid.uuid4().hex}.png")
    assert status == 200
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": f"{up['subfolder']}/{up['name']}"}},
        "2": _save(["1", 0]),
    }
    return [await _run(http, url, rec, graph)]


async def _observe(url: str, scenario: Scenario) -> tuple[list[list[str]], list[list[Any]], list[JSON]]:
    """Run ``scenario`` on the server at ``url``: per prompt, the frame kinds, their shapes, its history."""
    async with aiohttp.ClientSession() as http:
        async with WsRecorder(http, url, client_id=uuid.uuid4().hex, metadata=True) as rec:
            pids = await scenario(http, url, rec)
        kinds, shapes, histories = [], [], []
        for pid in pids:
            frames = _frames_of(rec, pid)
            kinds.append([token(f) for f in frames])
            shapes.append([frame_shape(f) for f in frames])
            async with http.get(f"{url}/history/{pid}") as r:
                histories.append((await r.json())[pid])
    return kinds, shapes, histories


@pytest.fixture
async def fake() -> AsyncIterator[FakeComfyUI]:
    async with FakeComfyUI() as server:
        yield server


@pytest.mark.parametrize(
    "scenario", [_fresh_then_cached, _load_image, _runtime_error], ids=lambda s: s.__name__
)
async def test_same_messages_in_the_same_order(fake: FakeComfyUI, scenario: Scenario) -> None:
    real_kinds, real_shapes, real_history = await _observe(URL, scenario)
    fake_kinds, fake_shapes, fake_history = await _observe(fake.url, scenario)
    assert fake_kinds == real_kinds
    assert fake_shapes == real_shapes
    assert [shape(h) for h in fake_history] == [shape(h) for h in real_history]
    status = [h["status"]["status_str"] for h in real_history]
    assert [h["status"]["status_str"] for h in fake_history] == status


async def test_runtime_error_fields_match(fake: FakeComfyUI) -> None:
    def error_of(histories: list[JSON]) -> JSON:
        messages = histories[0]["status"]["messages"]
        (data,) = [m[1] for m in messages if m[0] == "execution_error"]
        return {k: data[k] for k in ("node_id", "node_type", "exception_type", "executed")}

    real = await _observe(URL, _runtime_error)
    mine = await _observe(fake.url, _runtime_error)
    assert error_of(mine[2]) == error_of(real[2]) == {
        "node_id": "1", "node_type": "LoadImage", "exception_type": "PIL.UnidentifiedImageError",
        "executed": [],
    }  # fmt: skip


async def test_client_sees_the_same_typed_events(fake: FakeComfyUI) -> None:
    """Our client, on either server, yields the same event classes for the same graph."""

    async def events(url: str) -> list[str]:
        graph = {
            "1": {"class_type": "EmptyImage",
                  "inputs": {"width": 16, "height": 16, "batch_size": 1,
                             "color": uuid.uuid4().int & 0xFFFFFF}},
            "2": _save(["1", 0]),
        }  # fmt: skip
        async with aiohttp.ClientSession() as http, ComfyClient(url, http) as client:
            pid = f"comfybot-cmp-{uuid.uuid4()}"
            async with client.track(pid, timeout_s=60) as tracker:
                await client.submit(graph, prompt_id=pid)
                return [type(ev).__name__ async for ev in tracker]

    assert await events(fake.url) == await events(URL)


async def test_rejection_bodies_match(fake: FakeComfyUI) -> None:
    empty = {"width": -5, "height": 8, "batch_size": 1, "color": 0}
    graph = {"1": {"class_type": "EmptyImage", "inputs": empty}, "2": _save(["1", 0])}

    async def answer(url: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as http, http.post(f"{url}/prompt", json={"prompt": graph}) as r:
            return r.status, await r.json()

    assert await answer(fake.url) == await answer(URL)


async def test_upload_dedup_rename_and_view_refusals_match(fake: FakeComfyUI) -> None:
    async def observe(url: str) -> list[Any]:
        name = f"dedup-{uuid.uuid4().hex}"
        async with aiohttp.ClientSession() as http:
            out: list[Any] = [
                await _upload(http, url, _png((1, 2, 3)), f"{name}.png"),
                await _upload(http, url, _png((1, 2, 3)), f"{name}.png"),  # same bytes: same name
                await _upload(http, url, _png((9, 9, 9)), f"{name}.png"),  # other bytes: renamed
            ]
            for query in (
                {"filename": "../secret.png"},
                {"filename": "/etc/passwd"},
                {"filename": "x.png", "subfolder": "../.."},
                {"filename": "x.png", "type": "bogus"},
                {"filename": f"{name}.png", "type": "input"},  # not in the subfolder
                {"filename": f"{name}.png", "type": "input", "subfolder": SUBFOLDER},
            ):
                async with http.get(f"{url}/view", params=query) as r:
                    out.append((query, r.status))
        return [_renamed(x, name) for x in out]

    assert await observe(fake.url) == await observe(URL)


def _renamed(value: Any, name: str) -> Any:
    """Answers with the per-run random name replaced, so both servers' answers compare equal."""
    if isinstance(value, str):
        return value.replace(name, "<name>")
    if isinstance(value, tuple | list):
        return [_renamed(v, name) for v in value]
    if isinstance(value, dict):
        return {k: _renamed(v, name) for k, v in value.items()}
    return value


def _blur_chain(length: int) -> JSON:
    """EmptyImage → ``length`` × ImageBlur → SaveImage: long enough on a CPU to be interrupted mid-run."""
    color = uuid.uuid4().int & 0xFFFFFF
    graph: JSON = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 1024, "height": 1024, "batch_size": 1, "color": color},
        }
    }
    for i in range(2, length + 2):
        graph[str(i)] = {
            "class_type": "ImageBlur",
            "inputs": {"image": [str(i - 1), 0], "blur_radius": 31, "sigma": 5.0},
        }
    graph["99"] = _save([str(length + 1), 0])
    return graph


async def _interrupted(url: str) -> tuple[list[str], JSON, JSON]:
    """Interrupt a running prompt (as /cancel does): its frame kinds, the interrupt message, its history."""
    async with aiohttp.ClientSession() as http:
        async with WsRecorder(http, url, client_id=uuid.uuid4().hex, metadata=True) as rec:
            pid = f"comfybot-cmp-{uuid.uuid4()}"
            body = {"prompt": _blur_chain(20), "client_id": rec.client_id, "prompt_id": pid}
            async with http.post(f"{url}/prompt", json=body) as r:
                assert r.status == 200
            await rec.wait_for(lambda f: f.get("type") == "executing" and f["data"].get("node") == "3", 60)
            async with http.post(f"{url}/interrupt", json={"prompt_id": pid}) as r:
                assert r.status == 200
            await rec.wait_done(pid, timeout_s=120)
        async with http.get(f"{url}/history/{pid}") as r:
            history = (await r.json())[pid]
    frames = _frames_of(rec, pid)
    (interrupt,) = [f["data"] for f in frames if f.get("type") == "execution_interrupted"]
    return [token(f) for f in frames], interrupt, history


async def test_interrupt_mid_run_matches() -> None:
    def expected(stopped_at: int) -> list[str]:
        # Node k=1..stopped_at-1 ran (progress_state running/finished around executing); the flag is seen as
        # node `stopped_at` starts: executing it, then execution_interrupted and the final executing null.
        ran = ["progress_state", "executing", "progress_state"] * (stopped_at - 1)
        return ["execution_start", "execution_cached", *ran, "progress_state", "executing",
                "execution_interrupted", "executing:null"]  # fmt: skip

    async with FakeComfyUI(node_delay_s=0.1) as fake:
        for url in (URL, fake.url):
            kinds, interrupt, history = await _interrupted(url)
            stopped_at = int(interrupt["node_id"])
            assert stopped_at >= 4, (url, interrupt)
            assert kinds == expected(stopped_at), url
            assert interrupt["node_type"] == "ImageBlur"
            assert sorted(interrupt["executed"], key=int) == [str(i) for i in range(1, stopped_at)]
            assert set(interrupt) == {"prompt_id", "node_id", "node_type", "executed", "timestamp"}
            status = history["status"]
            assert (status["status_str"], status["completed"]) == ("error", False)
            assert status["messages"][-1][0] == "execution_interrupted"
