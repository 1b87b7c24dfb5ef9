"""A tiny ComfyUI that replays one prompt of a recorded real-ComfyUI trace, frame for frame.

Complements the full fake (tests/fakes/comfyui.py): here the websocket frames are exactly the recorded
ones (binary frames rebuilt from their recorded headers), with the recorded prompt id swapped for the
one the client submitted.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

TRACES = Path(__file__).resolve().parents[3] / "shared/comfyui/traces"


def load_segment(trace: str, index: int = 0) -> tuple[str, list[dict[str, Any]]]:
    """The frames of the ``index``-th prompt of a trace: ``execution_start`` … ``executing{node: null}``."""
    segments: list[tuple[str, list[dict[str, Any]]]] = []
    current: list[dict[str, Any]] | None = None
    for line in (TRACES / trace).read_text().splitlines():
        rec = json.loads(line)
        if rec.get("type") == "execution_start":
            current = []
            segments.append((rec["data"]["prompt_id"], current))
        if current is not None:
            current.append(rec)
            data = rec.get("data") or {}
            if rec.get("type") == "executing" and data.get("node") is None:
                current = None
    return segments[index]


def build_frame(rec: dict[str, Any], old: str, new: str) -> str | bytes:
    if rec["kind"] == "json":
        return json.dumps({"type": rec["type"], "data": rec["data"]}).replace(old, new)
    event, total = int(rec["event"]), int(rec["len"])
    if event == 3:
        node, text = str(rec["node_id"]).encode(), str(rec["text"]).encode()
        return struct.pack(">II", 3, len(node)) + node + text
    if event == 1:
        head = struct.pack(">II", 1, rec["image_format"])
    else:
        meta = json.dumps(rec["metadata"]).replace(old, new).encode()
        head = struct.pack(">II", 4, len(meta)) + meta
    magic = bytes.fromhex(rec["magic"])
    return head + magic + b"\0" * max(0, total - len(head) - len(magic))


class ReplayComfy:
    """Serves /ws, /prompt, /history/{id}, /queue; POST /prompt replays the segment to the client's socket."""

    def __init__(self, trace: str, index: int = 0) -> None:
        self.recorded_id, self.frames = load_segment(trace, index)
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.first_messages: list[Any] = []
        self.ws_headers: list[dict[str, str]] = []
        self.received_prompts: list[dict[str, Any]] = []
        self.history: dict[str, Any] = {}
        self.hold = asyncio.Event()  # replay waits for this before the frames after `hold_after`
        self.hold.set()
        self.hold_after: int | None = None
        self.refuse_ws = False  # /ws answers 503 while set (the client stays disconnected)
        self._tasks: set[asyncio.Task[None]] = set()
        app = web.Application()
        app.router.add_get("/ws", self._ws)
        app.router.add_post("/prompt", self._prompt)
        app.router.add_get("/history/{pid}", self._history)
        app.router.add_get("/queue", self._queue)
        self.server = TestServer(app, host="127.0.0.1")

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if self.refuse_ws:
            return web.Response(status=503)
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        sid = request.query.get("clientId", "anon")
        self.ws_headers.append(dict(request.headers))
        self.sockets[sid] = ws
        await ws.send_json(
            {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": sid}}
        )
        first = True
        async for msg in ws:
            if msg.type is WSMsgType.TEXT and first:
                self.first_messages.append(json.loads(msg.data))
            first = False
        return ws

    async def _prompt(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received_prompts.append(body)
        task = asyncio.create_task(self._replay(body["client_id"], body["prompt_id"]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.json_response(
            {"prompt_id": body["prompt_id"], "number": len(self.received_prompts) - 1, "node_errors": {}}
        )

    async def _replay(self, sid: str, prompt_id: str) -> None:
        outputs: dict[str, Any] = {}
        messages: list[Any] = []
        for n, rec in enumerate(self.frames):
            if self.hold_after is not None and n == self.hold_after:
                await self.hold.wait()
            frame = build_frame(rec, self.recorded_id, prompt_id)
            if rec.get("type") == "executed":
                outputs[rec["data"]["node"]] = rec["data"]["output"]
            if rec.get("type") in (
                "execution_start",
                "execution_success",
                "execution_error",
                "execution_interrupted",
            ):
                messages.append([rec["type"], json.loads(str(frame))["data"]])
            if rec.get("type") == "executing" and rec["data"]["node"] is None:
                ok = messages[-1][0] == "execution_success"
                self.history[prompt_id] = {
                    "outputs": outputs,
                    "status": {
                        "status_str": "success" if ok else "error",
                        "completed": ok,
                        "messages": messages,
                    },
                }
            ws = self.sockets.get(sid)
            if ws is None or ws.closed:
                continue  # like ComfyUI: frames for a socket that is gone are lost
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
            await asyncio.sleep(0)

    async def _history(self, request: web.Request) -> web.Response:
        pid = request.match_info["pid"]
        return web.json_response({pid: self.history[pid]} if pid in self.history else {})

    async def _queue(self, request: web.Request) -> web.Response:
        running = [
            [0, p["prompt_id"], {}, {}, []]
            for p in self.received_prompts
            if p["prompt_id"] not in self.history
        ]
        return web.json_response({"queue_running": running[:1], "queue_pending": running[1:]})

    def forget_all(self) -> None:
        """Like a restarted ComfyUI: no history, empty queue."""
        self.history.clear()
        self.received_prompts.clear()

    async def drop_sockets(self) -> None:
        for ws in list(self.sockets.values()):
            await ws.close()


@asynccontextmanager
async def replaying(trace: str, index: int = 0) -> AsyncIterator[ReplayComfy]:
    fake = ReplayComfy(trace, index)
    await fake.server.start_server()
    try:
        yield fake
    finally:
        fake.hold.set()
        for task in list(fake._tasks):
            task.cancel()
        await asyncio.gather(*fake._tasks, return_exceptions=True)
        await fake.server.close()
