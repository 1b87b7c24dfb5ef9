"""The instrumented fake ComfyUI of the benchmarks: ``tests/fakes/comfyui.py``'s fake, timed per prompt,
with realistic PNGs encoded once (see ``BenchComfyUI``). Used in-process by ``bench.common.gateway_rig``
and in a child process by ``bench.fakeserver``.
"""

from __future__ import annotations

import asyncio
import struct
import time
import uuid
import zlib
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from tests.fakes.comfyui import REALISTIC_SIZE, FakeComfyUI, FakeImage, _encode_png, _Run, _save_path

if TYPE_CHECKING:
    from bench.common import LoopStalls

CHECKPOINTS = ("v1-5-pruned-emaonly.safetensors", "sd15.safetensors")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


class BenchComfyUI(FakeComfyUI):
    """The fake ComfyUI, timed: ``posted[prompt_id]`` is ``perf_counter()`` when ``POST /prompt`` arrived
    (handler entry, before the body is read), ``done[prompt_id]`` when the prompt finished executing
    (history written, just before the final ``executing {node: null}``), ``busy_s`` the sum of execution
    times. ``timeline[prompt_id]`` has all of a prompt's moments (``posted``, ``started``/``ended``
    executing, ``done``, first ``history`` and ``view`` request) for ``GET /bench/stats``; ``perf_counter``
    is CLOCK_MONOTONIC on Linux, so a benchmark in another process can put them on its own time line.

    Realistic PNGs are encoded ONCE (a 704×704 noise PNG takes ~190 ms of CPU here, which would otherwise
    be added to every prompt's run time and blur the measurement); each save writes those bytes with a
    unique ``tEXt`` chunk spliced in, so every output is a distinct ~1.5 MB file, as from a real GPU.
    """

    def __init__(self, *, link_mbps: float | None = None, rtt_ms: float = 0.0, **options: Any) -> None:
        super().__init__(**options)
        # A simulated network between gateway and ComfyUI (default: none, localhost): every HTTP answer
        # waits ``rtt_ms``, and ``/view`` also the time its file takes at ``link_mbps``.
        self.link_mbps = link_mbps
        self.rtt_ms = rtt_ms
        self.posted: dict[str, float] = {}
        self.done: dict[str, float] = {}
        self.busy_s = 0.0
        self.timeline: dict[str, dict[str, float]] = {}
        self.loop_stalls: LoopStalls | None = None  # the serving process's, if it watches its loop
        self._output_of: dict[str, str] = {}  # saved file name -> prompt_id, to time its /view
        self._png_cache: dict[tuple[int, int], bytes] = {}

    def _mark(self, prompt_id: str, moment: str, at: float | None = None) -> None:
        self.timeline.setdefault(prompt_id, {}).setdefault(moment, time.perf_counter() if at is None else at)

    async def _post_prompt(self, request: web.Request) -> web.Response:
        arrived = time.perf_counter()
        response = await super()._post_prompt(request)
        if response.status == 200:
            prompt_id = orjson.loads(response.body)["prompt_id"]  # type: ignore[arg-type]  # bytes body
            self.posted[prompt_id] = arrived
            self._mark(prompt_id, "posted", arrived)
        return response

    async def _get_history_id(self, request: web.Request) -> web.Response:
        self._mark(request.match_info["prompt_id"], "history")
        return await super()._get_history_id(request)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.rtt_ms and request.path not in ("/ws", "/bench/stats"):
            await asyncio.sleep(self.rtt_ms / 1000)
        return await super()._middleware(request, handler)

    async def _view(self, request: web.Request) -> web.StreamResponse:
        prompt_id = self._output_of.get(request.query.get("filename", ""))
        if prompt_id is not None:
            self._mark(prompt_id, "view")
        if self.link_mbps:
            q = request.query
            base = self._dir_for(q.get("type", "output"))
            path = None if base is None else base / q.get("subfolder", "") / q.get("filename", "")
            if path is not None and path.is_file():
                await asyncio.sleep(path.stat().st_size * 8 / (self.link_mbps * 1e6))
        return await super()._view(request)

    async def _execute(self, run: _Run) -> tuple[str, bool]:
        start = time.perf_counter()
        self._mark(run.prompt_id, "started", start)
        try:
            return await super()._execute(run)
        finally:
            end = time.perf_counter()
            self.busy_s += end - start
            self._mark(run.prompt_id, "ended", end)

    def _store_history(self, run: _Run, status_str: str, completed: bool) -> None:
        super()._store_history(run, status_str, completed)
        self.done[run.prompt_id] = time.perf_counter()
        self._mark(run.prompt_id, "done", self.done[run.prompt_id])

    async def _save_images(self, run: _Run, img: FakeImage, prefix: str, type_: str) -> list[dict[str, Any]]:
        if not self.realistic_png:
            return await super()._save_images(run, img, prefix, type_)
        size = self.output_size or REALISTIC_SIZE
        base = await self._cached_png(size)
        base_dir = self.output_dir if type_ == "output" else self.temp_dir
        subfolder, name, folder, counter = _save_path(base_dir, prefix)
        results = []
        for _ in range(img.batch):
            filename = f"{name}_{counter:05}_.png"
            counter += 1
            unique = _png_chunk(b"tEXt", b"prompt_id\x00" + f"{run.prompt_id}/{uuid.uuid4()}".encode())
            data = base[:33] + unique + base[33:]  # after the 8-byte signature and the 25-byte IHDR
            await asyncio.to_thread((folder / filename).write_bytes, data)
            self._output_of[filename] = run.prompt_id
            results.append({"filename": filename, "subfolder": subfolder, "type": type_})
        return results

    def _make_app(self) -> web.Application:
        app = super()._make_app()
        app.router.add_get("/bench/stats", self._bench_stats)
        return app

    async def _bench_stats(self, request: web.Request) -> web.Response:
        """For a benchmark in another process: prompts done, seconds executing, each prompt's moments."""
        stalls = [] if self.loop_stalls is None else self.loop_stalls.stalls
        return web.json_response(
            {
                "busy_s": self.busy_s,
                "done": len(self.done),
                "posted": len(self.posted),
                "timeline": self.timeline,
                "loop_stalls": stalls,
            }
        )

    async def _cached_png(self, size: tuple[int, int]) -> bytes:
        if size not in self._png_cache:
            self._png_cache[size] = await asyncio.to_thread(_encode_png, size, 0, True, {})
        return self._png_cache[size]


__all__ = ["CHECKPOINTS", "BenchComfyUI"]
