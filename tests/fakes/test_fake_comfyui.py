"""The fake ComfyUI against the recordings of a real ComfyUI 0.3.64 (``shared/comfyui/traces``).

WebSocket scenarios are replayed with the recorded graphs; the *sequence of message kinds* and the *key
shapes* of every message are compared with the trace. HTTP answers are compared by status and body.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from tests.fakes.comfyui import FakeComfyUI, WsRecorder

TRACES = Path(__file__).resolve().parents[3] / "shared/comfyui/traces"
pytestmark = pytest.mark.skipif(
    not TRACES.is_dir(),
    reason=f"ComfyUI traces not found at {TRACES} (the shared/ folder beside the checkout)",
)

JSON = dict[str, Any]
_PROGRESS_TOKENS = {"progress_state", "progress", "binary:1", "binary:4"}


# ------------------------------------------------------------------------------------------ helpers


def load_trace(name: str) -> list[JSON]:
    lines = (TRACES / f"ws_trace_{name}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def http_results() -> JSON:
    data: JSON = json.loads((TRACES / "http_results.json").read_text())
    return data


def token(frame: JSON) -> str:
    """What a frame *is*, without ids or values."""
    if frame["kind"] == "binary":
        return f"binary:{frame['event']}"
    type_, data = frame["type"], frame["data"]
    if type_ == "status" and "sid" in data:
        return "status:sid"
    if type_ == "executing":
        if data.get("node") is None:
            return "executing:null"
        return "executing" if "prompt_id" in data else "executing:bare"
    return str(type_)


def collapse(tokens: list[str]) -> list[str]:
    """Fold timing-dependent repetition: within a run of progress tokens, consecutive identical units
    (each starting at a ``progress_state``) are kept once."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        if tokens[i] not in _PROGRESS_TOKENS:
            out.append(tokens[i])
            i += 1
            continue
        units: list[list[str]] = []
        while i < len(tokens) and tokens[i] in _PROGRESS_TOKENS:
            if tokens[i] == "progress_state" or not units:
                units.append([])
            units[-1].append(tokens[i])
            i += 1
        for unit in units:
            if not out or out[-len(unit) :] != unit:
                out.extend(unit)
    return out


#: fields current ComfyUI adds to what 0.3.64 sent (docs/COMFYUI_VERSIONS.md); the recordings are of
#: 0.3.64, so they are left out of the comparison (the fake's own jobs tests check them)
ADDED_SINCE_0_3_64 = frozenset({"asset_id", "activity", "create_time"})


def shape(value: Any) -> Any:
    """The key structure of a JSON value: dict keys (numeric node ids folded into ``<id>``), value kinds;
    the fields newer servers add (``ADDED_SINCE_0_3_64``) left out."""
    if isinstance(value, dict):
        if value and all(isinstance(k, str) and k.isdigit() for k in value):
            return {"<id>": shape(next(iter(value.values())))}
        return {k: shape(v) for k, v in value.items() if k not in ADDED_SINCE_0_3_64}
    if isinstance(value, list):
        kinds: list[Any] = []
        for item in value:
            s = shape(item)
            if s not in kinds:
                kinds.append(s)
        return ["list", *kinds]
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "num"
    if value is None:
        return "null"
    return "str"


def entry_shape(history: JSON) -> Any:
    """The shape of the single entry of a ``/history/{id}`` answer (its key is the prompt id)."""
    (entry,) = history.values()
    return shape(entry)


def frame_shape(frame: JSON) -> Any:
    if frame["kind"] == "binary":
        return {
            k: (shape(v) if k == "metadata" else v)
            for k, v in frame.items()
            if k in ("event", "image_format", "metadata", "magic")
        }
    return shape(frame["data"])


def assert_matches_trace(frames: list[JSON], trace: list[JSON], *, exact: bool = True) -> None:
    got = [token(f) for f in frames]
    want = [token(f) for f in trace]
    if not exact:
        got, want = collapse(got), collapse(want)
    assert got == want
    if exact:
        for mine, recorded in zip(frames, trace, strict=True):
            assert frame_shape(mine) == frame_shape(recorded), (token(mine), mine, recorded)
    else:  # aligned on kind: every kind's shapes must be among the recorded ones
        recorded_shapes: dict[str, list[Any]] = {}
        for f in trace:
            recorded_shapes.setdefault(token(f), []).append(frame_shape(f))
        for f in frames:
            assert frame_shape(f) in recorded_shapes[token(f)], (token(f), f)


async def post(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with http.post(f"{url}/prompt", json=body) as r:
        return r.status, await r.json()


def recorded_graph(key: str) -> JSON:
    entry = next(iter(http_results()[key][1].values()))
    graph: JSON = entry["prompt"][2]
    return graph


def basic_graph(**node1: Any) -> JSON:
    graph = recorded_graph("basic_history")
    graph["1"]["inputs"].update(node1)
    return graph


def slow_graph(steps: int, *, fail_at: int = -1, delay: float = 0.005) -> JSON:
    graph = recorded_graph("runtime_error_history")
    graph["2"]["inputs"].update(steps=steps, fail_at=fail_at, delay=delay)
    return graph


def tinysd_graph(seed: int) -> JSON:
    graph = recorded_graph("tinysd_metadata_history")
    graph["3"]["inputs"]["seed"] = seed
    return graph


@pytest.fixture
async def tiny_comfy() -> Any:
    async with FakeComfyUI(checkpoints=["tiny_sd15_fullclip.safetensors"]) as fake:
        yield fake


# ------------------------------------------------------------------------------------------ WS scenarios


async def test_basic_fresh_cached_and_own_id(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession) -> None:
    results = http_results()
    async with WsRecorder(http, fake_comfy.url, client_id="c-basic") as rec:
        status, first = await post(http, fake_comfy.url, {"prompt": basic_graph(), "client_id": "c-basic"})
        assert status == 200
        assert shape(first) == shape(results["basic_post"][1])
        await rec.wait_done(first["prompt_id"])
        extra = {"extra_pnginfo": {"workflow": {"note": "x"}}}
        _, again = await post(
            http, fake_comfy.url, {"prompt": basic_graph(), "client_id": "c-basic", "extra_data": extra}
        )
        await rec.wait_done(again["prompt_id"])
        own_id = str(uuid.uuid4())
        status, own = await post(
            http,
            fake_comfy.url,
            {"prompt": basic_graph(color=1), "client_id": "c-basic", "prompt_id": own_id, "number": 5},
        )
        assert own == {"prompt_id": own_id, "number": 5.0, "node_errors": {}}
        await rec.wait_done(own_id)
    assert_matches_trace(rec.frames, load_trace("basic"))
    # The re-run is fully cached and re-sends the same output, as recorded.
    executed = rec.json_of("executed")
    assert executed[0]["output"] == executed[1]["output"]
    assert rec.json_of("execution_cached")[1]["nodes"] == ["1", "2", "3", "4", "5"]
    async with http.get(f"{fake_comfy.url}/history/{first['prompt_id']}") as r:
        assert entry_shape(await r.json()) == entry_shape(results["basic_history"][1])
    async with http.get(f"{fake_comfy.url}/history/{again['prompt_id']}") as r:
        assert entry_shape(await r.json()) == entry_shape(results["basic_history_again"][1])


async def test_other_client_sees_only_status(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession) -> None:
    async with (
        WsRecorder(http, fake_comfy.url, client_id="me") as rec,
        WsRecorder(http, fake_comfy.url, client_id="other") as other,
    ):
        _, body = await post(http, fake_comfy.url, {"prompt": basic_graph(), "client_id": "me"})
        await rec.wait_done(body["prompt_id"])
        await other.wait_for(
            lambda f: (
                f["type"] == "status"
                and f["data"]["status"]["exec_info"] == {"queue_remaining": 0}
                and len(other.frames) > 1
            )
        )
    trace = load_trace("basic_other_client")
    assert [token(f) for f in other.frames] == [token(f) for f in trace[:4]]


async def test_upload_load(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession) -> None:
    results = http_results()
    async with WsRecorder(http, fake_comfy.url, client_id="c-up") as rec:
        assert await upload(
            http, fake_comfy.url, png_bytes((64, 48), "red"), "gw_upload.png", subfolder="gw"
        ) == (200, results["upload_image"][0][1])
        _, body = await post(
            http, fake_comfy.url, {"prompt": recorded_graph("upload_history"), "client_id": "c-up"}
        )
        await rec.wait_done(body["prompt_id"])
    assert_matches_trace(rec.frames, load_trace("upload_load"))
    async with http.get(f"{fake_comfy.url}/history/{body['prompt_id']}") as r:
        entry = await r.json()
    assert entry_shape(entry) == entry_shape(results["upload_history"][1])
    images = {k: v["images"][0] for k, v in entry[body["prompt_id"]]["outputs"].items()}
    assert images["13"]["type"] == "temp" and images["13"]["filename"].startswith("ComfyUI_temp_")
    saved = {k: v for k, v in images["12"].items() if k not in ADDED_SINCE_0_3_64}
    assert saved == {"filename": "loaded_00001_.png", "subfolder": "gw_test", "type": "output"}
    async with http.get(
        f"{fake_comfy.url}/view", params={"filename": "loaded_00001_.png", "subfolder": "gw_test"}
    ) as r:
        assert Image.open(io.BytesIO(await r.read())).size == (160, 120)


@pytest.mark.parametrize("mode", ["metadata", "legacy"])
async def test_custom_progress(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession, mode: str) -> None:
    """GwSlowProgress, the traces' own test node: progress + JPEG previews in both preview modes.

    As recorded, the metadata run came first and the legacy run found the EmptyImage cached."""
    if mode == "legacy":
        _, warm = await post(http, fake_comfy.url, {"prompt": slow_graph(4)})
        await fake_comfy.wait_history(warm["prompt_id"])
    async with WsRecorder(http, fake_comfy.url, client_id="c", metadata=mode == "metadata") as rec:
        steps = 4 if mode == "metadata" else 3
        _, body = await post(http, fake_comfy.url, {"prompt": slow_graph(steps), "client_id": "c"})
        await rec.wait_done(body["prompt_id"])
    assert_matches_trace(rec.frames, load_trace(f"custom_progress_{mode}"))


@pytest.mark.parametrize("mode", ["metadata", "legacy"])
async def test_tinysd_ksampler(tiny_comfy: FakeComfyUI, http: aiohttp.ClientSession, mode: str) -> None:
    """KSampler steps + previews; as recorded, the legacy run re-used the loader/text/latent nodes."""
    if mode == "legacy":
        _, warm = await post(http, tiny_comfy.url, {"prompt": tinysd_graph(1)})
        await tiny_comfy.wait_history(warm["prompt_id"])
    async with WsRecorder(http, tiny_comfy.url, client_id="c", metadata=mode == "metadata") as rec:
        _, body = await post(http, tiny_comfy.url, {"prompt": tinysd_graph(2), "client_id": "c"})
        await rec.wait_done(body["prompt_id"])
    assert_matches_trace(rec.frames, load_trace(f"tinysd_{mode}"))
    if mode == "legacy":
        assert rec.json_of("execution_cached")[0]["nodes"] == ["4", "6", "7", "5"]
    progress = rec.json_of("progress")
    assert [(p["value"], p["max"]) for p in progress] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    async with http.get(f"{tiny_comfy.url}/history/{body['prompt_id']}") as r:
        assert entry_shape(await r.json()) == entry_shape(http_results()[f"tinysd_{mode}_history"][1])


@pytest.mark.parametrize("mode", ["legacy", "metadata"])
async def test_save_image_websocket(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession, mode: str) -> None:
    graph = recorded_graph(f"wsimage_{mode}_history")
    if mode == "metadata":
        _, warm = await post(http, fake_comfy.url, {"prompt": graph})
        await fake_comfy.wait_history(warm["prompt_id"])
    async with WsRecorder(http, fake_comfy.url, client_id="c", metadata=mode == "metadata") as rec:
        _, body = await post(http, fake_comfy.url, {"prompt": graph, "client_id": "c"})
        await rec.wait_done(body["prompt_id"])
    assert_matches_trace(rec.frames, load_trace(f"wsimage_{mode}"))


async def test_progress_text_frames(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession) -> None:
    graph = recorded_graph("text_history")
    async with WsRecorder(http, fake_comfy.url, client_id="c") as rec:
        _, body = await post(http, fake_comfy.url, {"prompt": graph, "client_id": "c"})
        await rec.wait_done(body["prompt_id"])
    trace = load_trace("progress_text")
    assert_matches_trace(rec.frames, trace)
    (text,) = [f for f in rec.frames if f["kind"] == "binary"]
    (recorded,) = [f for f in trace if f["kind"] == "binary"]
    assert (text["node_id"], text["text"]) == (recorded["node_id"], recorded["text"])
    assert rec.json_of("executed")[0]["output"] == {"text": ["40"]}
    async with http.get(f"{fake_comfy.url}/history/{body['prompt_id']}") as r:
        assert entry_shape(await r.json()) == entry_shape(http_results()["text_history"][1])


async def test_errors_partial_then_runtime(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession) -> None:
    results = http_results()
    partial = basic_graph()
    partial["7"] = {
        "class_type": "ImageScale",
        "inputs": {
            "image": ["4", 0],
            "upscale_method": "bogus",
            "width": 64,
            "height": 64,
            "crop": "disabled",
        },
    }
    partial["6"] = {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "gw_test/x"}}
    async with WsRecorder(http, fake_comfy.url, client_id="c-err") as rec:
        status, body = await post(http, fake_comfy.url, {"prompt": partial, "client_id": "c-err"})
        assert status == 200
        assert body["node_errors"] == results["err_partial_valid"][1]["node_errors"]
        await rec.wait_done(body["prompt_id"])
        status, failing = await post(
            http, fake_comfy.url, {"prompt": slow_graph(3, fail_at=1), "client_id": "c-err"}
        )
        await rec.wait_done(failing["prompt_id"])
    assert_matches_trace(rec.frames, load_trace("errors"))
    error = rec.json_of("execution_error")[0]
    assert error["exception_message"] == "GwSlowProgress failing on purpose at step 1\n"
    assert (error["node_id"], error["node_type"], error["executed"]) == ("2", "GwSlowProgress", ["1"])
    async with http.get(f"{fake_comfy.url}/history/{failing['prompt_id']}") as r:
        entry = await r.json()
    assert entry_shape(entry) == entry_shape(results["runtime_error_history"][1])
    status_ = entry[failing["prompt_id"]]["status"]
    assert (status_["status_str"], status_["completed"]) == ("error", False)


async def test_interrupt_wrong_id_targeted_and_global(
    fake_comfy: FakeComfyUI, http: aiohttp.ClientSession
) -> None:
    results = http_results()

    def first_progress(pid: str) -> Callable[[JSON], bool]:
        return lambda f: f.get("type") == "progress" and f["data"]["prompt_id"] == pid

    _, earlier = await post(http, fake_comfy.url, {"prompt": slow_graph(1)})  # the trace found node 1 cached
    await fake_comfy.wait_history(earlier["prompt_id"])
    async with WsRecorder(http, fake_comfy.url, client_id="c-int") as rec:
        _, warm = await post(http, fake_comfy.url, {"prompt": slow_graph(6), "client_id": "c-int"})
        await rec.wait_for(first_progress(warm["prompt_id"]))
        async with http.post(f"{fake_comfy.url}/interrupt", json={"prompt_id": "not-running"}) as r:
            assert (r.status, await r.text()) == (200, results["interrupt_wrong_id"][1])
        await rec.wait_done(warm["prompt_id"])

        _, target = await post(
            http, fake_comfy.url, {"prompt": slow_graph(20, delay=0.05), "client_id": "c-int"}
        )
        await rec.wait_for(first_progress(target["prompt_id"]))
        async with http.post(f"{fake_comfy.url}/interrupt", json={"prompt_id": target["prompt_id"]}) as r:
            assert r.status == 200
        await rec.wait_done(target["prompt_id"])

        _, anon = await post(http, fake_comfy.url, {"prompt": slow_graph(20, delay=0.05)})
        await rec.wait_for(first_progress(anon["prompt_id"]))
        async with http.post(f"{fake_comfy.url}/interrupt") as r:
            assert r.status == 200
        await rec.wait_for(
            lambda f: f.get("type") == "execution_interrupted" and f["data"]["prompt_id"] == anon["prompt_id"]
        )
        await rec.wait_for(
            lambda f: (
                f.get("type") == "status"
                and f is rec.frames[-1]
                and f["data"]["status"]["exec_info"]["queue_remaining"] == 0
                and rec.frames[-2].get("type") == "execution_interrupted"
            )
        )
    assert_matches_trace(rec.frames, load_trace("interrupt"), exact=False)
    assert fake_comfy.interrupts == ["not-running", target["prompt_id"], None]
    history = await (await http.get(f"{fake_comfy.url}/history/{target['prompt_id']}")).json()
    assert entry_shape(history) == entry_shape(results["interrupt_history"][1])
    assert fake_comfy.history[warm["prompt_id"]]["status"]["status_str"] == "success"
    assert shape(fake_comfy.history[anon["prompt_id"]]["status"]) == shape(
        results["interrupt_noclient_history_status"]
    )


async def test_queue_scenario_ws(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession) -> None:
    """Posts, a front jump, a delete and a clear while a prompt runs: status broadcasts as recorded."""
    earlier = (await post(http, fake_comfy.url, {"prompt": slow_graph(1)}))[1]["prompt_id"]
    await fake_comfy.wait_history(earlier)  # the trace found node 1 cached

    def executing(pid: str) -> Callable[[JSON], bool]:
        return lambda f: (
            f.get("type") == "executing" and f["data"].get("node") == "2" and (f["data"]["prompt_id"] == pid)
        )

    async with WsRecorder(http, fake_comfy.url, client_id="q") as rec:
        slow, fast = slow_graph(3, delay=0.3), slow_graph(2)
        _, a = await post(http, fake_comfy.url, {"prompt": slow, "client_id": "q"})
        await rec.wait_for(executing(a["prompt_id"]))
        _, b = await post(http, fake_comfy.url, {"prompt": fast, "client_id": "q"})
        _, d = await post(http, fake_comfy.url, {"prompt": slow_graph(2, delay=0.004), "client_id": "q"})
        _, e = await post(http, fake_comfy.url, {"prompt": fast, "client_id": "q", "front": True})
        await http.post(f"{fake_comfy.url}/queue", json={"delete": [b["prompt_id"]]})
        await rec.wait_done(d["prompt_id"])
        _, f = await post(http, fake_comfy.url, {"prompt": slow_graph(3, delay=0.3), "client_id": "q"})
        await rec.wait_for(executing(f["prompt_id"]))
        await post(http, fake_comfy.url, {"prompt": fast, "client_id": "q"})
        await http.post(f"{fake_comfy.url}/queue", json={"clear": True})
        await rec.wait_done(f["prompt_id"])
    assert_matches_trace(rec.frames, load_trace("queue"), exact=False)
    order = [x["prompt_id"] for x in rec.json_of("execution_start")]
    assert order == [a["prompt_id"], e["prompt_id"], d["prompt_id"], f["prompt_id"]]


async def test_prompt_without_client_id_observer(
    fake_comfy: FakeComfyUI, http: aiohttp.ClientSession
) -> None:
    async with WsRecorder(http, fake_comfy.url, client_id="observer") as rec:
        _, body = await post(http, fake_comfy.url, {"prompt": basic_graph()})
        await fake_comfy.wait_history(body["prompt_id"])
        await rec.wait_for(
            lambda f: (
                f.get("type") == "status"
                and f is rec.frames[-1]
                and f["data"]["status"]["exec_info"]["queue_remaining"] == 0
                and len(rec.frames) > 3
            )
        )
    assert_matches_trace(rec.frames, load_trace("no_client_id_prompt_observer"))


async def test_reconnect_same_client_id(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession) -> None:
    async with WsRecorder(http, fake_comfy.url, client_id="same") as first:
        _, body = await post(
            http, fake_comfy.url, {"prompt": slow_graph(10, delay=0.02), "client_id": "same"}
        )
        await first.wait_for(lambda f: f.get("type") == "progress" and f["data"]["value"] == 3)
        async with WsRecorder(http, fake_comfy.url, client_id="same") as second:
            await second.wait_done(body["prompt_id"])
    assert_matches_trace(second.frames, load_trace("reconnect_same_client_id"), exact=False)
    assert second.frames[1]["data"] == {"node": "2"}
    # The replaced socket got nothing after the new one connected.
    assert not any(f.get("type") == "executing" and f["data"].get("node") is None for f in first.frames)


@pytest.mark.parametrize(
    ("trace", "graph", "metadata"),
    [
        ("tinysd_metadata", lambda: tinysd_graph(2), True),
        ("custom_progress_metadata", lambda: slow_graph(4), True),
        ("wsimage_legacy", lambda: recorded_graph("wsimage_legacy_history"), False),
        ("progress_text", lambda: recorded_graph("text_history"), False),
    ],
)
async def test_run_time_budget_keeps_the_recorded_order(
    http: aiohttp.ClientSession, trace: str, graph: Callable[[], JSON], metadata: bool
) -> None:
    """With ``run_time_s`` a node works, then waits out its unit (not the other way round): same frames."""
    checkpoints = ["tiny_sd15_fullclip.safetensors"]
    async with (
        FakeComfyUI(run_time_s=0.1, checkpoints=checkpoints) as fake,
        WsRecorder(http, fake.url, client_id="c", metadata=metadata) as rec,
    ):
        _, body = await post(http, fake.url, {"prompt": graph(), "client_id": "c"})
        await rec.wait_done(body["prompt_id"])
    assert_matches_trace(rec.frames, load_trace(trace))


# ------------------------------------------------------------------------------------------ HTTP answers


def png_bytes(size: tuple[int, int], color: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


async def upload(
    http: aiohttp.ClientSession, url: str, data: bytes, filename: str, **fields: str
) -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field("image", data, filename=filename, content_type="image/png")
    for k, v in fields.items():
        form.add_field(k, v)
    async with http.post(f"{url}/upload/image", data=form) as r:
        text = await r.text()
        return r.status, (json.loads(text) if r.content_type == "application/json" else text)


def _error_graphs() -> dict[str, JSON]:
    return {
        "err_value_smaller_than_min": basic_graph(width=-5),
        "err_unknown_class": {"1": {"class_type": "NoSuchNode", "inputs": {}}},
        "err_missing_class_type": {"1": {"inputs": {}}},
        "err_no_outputs": {"1": recorded_graph("basic_history")["1"]},
        "err_missing_input": {"1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x"}}},
        "err_type_mismatch": {
            "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
        },
        "err_bad_int": basic_graph(width="wide"),
        "err_loadimage_missing_file": {
            "1": {"class_type": "LoadImage", "inputs": {"image": "does_not_exist.png"}},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        },
    }


@pytest.mark.parametrize("case", sorted(_error_graphs()) if TRACES.is_dir() else [])
async def test_validation_errors_as_recorded(
    fake_comfy: FakeComfyUI, http: aiohttp.ClientSession, case: str
) -> None:
    status, body = await post(http, fake_comfy.url, {"prompt": _error_graphs()[case], "client_id": "x"})
    assert [status, body] == http_results()[case]


async def test_not_in_list_no_prompt_invalid_json(
    fake_comfy: FakeComfyUI, http: aiohttp.ClientSession
) -> None:
    results = http_results()
    graph = basic_graph()
    graph["4"]["inputs"]["upscale_method"] = "magic"
    assert list(await post(http, fake_comfy.url, {"prompt": graph})) == results["err_not_in_list"]
    assert list(await post(http, fake_comfy.url, {"client_id": "x"})) == results["err_no_prompt"]
    for path in ("/prompt", "/api/prompt", "/queue", "/history", "/free"):
        async with http.post(f"{fake_comfy.url}{path}", data=b"{not json") as r:
            assert [r.status, await r.text()] == results["err_invalid_json"]
            assert r.content_type == "text/plain"
    assert fake_comfy.history == {}


async def test_view_as_recorded(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession) -> None:
    results = http_results()
    _, body = await post(http, fake_comfy.url, {"prompt": basic_graph()})
    await fake_comfy.wait_history(body["prompt_id"])
    name = "basic_00001_.png"
    cases: dict[str, dict[str, str]] = {
        "view_ok": {"filename": name, "subfolder": "gw_test", "type": "output"},
        "view_dotdot_filename": {"filename": "../x.png", "subfolder": "gw_test"},
        "view_abs_filename": {"filename": "/etc/passwd"},
        "view_dotdot_subfolder": {"filename": "passwd", "subfolder": "../../../etc"},
        "view_bad_type": {"filename": name, "type": "models"},
        "view_missing": {"filename": "nope.png", "subfolder": "gw_test"},
        "view_annotated": {"filename": f"{name} [output]", "subfolder": "gw_test"},
        "view_no_filename": {"subfolder": "gw_test"},
    }
    for case, params in cases.items():
        async with http.get(f"{fake_comfy.url}/view", params=params) as r:
            data = await r.read()
            assert r.status == results[case][0], case
            if case == "view_ok":
                assert r.headers["Content-Type"] == "image/png"
                assert r.headers["Content-Disposition"] == f'filename="{name}"'
                img = Image.open(io.BytesIO(data))
                assert list(img.size) == results[case][3] == [128, 96]
                assert json.loads(img.text["prompt"])["1"]["class_type"] == "EmptyImage"  # type: ignore[attr-defined]
            elif r.status != 200:
                assert data == b""
    async with http.get(
        f"{fake_comfy.url}/view", params={"filename": name, "subfolder": "gw_test", "preview": "jpeg;50"}
    ) as r:
        assert (r.status, r.content_type) == tuple(results["view_preview_jpeg"][:2])
        assert (await r.read())[:2] == b"\xff\xd8"


async def test_upload_dedup_rename_overwrite_and_refusals(
    fake_comfy: FakeComfyUI, http: aiohttp.ClientSession
) -> None:
    results = http_results()
    first, other = png_bytes((8, 8), "red"), png_bytes((8, 8), "blue")
    answers = [
        await upload(http, fake_comfy.url, first, "gw_upload.png", subfolder="gw"),
        await upload(http, fake_comfy.url, first, "gw_upload.png", subfolder="gw"),
        await upload(http, fake_comfy.url, other, "gw_upload.png", subfolder="gw"),
        await upload(http, fake_comfy.url, other, "gw_upload.png", subfolder="gw", overwrite="true"),
    ]
    assert [list(a) for a in answers] == results["upload_image"]
    assert (fake_comfy.input_dir / "gw" / "gw_upload.png").read_bytes() == other
    assert [u["duplicate"] for u in fake_comfy.uploads] == [False, True, False, False]
    assert (
        list(await upload(http, fake_comfy.url, first, "x.png", subfolder="../../etc"))
        == results["upload_traversal"]
    )
    form = aiohttp.FormData()
    form.add_field("subfolder", "gw")
    async with http.post(f"{fake_comfy.url}/upload/image", data=form) as r:
        assert [r.status, await r.text()] == results["upload_no_image_field"]
    assert (await upload(http, fake_comfy.url, first, "x.png", type="models"))[0] == 500


async def test_upload_too_big() -> None:
    async with FakeComfyUI(max_upload_size=1000) as fake, aiohttp.ClientSession() as http:
        status, text = await upload(http, fake.url, b"x" * 5000, "big.png")
        assert [status, text] == [413, http_results()["upload_too_big"][1].replace("104857600", "1000")]


async def test_queue_operations_as_recorded(http: aiohttp.ClientSession) -> None:
    results = http_results()
    async with FakeComfyUI() as fake, WsRecorder(http, fake.url, client_id="q") as rec:
        posts = []
        for steps, front in ((40, False), (2, False), (2, False), (2, True)):
            body: JSON = {"prompt": slow_graph(steps, delay=0.05 if steps == 40 else 0.002), "client_id": "q"}
            if front:
                body["front"] = True
            status, answer = await post(http, fake.url, body)
            posts.append(answer)
        a, b, d, e = (p["prompt_id"] for p in posts)
        assert [p["number"] for p in posts] == [0, 1, 2, -3]
        async with http.get(f"{fake.url}/queue") as r:
            queue = await r.json()
        recorded = results["queue_get"]
        assert [item[0] for item in queue["queue_pending"]] == [-3, 2, 1]  # the raw heap, like [-26, 25, 24]
        assert len(queue["queue_running"][0]) == recorded["raw_item_len"]
        assert queue["queue_running"][0][1] == a
        async with http.get(f"{fake.url}/prompt") as r:
            assert entry_shape(await r.json()) == entry_shape(results["prompt_get"][1])
            assert (await r.json())["exec_info"]["queue_remaining"] == 4
        async with http.post(f"{fake.url}/queue", json={"delete": [b, "unknown"]}) as r:
            assert [r.status, await r.text()] == results["queue_delete"]
        assert fake.pending_prompt_ids == [e, d]
        _, f = await post(http, fake.url, {"prompt": slow_graph(2, delay=0.002), "client_id": "q"})
        _, g = await post(http, fake.url, {"prompt": slow_graph(2, delay=0.002), "client_id": "q"})
        async with http.post(f"{fake.url}/queue", json={"delete": [g["prompt_id"]]}) as r:
            assert r.status == 200
        await rec.wait_done(f["prompt_id"])
        order = [x["prompt_id"] for x in rec.json_of("execution_start")]
        assert order == [a, e, d, f["prompt_id"]]
        async with http.get(f"{fake.url}/history/{b}") as r:
            assert [r.status, await r.json()] == results["queue_deleted_history"]
        assert fake.deleted == [b, "unknown", g["prompt_id"]]
        # clear wipes every pending prompt
        _, h = await post(http, fake.url, {"prompt": slow_graph(40, delay=0.05), "client_id": "q"})
        await post(http, fake.url, {"prompt": slow_graph(2), "client_id": "q"})
        await rec.wait_for(
            lambda fr: fr.get("type") == "execution_start" and fr["data"]["prompt_id"] == h["prompt_id"]
        )
        async with http.post(f"{fake.url}/queue", json={"clear": True}) as r:
            assert [r.status, await r.text()] == results["queue_clear"]
        async with http.get(f"{fake.url}/queue") as r:
            assert (await r.json())["queue_pending"] == results["queue_after_clear"]
        await http.post(f"{fake.url}/interrupt")
        await fake.wait_idle()


async def test_history_listing_and_delete(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession) -> None:
    results = http_results()
    ids = []
    for color in (1, 2, 3):
        _, body = await post(http, fake_comfy.url, {"prompt": basic_graph(color=color)})
        ids.append(body["prompt_id"])
    await fake_comfy.wait_idle()
    async with http.get(f"{fake_comfy.url}/history", params={"max_items": "2"}) as r:
        listed = await r.json()
    assert list(listed) == ids[1:]
    assert [list(v) for v in listed.values()] == list(results["history_list_max2"].values())
    async with http.get(f"{fake_comfy.url}/history/unknown") as r:
        assert [r.status, await r.json()] == results["history_unknown"]
    async with http.post(f"{fake_comfy.url}/history", json={"delete": [ids[0]]}) as r:
        assert (r.status, await r.text()) == tuple(results["history_delete"][:2])
    async with http.get(f"{fake_comfy.url}/history/{ids[0]}") as r:
        assert await r.json() == results["history_delete"][2]
    await http.post(f"{fake_comfy.url}/history", json={"clear": True})
    assert fake_comfy.history == {}


async def test_info_endpoints(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession) -> None:
    results = http_results()
    async with http.get(f"{fake_comfy.url}/features") as r:
        assert [r.status, await r.json()] == results["features"]
    async with http.get(f"{fake_comfy.url}/api/features") as r:
        assert [r.status, await r.json()] == results["api_prefix_features"]
    async with http.get(f"{fake_comfy.url}/system_stats") as r:
        stats = await r.json()
        assert shape(stats) == shape(results["system_stats"][1])
        assert stats["system"]["comfyui_version"] == "0.3.64"
    async with http.post(f"{fake_comfy.url}/free", json={"unload_models": True}) as r:
        assert [r.status, await r.text()] == results["free"]
    assert fake_comfy.frees == [{"unload_models": True}]
    async with http.get(f"{fake_comfy.url}/prompt", headers={"Origin": "http://evil.example"}) as r:
        assert [r.status, await r.text()] == results["origin_mismatch"]
    async with http.ws_connect(f"{fake_comfy.url}/ws") as ws:
        first = await ws.receive_json()
        recorded = results["ws_no_client_id_first_msg"]
        assert first["type"] == recorded["type"] and shape(first["data"]) == shape(recorded["data"])
        assert len(first["data"]["sid"]) == 32
        await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
        reply = await ws.receive_json()
        assert reply == {"type": "feature_flags", "data": results["ws_feature_flags_reply"][1]["data"]}


async def test_object_info(fake_comfy: FakeComfyUI, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{fake_comfy.url}/object_info") as r:
        info = await r.json()
    for name in (
        "CheckpointLoaderSimple",
        "CLIPTextEncode",
        "EmptyLatentImage",
        "KSampler",
        "VAEDecode",
        "VAEEncode",
        "SaveImage",
        "PreviewImage",
        "LoadImage",
        "UpscaleModelLoader",
        "ImageUpscaleWithModel",
        "ImageScale",
        "ImageScaleBy",
        "EmptyImage",
        "LatentUpscaleBy",
    ):
        assert {
            "input",
            "input_order",
            "output",
            "output_is_list",
            "output_name",
            "name",
            "display_name",
            "description",
            "python_module",
            "category",
            "output_node",
        } <= set(info[name])
    assert info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == list(fake_comfy.checkpoints)
    assert info["SaveImage"]["output_node"] is True
    async with http.get(f"{fake_comfy.url}/object_info/KSampler") as r:
        assert list(await r.json()) == ["KSampler"]
    async with http.get(f"{fake_comfy.url}/object_info/Nope") as r:
        assert await r.json() == {}
    async with http.get(f"{fake_comfy.url}/models/checkpoints") as r:
        assert await r.json() == list(fake_comfy.checkpoints)
