"""The baseline: a NAIVE SEQUENTIAL worker, the way hobby ComfyUI bots run jobs (plain aiohttp).

Per server, one job at a time: ``POST /prompt`` → wait on the websocket for ``executing {node: null}`` of
that prompt → ``GET /history/<id>`` → ``GET /view`` of each output image → write it to disk → next job.
Nothing is queued in ComfyUI while we download and save, so the GPU idles between prompts.
Kind to the baseline: one websocket per server for all its jobs (many bots open one per job).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

JSON = dict[str, Any]


async def _wait_done(ws: aiohttp.ClientWebSocketResponse, prompt_id: str, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue  # binary previews
            data = msg.json()
            if data.get("type") != "executing":
                continue
            body = data.get("data", {})
            if body.get("node") is None and body.get("prompt_id") == prompt_id:
                return
    raise ConnectionError("websocket closed")


async def naive_server_loop(
    session: aiohttp.ClientSession,
    base_url: str,
    jobs: asyncio.Queue[JSON],
    out_dir: Path,
    done: list[float],
    *,
    timeout_s: float = 600.0,
) -> None:
    """Take graphs from ``jobs`` until it is empty; run each to the end on ``base_url``."""
    client_id = uuid.uuid4().hex
    async with session.ws_connect(f"{base_url}/ws?clientId={client_id}") as ws:
        while True:
            try:
                graph = jobs.get_nowait()
            except asyncio.QueueEmpty:
                return
            body = {"prompt": graph, "client_id": client_id}
            async with session.post(f"{base_url}/prompt", json=body) as r:
                r.raise_for_status()
                prompt_id = (await r.json())["prompt_id"]
            await _wait_done(ws, prompt_id, timeout_s)
            async with session.get(f"{base_url}/history/{prompt_id}") as r:
                r.raise_for_status()
                history = (await r.json())[prompt_id]
            for node_output in history["outputs"].values():
                for image in node_output.get("images", []):
                    params = {
                        "filename": image["filename"],
                        "subfolder": image["subfolder"],
                        "type": image["type"],
                    }
                    async with session.get(f"{base_url}/view", params=params) as r:
                        r.raise_for_status()
                        data = await r.read()
                    target = out_dir / f"{prompt_id}-{image['filename']}"
                    await asyncio.to_thread(target.write_bytes, data)
            done.append(time.perf_counter())


async def run_naive(
    session: aiohttp.ClientSession, base_urls: list[str], graphs: list[JSON], out_dir: Path
) -> tuple[float, list[float]]:
    """Run every graph over one naive loop per server; returns (start perf_counter, finish times)."""
    jobs: asyncio.Queue[JSON] = asyncio.Queue()
    for graph in graphs:
        jobs.put_nowait(graph)
    done: list[float] = []
    start = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for url in base_urls:
            group.create_task(naive_server_loop(session, url, jobs, out_dir, done))
    return start, done


__all__ = ["naive_server_loop", "run_naive"]
