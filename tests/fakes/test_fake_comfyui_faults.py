"""The fake ComfyUI's fault injection, recordings, options and node behaviours (no traces needed)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from tests.fakes.comfyui import FakeComfyUI, WsRecorder, running_fake_comfyui

JSON = dict[str, Any]


def txt2img(
    seed: int = 1,
    *,
    width: int = 64,
    height: int = 48,
    batch: int = 1,
    steps: int = 3,
    ckpt: str = "sd15.safetensors",
) -> JSON:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": width, "height": height, "batch_size": batch},
        },
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": steps,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {
            "class_type": "SaveImage",
            "inputs": {"images": ["8", 0], "filename_prefix": "comfybot/txt2img"},
        },
    }


async def post(http: aiohttp.ClientSession, url: str, body: JSON) -> tuple[int, Any]:
    async with http.post(f"{url}/prompt", json=body) as r:
        if r.content_type == "application/json":
            return r.status, await r.json()
        return r.status, await r.text()


async def submit(http: aiohttp.ClientSession, url: str, graph: JSON, **extra: Any) -> str:
    status, body = await post(http, url, {"prompt": graph, **extra})
    assert status == 200, body
    return str(body["prompt_id"])


def image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def is_progress(frame: JSON) -> bool:
    return frame.get("type") == "progress"


# ------------------------------------------------------------------------------------------ faults


async def test_refuse_and_accept_connections(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession) -> None:
    url = fake_comfy.url
    async with WsRecorder(http, url, client_id="c") as rec:
        pid = await submit(http, url, txt2img(steps=30), client_id="c")
        await rec.wait_for(is_progress)
        await fake_comfy.refuse_connections()
        await rec.closed.wait()
    with pytest.raises(aiohttp.ClientConnectorError):
        await http.get(f"{url}/prompt")
    with pytest.raises(aiohttp.ClientConnectorError):
        await http.ws_connect(f"{url}/ws")
    entry = await fake_comfy.wait_history(pid)  # the worker kept going while unreachable
    assert entry["status"]["status_str"] == "success"
    await fake_comfy.accept_connections()
    assert fake_comfy.url == url
    async with http.get(f"{url}/history/{pid}") as r:
        assert pid in await r.json()
    async with WsRecorder(http, url, client_id="c") as rec:
        await rec.wait_for(lambda f: f.get("type") == "status")


@pytest.mark.parametrize("abrupt", [True, False])
async def test_drop_websockets(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession, abrupt: bool) -> None:
    async with (
        WsRecorder(http, fake_comfy.url, client_id="a") as a,
        WsRecorder(http, fake_comfy.url, client_id="b") as b,
    ):
        await a.wait_for(lambda f: f.get("type") == "status")
        await b.wait_for(lambda f: f.get("type") == "status")
        await fake_comfy.drop_websockets(abrupt=abrupt)
        await a.closed.wait()
        await b.closed.wait()
    assert fake_comfy.ws_connections == 2
    async with WsRecorder(http, fake_comfy.url, client_id="a") as again:  # reconnecting works
        await again.wait_for(lambda f: f.get("type") == "status")
    assert fake_comfy.ws_connections == 3


async def test_drop_ws_mid_run(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession) -> None:
    fake_comfy.drop_ws_mid_run = True
    async with WsRecorder(http, fake_comfy.url, client_id="c") as rec:
        pid = await submit(http, fake_comfy.url, txt2img(steps=5), client_id="c")
        await rec.closed.wait()
    progress = [f for f in rec.frames if is_progress(f)]
    assert len(progress) == 1  # dropped right after the first progress
    assert not fake_comfy.drop_ws_mid_run  # one-shot
    entry = await fake_comfy.wait_history(pid)
    assert entry["status"]["status_str"] == "success"


async def test_stall_ws_sends_nothing_but_runs(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession) -> None:
    async with WsRecorder(http, fake_comfy.url, client_id="c") as rec:
        await rec.wait_for(lambda f: f.get("type") == "status")
        fake_comfy.stall_ws(60)
        pid = await submit(http, fake_comfy.url, txt2img(), client_id="c")
        await fake_comfy.wait_history(pid)
        assert [f["type"] for f in rec.frames] == ["status"]  # only the greeting
        fake_comfy.clear_faults()  # ends the stall
        second = await submit(http, fake_comfy.url, txt2img(seed=2), client_id="c")
        await rec.wait_done(second)
    assert not any(f.get("data", {}).get("prompt_id") == pid for f in rec.frames)


async def test_fail_node_by_class_and_by_id(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession) -> None:
    fake_comfy.fail_node("KSampler", "RuntimeError", "CUDA out of memory", times=1)
    fake_comfy.fail_node("8", "ValueError", "bad vae", times=1)
    async with WsRecorder(http, fake_comfy.url, client_id="c") as rec:
        first = await submit(http, fake_comfy.url, txt2img(seed=1), client_id="c")
        await rec.wait_done(first)
        second = await submit(http, fake_comfy.url, txt2img(seed=2), client_id="c")
        await rec.wait_done(second)
        third = await submit(http, fake_comfy.url, txt2img(seed=3), client_id="c")
        await rec.wait_done(third)
    errors = rec.json_of("execution_error")
    assert [
        (e["prompt_id"], e["node_id"], e["node_type"], e["exception_type"], e["exception_message"])
        for e in errors
    ] == [
        (first, "3", "KSampler", "RuntimeError", "CUDA out of memory\n"),
        (second, "8", "VAEDecode", "ValueError", "bad vae\n"),
    ]
    # A sampler fails after its first step, as the recorded GwSlowProgress did.
    first_frames = [f for f in rec.frames if f.get("data", {}).get("prompt_id") == first]
    assert [f["data"]["value"] for f in first_frames if is_progress(f)] == [1]
    assert errors[0]["executed"] == ["4", "6", "7", "5"]
    assert set(errors[0]) == {
        "prompt_id",
        "node_id",
        "node_type",
        "executed",
        "exception_message",
        "exception_type",
        "traceback",
        "current_inputs",
        "current_outputs",
        "timestamp",
    }
    history = fake_comfy.history
    assert history[first]["status"]["status_str"] == "error"
    assert history[first]["status"]["messages"][-1][0] == "execution_error"
    assert history[first]["outputs"] == {}
    assert history[third]["status"]["status_str"] == "success"


async def test_fail_node_without_times_fails_until_cleared(
    fake_comfy: FakeComfyUI, http: aiohttp.ClientSession
) -> None:
    fake_comfy.fail_node("SaveImage")
    for seed in (1, 2):
        pid = await submit(http, fake_comfy.url, txt2img(seed=seed))
        assert (await fake_comfy.wait_history(pid))["status"]["status_str"] == "error"
    fake_comfy.clear_faults()
    pid = await submit(http, fake_comfy.url, txt2img(seed=3))
    assert (await fake_comfy.wait_history(pid))["status"]["status_str"] == "success"


async def test_forget_all_simulates_a_restart(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession) -> None:
    done = await submit(http, fake_comfy.url, txt2img(seed=1))
    await fake_comfy.wait_history(done)
    async with WsRecorder(http, fake_comfy.url, client_id="c") as rec:
        running = await submit(http, fake_comfy.url, txt2img(seed=2, steps=100), client_id="c")
        queued = await submit(http, fake_comfy.url, txt2img(seed=3), client_id="c")
        await rec.wait_for(is_progress)
        await fake_comfy.forget_all()
        await rec.closed.wait()
    assert fake_comfy.history == {}
    assert fake_comfy.running_prompt_id is None and fake_comfy.pending_prompt_ids == []
    assert not any(
        f.get("type") in ("execution_success", "execution_error", "execution_interrupted") for f in rec.frames
    )
    async with http.get(f"{fake_comfy.url}/history/{running}") as r:
        assert await r.json() == {}
    async with http.get(f"{fake_comfy.url}/queue") as r:
        assert await r.json() == {"queue_running": [], "queue_pending": []}
    assert queued not in fake_comfy.history
    status, body = await post(http, fake_comfy.url, {"prompt": txt2img(seed=4)})
    assert body["number"] == 0  # the counter restarts like a fresh process
    await fake_comfy.wait_history(body["prompt_id"])


async def test_reject_next(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession) -> None:
    fake_comfy.reject_next()
    fake_comfy.reject_next(503, {"error": "busy"})
    assert await post(http, fake_comfy.url, {"prompt": txt2img()}) == (
        500,
        "500 Internal Server Error\n\nServer got itself in trouble",
    )
    assert await post(http, fake_comfy.url, {"prompt": txt2img()}) == (503, {"error": "busy"})
    status, body = await post(http, fake_comfy.url, {"prompt": txt2img()})
    assert status == 200
    assert len(fake_comfy.received_prompts) == 3
    assert fake_comfy.pending_prompt_ids + [fake_comfy.running_prompt_id] != []


async def test_set_models_and_remove_node_types(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession) -> None:
    fake_comfy.set_models(checkpoints=["other.safetensors"], upscale_models=[])
    status, body = await post(http, fake_comfy.url, {"prompt": txt2img()})
    assert status == 400
    (error,) = body["node_errors"]["4"]["errors"]
    assert error["type"] == "value_not_in_list"
    assert error["details"] == "ckpt_name: 'sd15.safetensors' not in ['other.safetensors']"
    async with http.get(f"{fake_comfy.url}/object_info/UpscaleModelLoader") as r:
        assert (await r.json())["UpscaleModelLoader"]["input"]["required"]["model_name"][0] == []
    fake_comfy.remove_node_types("KSampler")
    status, body = await post(http, fake_comfy.url, {"prompt": txt2img(ckpt="other.safetensors")})
    assert (status, body["error"]["type"]) == (400, "invalid_prompt")
    assert body["error"]["message"] == "Cannot execute because node KSampler does not exist."
    async with http.get(f"{fake_comfy.url}/object_info") as r:
        assert "KSampler" not in await r.json()


async def test_value_bounds_on_int_inputs(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession) -> None:
    status, body = await post(http, fake_comfy.url, {"prompt": txt2img(width=8, steps=0)})
    assert status == 400
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    assert {nid: [e["type"] for e in v["errors"]] for nid, v in body["node_errors"].items()} == {
        "5": ["value_smaller_than_min"],
        "3": ["value_smaller_than_min"],
    }
    assert body["node_errors"]["5"]["dependent_outputs"] == ["9"]
    status, body = await post(http, fake_comfy.url, {"prompt": txt2img(width=20000)})
    assert body["node_errors"]["5"]["errors"][0]["message"] == "Value 20000 bigger than max of 16384"


# ------------------------------------------------------------------------------------------ recordings


async def test_recordings(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession) -> None:
    p1 = "0b7e6e8e-4a2f-4d53-9d0e-3f1c2a5b6c7d"
    body = {"prompt": txt2img(), "client_id": "cid", "prompt_id": p1, "extra_data": {"request_id": "r-1"}}
    status, answer = await post(http, fake_comfy.url, body)
    assert answer["prompt_id"] == p1
    assert fake_comfy.received_prompts == [body]
    entry = await fake_comfy.wait_history(p1)
    stored = dict(entry["prompt"][3])
    assert (
        isinstance(stored.pop("create_time", 0), int)
        and ("create_time" in entry["prompt"][3]) != fake_comfy.legacy
    )
    assert stored == {"request_id": "r-1", "client_id": "cid"}
    assert ("POST", "/prompt") in fake_comfy.requests
    async with http.post(f"{fake_comfy.url}/api/interrupt", json={"prompt_id": "x"}):
        pass
    assert fake_comfy.interrupts == ["x"]
    assert ("POST", "/api/interrupt") in fake_comfy.requests


# ------------------------------------------------------------------------------------------ behaviours


async def test_outputs_sizes_batches_and_counters(
    fake_comfy: FakeComfyUI, http: aiohttp.ClientSession
) -> None:
    first = await submit(http, fake_comfy.url, txt2img(seed=1, width=96, height=64, batch=2))
    second = await submit(http, fake_comfy.url, txt2img(seed=2, width=96, height=64))
    await fake_comfy.wait_idle()
    images = [img for pid in (first, second) for img in fake_comfy.history[pid]["outputs"]["9"]["images"]]
    assert [i["filename"] for i in images] == [
        "txt2img_00001_.png",
        "txt2img_00002_.png",
        "txt2img_00003_.png",
    ]
    assert {i["subfolder"] for i in images} == {"comfybot"}
    async with http.get(
        f"{fake_comfy.url}/view",
        params={"filename": images[2]["filename"], "subfolder": "comfybot", "type": "output"},
    ) as r:
        assert r.headers["Content-Type"] == "image/png"
        assert Image.open(io.BytesIO(await r.read())).size == (96, 64)


async def test_realistic_png_and_output_size() -> None:
    async with running_fake_comfyui(realistic_png=True) as fake, aiohttp.ClientSession() as http:
        pid = await submit(http, fake.url, txt2img())
        entry = await fake.wait_history(pid)
        (image,) = entry["outputs"]["9"]["images"]
        data = (fake.output_dir / image["subfolder"] / image["filename"]).read_bytes()
        assert 1_400_000 < len(data) < 1_700_000
    async with running_fake_comfyui(output_size=(32, 16)) as fake, aiohttp.ClientSession() as http:
        pid = await submit(http, fake.url, txt2img())
        entry = await fake.wait_history(pid)
        (image,) = entry["outputs"]["9"]["images"]
        assert image_size(fake.output_dir / image["subfolder"] / image["filename"]) == (32, 16)


async def test_img2img_upscale_graph(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), "green").save(buf, "PNG")
    form = aiohttp.FormData()
    form.add_field("image", buf.getvalue(), filename="in.png", content_type="image/png")
    form.add_field("subfolder", "comfybot")
    async with http.post(f"{fake_comfy.url}/upload/image", data=form) as r:
        assert await r.json() == {"name": "in.png", "subfolder": "comfybot", "type": "input"}
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "comfybot/in.png"}},
        "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x-UltraSharp.pth"}},
        "3": {
            "class_type": "ImageUpscaleWithModel",
            "inputs": {"upscale_model": ["2", 0], "image": ["1", 0]},
        },
        "4": {
            "class_type": "ImageScaleBy",
            "inputs": {"image": ["3", 0], "upscale_method": "area", "scale_by": 0.5},
        },
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "up"}},
    }
    pid = await submit(http, fake_comfy.url, graph)
    entry = await fake_comfy.wait_history(pid)
    (image,) = entry["outputs"]["5"]["images"]
    assert ("asset_id" in image) != fake_comfy.legacy  # current ComfyUI's outputs carry an asset id
    image.pop("asset_id", None)
    assert image == {"filename": "up_00001_.png", "subfolder": "", "type": "output"}
    assert image_size(fake_comfy.output_dir / "up_00001_.png") == (80, 60)


async def test_partial_execution_targets_and_free_memory(
    fake_comfy: FakeComfyUI, http: aiohttp.ClientSession
) -> None:
    graph = txt2img()
    graph["10"] = {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    pid = await submit(http, fake_comfy.url, graph, partial_execution_targets=["10"])
    entry = await fake_comfy.wait_history(pid)
    assert list(entry["outputs"]) == ["10"] and entry["prompt"][4] == ["10"]
    async with WsRecorder(http, fake_comfy.url, client_id="c") as rec:
        again = await submit(http, fake_comfy.url, graph, client_id="c", partial_execution_targets=["10"])
        await rec.wait_done(again)
        async with http.post(f"{fake_comfy.url}/free", json={"free_memory": True}):
            pass
        third = await submit(http, fake_comfy.url, graph, client_id="c", partial_execution_targets=["10"])
        await rec.wait_done(third)
    cached = rec.json_of("execution_cached")
    assert cached[0]["nodes"] == ["4", "6", "7", "5", "3", "8", "10"]
    assert cached[1]["nodes"] == []


async def test_api_prefixed_websocket_and_prompt(
    fake_comfy: FakeComfyUI, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"{fake_comfy.url}/api/ws?clientId=x") as ws:
        assert (await ws.receive_json())["data"]["sid"] == "x"
        status, body = await post(http, f"{fake_comfy.url}/api", {"prompt": txt2img(), "client_id": "x"})
        assert status == 200
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT and '"node": null' in msg.data:
                break


@pytest.mark.parametrize("faithful", [True, False])
async def test_closing_a_replaced_socket(http: aiohttp.ClientSession, faithful: bool) -> None:
    """ComfyUI unregisters a clientId when any of its sockets closes, even a replaced one."""
    async with running_fake_comfyui(faithful_socket_pop=faithful) as fake:
        old = await WsRecorder(http, fake.url, client_id="same").__aenter__()
        async with WsRecorder(http, fake.url, client_id="same") as new:
            await new.wait_for(lambda f: f.get("type") == "status")
            await old.close()
            if faithful:
                await fake.wait_disconnected("same")
            pid = await submit(http, fake.url, txt2img(), client_id="same")
            await fake.wait_history(pid)
            if faithful:  # the successor was silenced: not even the status broadcasts reach it
                assert [f["type"] for f in new.frames] == ["status"]
            else:
                await new.wait_done(pid)


async def test_interrupt_lets_a_node_without_progress_finish(http: aiohttp.ClientSession) -> None:
    """The flag is checked as each node starts and at each progress step, so a slow loader completes."""
    async with (
        running_fake_comfyui(node_delay_s=0.3) as fake,
        WsRecorder(http, fake.url, client_id="c") as rec,
    ):
        pid = await submit(http, fake.url, txt2img(), client_id="c")
        await rec.wait_for(lambda f: f.get("type") == "executing" and f["data"].get("node") == "4")
        async with http.post(f"{fake.url}/interrupt", json={"prompt_id": pid}):
            pass
        await rec.wait_done(pid)
    (interrupted,) = rec.json_of("execution_interrupted")
    assert (interrupted["node_id"], interrupted["node_type"], interrupted["executed"]) == (
        "6",
        "CLIPTextEncode",
        ["4"],
    )
    assert fake.history[pid]["status"]["messages"][-1][0] == "execution_interrupted"


async def test_long_combo_lists_are_summarised(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession) -> None:
    graph = txt2img()
    graph["3"]["inputs"]["sampler_name"] = "magic"
    status, body = await post(http, fake_comfy.url, {"prompt": graph})
    (error,) = body["node_errors"]["3"]["errors"]
    assert error["details"].startswith("sampler_name: 'magic' not in (list of length ")
    assert error["extra_info"]["input_config"] is None
    graph["3"]["inputs"]["sampler_name"] = "dpmpp_2m_sde"
    assert (await post(http, fake_comfy.url, {"prompt": graph}))[0] == 200


WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


@pytest.mark.parametrize("name", ["txt2img", "hires", "img2img", "upscale"])
async def test_shipped_workflows_run_with_default_models(
    fake_comfy: FakeComfyUI, http: aiohttp.ClientSession, name: str
) -> None:
    """Every node type and default model of ``workflows/*.json`` is known to the fake."""
    path = WORKFLOWS / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    graph = json.loads(path.read_text())
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), "green").save(buf, "PNG")
    form = aiohttp.FormData()
    form.add_field("image", buf.getvalue(), filename="src.png", content_type="image/png")
    async with http.post(f"{fake_comfy.url}/upload/image", data=form) as r:
        assert r.status == 200
    for node in graph.values():
        if node["class_type"] == "LoadImage":
            node["inputs"]["image"] = "src.png"
    pid = await submit(http, fake_comfy.url, graph)
    entry = await fake_comfy.wait_history(pid)
    assert entry["status"]["status_str"] == "success"
    images = [i for out in entry["outputs"].values() for i in out.get("images", [])]
    assert images
    size = image_size(fake_comfy.output_dir / images[0]["subfolder"] / images[0]["filename"])
    expected = {"txt2img": (512, 512), "hires": (768, 768), "img2img": (64, 48), "upscale": (256, 192)}
    assert size == expected[name]


class _SleepRecordingFake(FakeComfyUI):
    """Records the delays the worker asks for instead of sleeping them (no wall-clock in tests)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.slept: list[float] = []

    async def _sleep(self, run: Any, seconds: float) -> None:
        self.slept.append(run.unit_delay_s if run.unit_delay_s is not None else seconds)


async def test_run_time_is_spread_over_nodes_and_steps(http: aiohttp.ClientSession) -> None:
    async with _SleepRecordingFake(run_time_s=0.5) as fake:
        pid = await submit(http, fake.url, txt2img(steps=10))
        await fake.wait_history(pid)
        assert len(fake.slept) == 6 + 10  # six plain nodes, ten sampler steps
        assert sum(fake.slept) == pytest.approx(0.5)
        fake.run_time_s = None
        fake.slept.clear()
        pid = await submit(http, fake.url, txt2img(seed=2, steps=4))
        await fake.wait_history(pid)
        # only the sampler and what follows it re-run; the rest is cached
        assert fake.slept == [fake.step_delay_s] * 4 + [fake.node_delay_s] * 2


async def test_stop_after_refuse_and_twice() -> None:
    fake = FakeComfyUI()
    await fake.start()
    await fake.refuse_connections()
    await fake.stop()
    await fake.stop()
    assert not fake.root.exists()


async def test_png_text_chunks(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession) -> None:
    extra = {"extra_pnginfo": {"workflow": {"note": "x"}}}
    pid = await submit(http, fake_comfy.url, txt2img(), extra_data=extra)
    entry = await fake_comfy.wait_history(pid)
    (image,) = entry["outputs"]["9"]["images"]
    with Image.open(fake_comfy.output_dir / image["subfolder"] / image["filename"]) as img:
        chunks = dict(img.text)  # type: ignore[attr-defined]
    assert json.loads(chunks["workflow"]) == {"note": "x"}
    assert json.loads(chunks["prompt"])["3"]["class_type"] == "KSampler"


async def test_load_image_of_a_non_image_fails_at_run_time_like_comfyui(
    fake_comfy: FakeComfyUI, http: aiohttp.ClientSession
) -> None:
    """Regression: the fake's worker died on an undecodable input (its prompt never finished).

    ComfyUI's upload does not look inside the file, LoadImage validation only checks it exists, and the
    node fails when PIL opens it (observed on 0.3.64; see tests/fakes/test_fake_vs_real.py).
    """
    form = aiohttp.FormData()
    form.add_field("image", b"not an image", filename="broken.png", content_type="image/png")
    async with http.post(f"{fake_comfy.url}/upload/image", data=form) as r:
        assert r.status == 200
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "broken.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }
    first = await submit(http, fake_comfy.url, graph)
    entry = await fake_comfy.wait_history(first)
    assert entry["status"]["status_str"] == "error"
    kind, error = entry["status"]["messages"][-1]
    assert kind == "execution_error"
    assert (error["node_id"], error["node_type"], error["exception_type"]) == (
        "1",
        "LoadImage",
        "PIL.UnidentifiedImageError",
    )
    assert error["current_outputs"] == ["2", "1"]
    # The fake keeps working after the failure.
    second = await submit(http, fake_comfy.url, txt2img(seed=5))
    assert (await fake_comfy.wait_history(second))["status"]["status_str"] == "success"
